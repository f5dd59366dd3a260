"""The HTTP service: validation and limits, batching and overload, security headers, image
queries, and the map page end to end in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import TINY_TRAIN
from planetloc.data.images import load_tile
from planetloc.data.manifest import Manifest, write_manifest
from planetloc.errors import PlanetlocError
from planetloc.index.locate import MAX_IMAGE_BYTES, Locator
from planetloc.index.locate import Query as LocateQuery
from planetloc.serve.app import create_app
from planetloc.serve.assets import static_folder
from planetloc.serve.batching import LocateBatcher
from planetloc.serve.middleware import basemap_source
from planetloc.serve.queries import MAX_DETAIL

ARTIFACTS = Path(
    os.environ.get(
        "PLANETLOC_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"
    )
)
XSS_ID = '<img src=x onerror="window.pwned=1">'
XSS_REGION = "<svg onload=window.pwned=2>"
VIEW_HW = (64, 256)
JSON = {
    "content-type": "application/json"
}  # the street views the image model reads (model.street_size)


@pytest.fixture(scope="module")
def locator(tiny_index: Path) -> Locator:
    return Locator.open(tiny_index)


@pytest.fixture(scope="module")
def app(locator: Locator):
    return create_app(locator)


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def _png(hw: tuple[int, int], seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_health_gallery_and_openapi(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tiles"] > 0 and health["index_kind"] == "flat"
    assert health["accepts"] == ["text"]
    assert health["queue"] == {"pending": 0, "limit": 256, "batch": 16}
    gallery = client.get("/gallery").json()
    assert gallery["count"] == health["tiles"] and len(gallery["bbox"]) == 4 and gallery["regions"]
    assert gallery["tile_size_m"] == 192.0 and gallery["basemap"] is None
    spec = client.get("/openapi.json").json()
    assert {"/locate", "/health", "/tiles/{tile_id}", "/tiles_in"} <= set(spec["paths"])
    body = spec["components"]["requestBodies"]["Locate"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert spec["components"]["schemas"]["NearPoint"]["required"] == ["lat", "lon"]


def test_locate_answers_with_tiles_physics_and_estimate(
    client: TestClient, small_world: Manifest
) -> None:
    query = small_world.by_split("test")[0]
    response = client.post("/locate", json={"text": query.text, "k": 7})
    assert response.status_code == 200
    body = response.json()
    assert len(body["tiles"]) == 7 and body["query"] == "text" and body["heading_deg"] is None
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


# Raw bodies: json.dumps would refuse some of these, and the point is what a client can send.
BAD_BODIES = [
    b'{"text": "", "k": 5}',
    b'{"text": "   ", "k": 5}',
    json.dumps({"text": "x" * 4001}).encode(),
    b'{"text": "I see trees.", "k": 0}',
    b'{"text": "I see trees.", "k": 101}',
    b'{"text": "I see trees.", "k": "5"}',
    b'{"text": "I see trees.", "k": 2.5}',
    b'{"text": "I see trees.", "k": true}',
    b'{"text": 17}',
    b'{"text": ["I see trees."]}',
    b'{"text": "I see trees.", "near": {"lat": 95, "lon": 0}, "radius_km": 3}',
    b'{"text": "I see trees.", "near": {"lat": 10, "lon": 0}, "radius_km": 0}',
    b'{"text": "I see trees.", "near": {"lat": 10, "lon": 0}, "radius_km": NaN}',
    b'{"text": "I see trees.", "near": {"lat": NaN, "lon": 0}, "radius_km": 2}',
    b'{"text": "I see trees.", "near": {"lat": 10, "lon": Infinity}, "nearest": 5}',
    b'{"text": "I see trees.", "near": {"lat": 10, "lon": 1e999}, "nearest": 5}',
    b'{"text": "I see trees.", "near": {"lat": 10}, "radius_km": 2}',
    b'{"text": "I see trees.", "near": [10, 0], "radius_km": 2}',
    b'{"text": "I see trees.", "radius_km": 2}',
    b'{"text": "I see trees.", "bbox": [1, 2, 3]}',
    b'{"text": "I see trees.", "bbox": [1, 2, 3, NaN]}',
    b'{"text": "I see trees.", "bbox": [10, 50, 20, 40]}',
    b'{"text": "I see trees.", "bbox": [' + b",".join([b"1.5"] * 10_000) + b"]}",
    b'{"text": "I see trees.", "regions": [' + b",".join([b'"a"'] * 5_000) + b"]}",
    b'{"text": "I see trees.", "regions": "london"}',
    b'{"text": "\\ud800 lone surrogate"}',
    b'{"text": "I see trees.\xed\xa0\x80"}',  # a surrogate encoded as (invalid) UTF-8
    b'{"text": "I see trees.", "colour": "red"}',
    b'{"k": 5}',
    b"[1, 2, 3]",
    b'{"text": "I see trees."',
    b"",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_requests_get_422_with_a_short_message(client: TestClient, body: bytes) -> None:
    started = time.perf_counter()
    response = client.post("/locate", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert time.perf_counter() - started < 2.0
    detail = response.json()["detail"]
    assert isinstance(detail, str) and 0 < len(detail) <= MAX_DETAIL and "\n" not in detail
    assert len(response.content) < MAX_DETAIL + 50  # never the request echoed back
    assert "I see trees" not in detail and "xxxx" not in detail


def test_library_errors_reach_the_client_as_422_with_their_message(client: TestClient) -> None:
    # The rules live in Query.check and Prior; the service passes their one line through.
    cases = {
        json.dumps({"text": "x" * 4001}): "the description has 4001 characters; the limit is 4000",
        '{"text": "a", "near": {"lat": 1, "lon": 2}, "radius_km": NaN}': (
            "radius_km must be a finite number, got nan"
        ),
        '{"text": "a", "radius_km": 2}': "a radius or nearest-m prior needs a point",
        '{"text": "a", "k": 0}': "k must be an integer between 1 and 100, got 0",
        '{"text": "a", "regions": [' + ",".join(['"r"'] * 300) + "]}": "at most 256 regions",
    }
    for body, message in cases.items():
        response = client.post(
            "/locate", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422 and message in response.json()["detail"]


def test_bodies_over_the_limit_get_a_short_413_before_parsing(client: TestClient) -> None:
    big = b'{"text": "' + b"x" * (20 * 2**20) + b'"}'
    started = time.perf_counter()
    response = client.post("/locate", content=big, headers=JSON)
    assert response.status_code == 413 and len(response.content) < 200
    assert "64 KiB" in response.json()["detail"]
    assert time.perf_counter() - started < 5
    huge_upload = {"image": ("big.png", b"\0" * (MAX_IMAGE_BYTES + 100_000), "image/png")}
    response = client.post("/locate", files=huge_upload)
    assert response.status_code == 413 and len(response.content) < 200
    liar = client.post(
        "/locate",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "x"},
    )
    assert liar.status_code == 400
    wrong_type = client.post("/locate", content=b"text=hi", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415


def test_an_image_sent_to_a_text_only_model_is_refused(client: TestClient) -> None:
    files = {"image": ("view.png", _png(VIEW_HW), "image/png")}
    response = client.post("/locate", data={"text": "a quiet street", "k": "3"}, files=files)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("this model was trained on descriptions only")
    form_only = client.post("/locate", data={"text": "a quiet street", "k": "2", "heading": ""})
    assert form_only.status_code == 200 and len(form_only.json()["tiles"]) == 2


def test_tile_ids_are_never_paths(client: TestClient) -> None:
    for bad in ("../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "nope", "a" * 600):
        assert client.get(f"/tiles/{bad}").status_code == 404
    assert client.get("/static/../cli.py").status_code == 404
    assert client.get("/static/vendor%2F..%2Fapp.js").status_code == 404
    assert client.get("/static/app.js").status_code == 200


def test_tiles_in_crosses_the_antimeridian_and_limits_its_output(
    client: TestClient, locator: Locator
) -> None:
    lon = locator.index.lon
    box = {"west": 150.0, "south": -90.0, "east": -100.0, "north": 90.0}
    body = client.get("/tiles_in", params={**box, "limit": 2000}).json()
    expected = {
        str(i) for i, x in zip(locator.index.ids, lon, strict=True) if x >= 150 or x <= -100
    }
    assert expected and len(expected) < len(lon)
    assert {t["id"] for t in body["tiles"]} == expected and body["total"] == len(expected)
    whole = client.get("/tiles_in", params={**box, "west": -180, "east": 180, "limit": 10}).json()
    assert whole["total"] == len(lon) and len(whole["tiles"]) == 10
    for bad in ({"limit": 0}, {"limit": 5000}, {"west": "nan"}, {"south": 50, "north": 40}):
        response = client.get("/tiles_in", params={**box, **bad})
        assert response.status_code == 422 and len(response.content) < MAX_DETAIL + 50


def test_every_response_carries_the_security_headers(client: TestClient, locator: Locator) -> None:
    responses = [
        client.get("/"),
        client.get("/docs"),
        client.get("/health"),
        client.get("/static/app.js"),
        client.get("/tiles/nope"),
        client.post("/locate", json={"k": 1}),
        client.post(
            "/locate", content=b"x" * 100_000, headers={"content-type": "application/json"}
        ),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 422, 413]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "http" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    for page in responses[:2]:  # nothing is loaded from another origin
        assert (
            "http:" not in page.text and "https:" not in page.text and "<script>" not in page.text
        )
    with_basemap = TestClient(
        create_app(locator, basemap="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    )
    csp = with_basemap.get("/").headers["content-security-policy"]
    assert "img-src 'self' data: https://*.tiles.example.org;" in csp
    assert csp.count("example.org") == 1  # images only
    assert with_basemap.get("/gallery").json()["basemap"].endswith("/{z}/{x}/{y}.png")


@pytest.mark.parametrize(
    "template",
    [
        "ftp://tiles.example.org/{z}/{x}/{y}.png",
        "https://tiles.example.org/{z}/{x}.png",
        "https://tile{s}.example.org/{z}/{x}/{y}.png",
        "https://tiles.example.org/{z}/{x}/{y}.png; script-src *",
        "https://tiles.example.org:99999/{z}/{x}/{y}.png",
    ],
)
def test_a_bad_basemap_template_is_refused(template: str) -> None:
    with pytest.raises(PlanetlocError, match="--basemap"):
        basemap_source(template)


def test_missing_browser_libraries_stop_the_app_with_one_line(
    locator: Locator, tmp_path: Path
) -> None:
    shutil.copytree(static_folder(), tmp_path / "static", ignore=shutil.ignore_patterns("vendor"))
    with pytest.raises(PlanetlocError, match=r"leaflet\.js is missing: .*make setup"):
        create_app(locator, static=tmp_path / "static")


class SlowLocator:
    """The real Locator behind a delay per model call, counting the calls' batch sizes."""

    def __init__(self, inner: Locator, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.index = inner.index
        self.max_chars = inner.max_chars
        self.accepts = inner.accepts
        self.calls: list[int] = []

    def locate_many(self, queries: list[LocateQuery]):
        self.calls.append(len(queries))
        time.sleep(self.delay_s)
        return self.inner.locate_many(queries)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread."""
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    with running(app) as url:
        yield url


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


async def _flood(url: str, texts: list[str], n: int) -> tuple[list[httpx.Response], list[float]]:
    """``n`` concurrent locates, and /health's latencies measured while they are in flight."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        locates = [
            asyncio.ensure_future(http.post("/locate", json={"text": texts[i % len(texts)]}))
            for i in range(n)
        ]
        await asyncio.sleep(0.2)  # let them queue up
        health = []
        while not all(t.done() for t in locates) and len(health) < 20:
            started = time.perf_counter()
            assert (await http.get("/health")).status_code == 200
            health.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        return list(await asyncio.gather(*locates)), health


