"""The HTTP service: API validation, tiles, concurrency on loopback, and the page in Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from planetloc.data.manifest import Manifest
from planetloc.index.locate import Locator
from planetloc.serve.app import create_app

ARTIFACTS = Path(
    os.environ.get(
        "PLANETLOC_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"
    )
)


@pytest.fixture(scope="module")
def app(tiny_index: Path):
    return create_app(Locator.open(tiny_index))


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def test_health_gallery_and_openapi(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tiles"] > 0 and health["index_kind"] == "flat"
    gallery = client.get("/gallery").json()
    assert gallery["count"] == health["tiles"] and len(gallery["bbox"]) == 4 and gallery["regions"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/locate", "/health", "/tiles/{tile_id}"} <= set(paths)


def test_locate_answers_with_tiles_physics_and_estimate(
    client: TestClient, small_world: Manifest
) -> None:
    query = small_world.by_split("test")[0]
    response = client.post("/locate", json={"text": query.text, "k": 7})
    assert response.status_code == 200
    body = response.json()
    assert len(body["tiles"]) == 7
    first = body["tiles"][0]
    assert set(first) == {"id", "lat", "lon", "region", "score", "physics", "tile_url"}
    assert set(first["physics"]) == {"color", "struc", "tex"}
    assert body["estimate"]["radius_m"] > 0
    near = client.post(
        "/locate",
        json={
            "text": query.text,
            "k": 3,
            "near": {"lat": query.lat, "lon": query.lon},
            "radius_km": 0.5,
        },
    )
    assert near.status_code == 200 and all(
        t["region"] == query.region for t in near.json()["tiles"]
    )
    tile = client.get(first["tile_url"])
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert tile.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "body",
    [
        {"text": "", "k": 5},
        {"text": "   ", "k": 5},
        {"text": "x" * 4001},
        {"text": "I see trees.", "k": 0},
        {"text": "I see trees.", "k": 101},
        {"text": 17},
        {"text": "I see trees.", "near": {"lat": 95, "lon": 0}, "radius_km": 3},
        {"text": "I see trees.", "near": {"lat": 10, "lon": 0}, "radius_km": 0},
        {"text": "I see trees.", "radius_km": 2},
        {"text": "I see trees.", "bbox": [1, 2, 3]},
        {"k": 5},
    ],
)
def test_bad_requests_get_422_with_a_message(client: TestClient, body: dict) -> None:
    response = client.post("/locate", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and (isinstance(detail, str) or detail[0]["msg"])


def test_tile_ids_are_never_paths(client: TestClient) -> None:
    for bad in ("../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "nope", "a" * 600):
        assert client.get(f"/tiles/{bad}").status_code == 404
    assert client.get("/static/../cli.py").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_fifty_parallel_requests_are_all_answered_correctly(
    server: str, small_world: Manifest
) -> None:
    texts = [s.text for s in small_world.by_split("test")[:5]]
    with httpx.Client(timeout=60) as http:
        expected = [
            http.post(f"{server}/locate", json={"text": t, "k": 3}).json()["tiles"][0]["id"]
            for t in texts
        ]

    def ask(i: int) -> tuple[int, str]:
        with httpx.Client(timeout=60) as http:
            r = http.post(f"{server}/locate", json={"text": texts[i % 5], "k": 3})
            return r.status_code, r.json()["tiles"][0]["id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert all(code == 200 for code, _ in answers)
    assert [tid for _, tid in answers] == [expected[i % 5] for i in range(50)]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (installed by .ci/run)",
)
def test_page_in_headless_chromium_shows_markers_and_tiles(
    server: str, small_world: Manifest, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "tiles in the gallery" in d.find_element(By.ID, "status").text)
        driver.find_element(By.ID, "text").send_keys(small_world.by_split("test")[0].text)
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "map").get_attribute("data-markers") == "5")
        hits = driver.find_elements(By.CSS_SELECTOR, "#results li.hit")
        assert len(hits) == 5
        assert "Estimate:" in driver.find_element(By.ID, "estimate").text
        wait.until(
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('#results img'))"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        assert "colour" in hits[0].text and "texture" in hits[0].text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "locate_page.png"))
        assert (ARTIFACTS / "locate_page.png").stat().st_size > 10_000
    finally:
        driver.quit()