def test_health_answers_at_once_while_a_hundred_locates_are_batched(
    locator: Locator, small_world: Manifest
) -> None:
    slow = SlowLocator(locator, delay_s=0.2)
    texts = [s.text for s in small_world.by_split("test")[:4]]
    expected = {t: locator.locate(LocateQuery(text=t)).tiles[0].id for t in texts}
    with running(create_app(slow)) as url:
        answers, health = asyncio.run(_flood(url, texts, 100))
    assert [r.status_code for r in answers] == [200] * 100
    assert all(r.json()["tiles"][0]["id"] == expected[r.json()["text"]] for r in answers)
    # Behind the queued model work an answer would wait for the rest of a model call (about
    # 0.15 s of 0.2 here); a free server answers in milliseconds. The median, not the
    # slowest, so that one answer slowed by a busy machine does not count.
    assert len(health) >= 3 and statistics.median(health) < slow.delay_s / 4, health
    assert sum(slow.calls) == 100 and len(slow.calls) <= 20 and max(slow.calls) == 16


def test_a_full_queue_answers_503_at_once(locator: Locator, small_world: Manifest) -> None:
    slow = SlowLocator(locator, delay_s=0.8)
    text = small_world.by_split("test")[0].text

    def ask(_: int) -> tuple[int, float, str | None]:
        with httpx.Client(base_url=url, timeout=60) as http:
            ready.wait()
            started = time.perf_counter()
            r = http.post("/locate", json={"text": text, "k": 1})
        return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

    app = create_app(slow, max_pending=3, max_batch=1)
    ready = threading.Barrier(12)
    with running(app) as url, ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(12)))
    busy = [a for a in answers if a[0] == 503]
    assert sum(a[0] == 200 for a in answers) >= 3 and len(busy) >= 6
    assert all(a[0] in (200, 503) for a in answers)
    # Refused sooner than one model call takes.
    assert all(seconds < 0.7 and retry == "1" for _, seconds, retry in busy), answers


def test_uploads_held_at_once_are_bounded(locator: Locator, small_world: Manifest) -> None:
    # Each upload may hold 20 MiB until it is answered: past the bound, 503 before reading.
    slow = SlowLocator(locator, delay_s=1.0)
    form = {"text": (None, small_world.by_split("test")[0].text), "k": (None, "1")}
    app = create_app(slow, max_uploads=1)
    with running(app) as url, httpx.Client(timeout=60) as http, ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, f"{url}/locate", files=form)
        while http.get(f"{url}/health").json()["queue"]["pending"] == 0:
            time.sleep(0.02)  # until the first is held, waiting for the model
        second = http.post(f"{url}/locate", files=form)
        assert second.status_code == 503 and second.headers["retry-after"] == "1"
        assert "uploads in progress" in second.json()["detail"]
        assert first.result().status_code == 200
        assert http.post(f"{url}/locate", files=form).status_code == 200  # the slot is free


def test_a_failing_model_call_is_a_short_500_with_headers(locator: Locator) -> None:
    class Broken(SlowLocator):
        def locate_many(self, queries: list[LocateQuery]):
            self.calls.append(len(queries))
            if len(self.calls) == 1:
                raise RuntimeError("out of memory, say")
            return self.inner.locate_many(queries)

    broken = Broken(locator, delay_s=0)
    client = TestClient(create_app(broken), raise_server_exceptions=False)
    failed = client.post("/locate", json={"text": "a quiet street"})
    assert failed.status_code == 500 and "out of memory" not in failed.text
    assert failed.json()["detail"].startswith("internal error")
    assert "frame-ancestors 'none'" in failed.headers["content-security-policy"]
    assert client.post("/locate", json={"text": "a quiet street"}).status_code == 200


def test_unbatched_mode_answers_one_query_per_model_call(
    locator: Locator, small_world: Manifest
) -> None:
    slow = SlowLocator(locator, delay_s=0.02)
    texts = [s.text for s in small_world.by_split("test")[:4]]
    with running(create_app(slow, batching=False)) as url:
        answers, _ = asyncio.run(_flood(url, texts, 12))
    assert [r.status_code for r in answers] == [200] * 12 and slow.calls == [1] * 12


# --------------------------------------------------------------------------- image queries
@pytest.fixture(scope="module")
def street_world(small_world: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """Three regions of the small world with a street view per described sample, and gallery
    ids and a region name that hold HTML (which the page must show as text)."""
    out = tmp_path_factory.mktemp("street-world")
    (out / "street").mkdir()
    regions = sorted({s.region for s in small_world.samples})[:3]
    samples = []
    for n, s in enumerate(x for x in small_world.samples if x.region in regions):
        street = None
        if s.split != "gallery":
            # A stand-in street view: the tile squeezed to the view's shape (the model is only
            # trained for three steps; what matters is the path an image takes).
            view = Image.fromarray(load_tile(small_world.resolve(s.sat_path), 64))
            street = str(out / "street" / f"{n}.png")
            view.resize(VIEW_HW[::-1]).save(street)
        hostile = s.split in ("test", "gallery")
        samples.append(
            dataclasses.replace(
                s,
                id=f"{XSS_ID}{s.id}" if hostile else s.id,
                region=XSS_REGION if hostile and s.region == regions[0] else s.region,
                sat_path=str(small_world.resolve(s.sat_path)),
                street_path=street,
            )
        )
    from planetloc.data.manifest import read_manifest

    return read_manifest(write_manifest(samples, out / "manifest.jsonl"))


@pytest.fixture(scope="module")
def joint_index(street_world: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained on joint (description + street view) queries, and its index."""
    from planetloc.train.config import load_config
    from planetloc.train.trainer import train
    from planetloc.workflows.indexing import build_gallery_index

    run = tmp_path_factory.mktemp("joint-run")
    overrides = {
        **TINY_TRAIN,
        "data": str(street_world.path),
        "out": str(run),
        "model.query": "joint",
        "select_alpha": False,
    }
    train(load_config(method="planet", overrides=overrides), progress=False)
    out = tmp_path_factory.mktemp("joint-index")
    build_gallery_index(
        checkpoint=str(run / "checkpoint.safetensors"),
        gallery=str(street_world.path),
        out=out,
        splits=("test", "gallery"),
        tile_size_m=192.0,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def joint_locator(joint_index: Path) -> Locator:
    return Locator.open(joint_index)


@pytest.fixture(scope="module")
def joint_client(joint_locator: Locator) -> TestClient:
    return TestClient(create_app(joint_locator))


def test_street_images_are_located_alone_or_with_text(
    joint_client: TestClient, street_world: Manifest
) -> None:
    assert joint_client.get("/health").json()["accepts"] == ["text", "image"]
    sample = street_world.by_split("test")[0]
    view = Path(sample.street_path).read_bytes()
    files = {"image": ("view.png", view, "image/png")}
    joint = joint_client.post(
        "/locate", data={"text": sample.text, "heading": "90", "k": "4"}, files=files
    )
    assert joint.status_code == 200, joint.text
    body = joint.json()
    assert body["query"] == "joint" and body["heading_deg"] == 90.0 and len(body["tiles"]) == 4
    assert set(body["tiles"][0]["physics"]) == {"color", "struc", "tex"}
    alone = joint_client.post("/locate", data={"k": "3", "regions": sample.region}, files=files)
    assert alone.status_code == 200, alone.text
    tiles = alone.json()["tiles"]
    assert alone.json()["query"] == "image" and all(t["physics"] == {} for t in tiles)
    assert all(t["region"] == sample.region for t in tiles)
    url = tiles[0]["tile_url"]
    assert url.startswith("/tiles/%3Cimg%20src%3Dx") and joint_client.get(url).status_code == 200


@pytest.mark.parametrize(
    ("upload", "status", "message"),
    [
        (("v.png", b"not an image at all", "image/png"), 422, "not an image format"),
        (("v.png", b"", "image/png"), 422, "the image is empty (0 bytes)"),
        (("v.png", _png((64, 64)), "image/png"), 422, "this model reads views of ratio 4.00"),
        (("v.txt", b"hello", "text/plain"), 415, "send an image"),
        (("v.png", b"x" * (MAX_IMAGE_BYTES + 1), "image/png"), 413, "20 MiB"),
    ],
    ids=["undecodable", "empty", "square", "text-type", "too-large"],
)
def test_bad_uploads_get_a_clear_4xx(
    joint_client: TestClient, upload: tuple, status: int, message: str
) -> None:
    response = joint_client.post("/locate", data={"k": "3"}, files={"image": upload})
    assert response.status_code == status and message in response.json()["detail"]
    assert len(response.content) < MAX_DETAIL + 50


def test_bad_form_fields_get_422(joint_client: TestClient) -> None:
    view = {"image": ("v.png", _png(VIEW_HW), "image/png")}
    for fields, message in (
        ({"heading": "north"}, "heading: Input should be a valid number"),
        ({"heading": "nan"}, "heading must be a finite number"),
        ({"near": "1,2,3", "radius_km": "2"}, "prior point must be lat,lon"),
        ({"bbox": "1,2,x,4"}, "bbox.2: Input should be a valid number"),
        ({"shoe_size": "44"}, "shoe_size: Extra inputs are not permitted"),
    ):
        response = joint_client.post("/locate", data={"k": "2", **fields}, files=view)
        assert response.status_code == 422 and message in response.json()["detail"]


def test_one_bad_query_in_a_batch_fails_alone(
    joint_locator: Locator, street_world: Manifest
) -> None:
    sample = street_world.by_split("test")[0]
    calls: list[int] = []

    def locate_many(queries):
        calls.append(len(queries))
        return joint_locator.locate_many(queries)

    batcher = LocateBatcher(locate_many, max_batch=8, window_s=0.3)
    queries = [
        LocateQuery(text=sample.text, k=2),
        LocateQuery(image=b"garbage", k=2),
        LocateQuery(image=Path(sample.street_path).read_bytes(), k=2),
    ]

    async def ask_all():
        return await asyncio.gather(*(batcher.locate(q) for q in queries), return_exceptions=True)

    good, bad, image = asyncio.run(ask_all())
    batcher.close()
    assert calls[0] == 3 and calls[1:] == [1, 1, 1]  # the batch, then each query on its own
    assert good.query == "text" and image.query == "image" and len(image.tiles) == 2
    assert isinstance(bad, PlanetlocError) and "not an image format" in str(bad)


# --------------------------------------------------------------------------- the page
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (installed by .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _csp_violations(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security" in e["message"]]


def test_page_maps_a_joint_query_and_shows_hostile_ids_as_text(
    browser, joint_locator: Locator, street_world: Manifest
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    sample = street_world.by_split("test")[0]
    js = driver.execute_script
    with running(create_app(joint_locator)) as url:
        driver.get(url)
        wait.until(lambda d: "tiles in the gallery" in d.find_element(By.ID, "status").text)
        assert driver.find_element(By.ID, "image").is_displayed()
        assert XSS_REGION in [
            o.text for o in driver.find_elements(By.CSS_SELECTOR, "#region option")
        ]

        driver.find_element(By.ID, "text").send_keys(sample.text)
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "map").get_attribute("data-markers") == "5")
        hits = driver.find_elements(By.CSS_SELECTOR, "#results li.hit")
        assert len(hits) == 5 and "colour" in hits[0].text and "texture" in hits[0].text
        assert "Estimate:" in driver.find_element(By.ID, "estimate").text
        assert XSS_ID in hits[0].text  # the id shown as text ...
        # ... and no element made from it, no script run, on the list or the map.
        assert js("return document.querySelectorAll('img[src=\"x\"], svg[onload]').length") == 0
        assert js("return window.pwned === undefined")
        assert js("return document.querySelectorAll('.estimate-circle').length") == 1
        assert js("return document.querySelectorAll('.heading-cone').length") == 0

        # The gallery's own tiles load for the view as image overlays.
        wait.until(lambda d: js("return document.querySelectorAll('img.gallery-tile').length") > 0)
        wait.until(
            lambda d: js(
                "return Array.from(document.querySelectorAll('img.gallery-tile, #results img'))"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )

        # Zoom with the control and pan by dragging: the map's state follows the user.
        before = js("const m = window.planetlocMap; return [m.getZoom(), m.getCenter().lng]")
        driver.find_element(By.CSS_SELECTOR, ".leaflet-control-zoom-out").click()
        wait.until(lambda d: js("return window.planetlocMap.getZoom()") == before[0] - 1)
        ActionChains(driver).drag_and_drop_by_offset(
            driver.find_element(By.ID, "map"), -250, 0
        ).perform()
        wait.until(lambda d: js("return window.planetlocMap.getCenter().lng") > before[1])
        assert js("return window.planetloc.moves") >= 3

        # A street view with a heading: a joint query, drawn with its view cone.
        view = ARTIFACTS / "street_view.png"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.street_path, view)
        driver.find_element(By.ID, "image").send_keys(str(view))
        driver.find_element(By.ID, "heading").send_keys("135")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: js("return document.querySelectorAll('.heading-cone').length") == 1)
        assert js("return window.planetloc.result.query") == "joint"
        assert "the description and the photo" in driver.find_element(By.ID, "estimate").text
        wait.until(lambda d: js("return document.querySelectorAll('img.gallery-tile').length") > 0)
        time.sleep(0.5)  # let the last tiles paint
        driver.save_screenshot(str(ARTIFACTS / "locate_page.png"))
        assert (ARTIFACTS / "locate_page.png").stat().st_size > 10_000

        # The photo alone: no description, so no physical agreement bars.
        driver.find_element(By.ID, "text").clear()
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: js("return window.planetloc.result.query") == "image")
        assert driver.find_elements(By.CSS_SELECTOR, "#results .bars") == []
        assert js("return window.pwned === undefined")

        # The API docs render from local files under the same policy.
        driver.get(f"{url}/docs")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
        assert "/locate" in driver.find_element(By.ID, "swagger-ui").text
        assert _csp_violations(driver) == []


def test_page_of_a_text_model_offers_no_upload(browser, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    WebDriverWait(browser, 30).until(
        lambda d: "tiles in the gallery" in d.find_element(By.ID, "status").text
    )
    assert not browser.find_element(By.ID, "image").is_displayed()
    assert browser.find_element(By.ID, "text").is_displayed()
    assert _csp_violations(browser) == []
