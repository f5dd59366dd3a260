"""The dataset builder against loopback tile, Mapillary-like and LVLM servers that inject
faults: retries, circuit breaker, quarantine, key redaction, kill -9 resume, engines."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from planetloc.builder.config import HttpConfig, load_build_config
from planetloc.builder.engine import run_build
from planetloc.builder.fetch import (
    FetchFailed,
    Provider,
    ProviderUnavailable,
    Redactor,
    require_json,
)
from planetloc.builder.imagery import require_image
from planetloc.builder.loopback import LoopbackServer, pattern, photos_within
from planetloc.builder.satellite import XYZSource, tile_window
from planetloc.builder.stages import FETCH_STAGES
from planetloc.cli import main
from planetloc.data.manifest import read_manifest
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import haversine_m

TOKEN = "mly-token-S3CRET-0001"
TILE_KEY = "tile-key-S3CRET-0002"
LVLM_KEY = "lvlm-key-S3CRET-0003"
REGIONS = ["tokyo-jp", "lagos-ng"]


@pytest.fixture(autouse=True)
def _keys(monkeypatch) -> None:
    monkeypatch.setenv("TEST_MLY_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_TILE_KEY", TILE_KEY)
    monkeypatch.setenv("TEST_LVLM_KEY", LVLM_KEY)


@pytest.fixture
def server():
    with LoopbackServer(token=TOKEN, tile_key=TILE_KEY, api_key=LVLM_KEY) as srv:
        yield srv


def settings(server: LoopbackServer, **extra) -> dict:
    s = server.build_settings()
    s.update(
        {
            "sample.regions": REGIONS,
            "sample.per_region": 6,
            "streetview.token_env": "TEST_MLY_TOKEN",
            "satellite.key_env": "TEST_TILE_KEY",
            "satellite.zoom": 17,
            "satellite.pixels": 64,
            "describe.api_key_env": "TEST_LVLM_KEY",
            "describe.min_words": 30,
            "describe.max_words": 120,
            "write.manifest": "manifest.jsonl",
            "write.webdataset": True,
            "write.unseen_fraction": 0.5,
            "http.attempts": 4,
            "http.backoff_base_s": 0.01,
            "http.backoff_max_s": 0.05,
            "http.timeout_s": 2.0,
            "http.breaker_cooldown_s": 0.1,
            "http.breaker_threshold": 50,
            "http.user_agent": "planetloc-test/1.0 (contact: test@example.org)",
        }
    )
    s.update(extra)
    return s


def build(server: LoopbackServer, out: Path, stages=None, **extra) -> dict:
    cfg = load_build_config(None, settings(server, **extra))
    return run_build(cfg, out, stages or ["sample", *FETCH_STAGES, "write"])


def write_yaml(path: Path, flat: dict) -> Path:
    nested: dict = {}
    for key, value in flat.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    path.write_text(yaml.safe_dump(nested))
    return path


def manifest_rows(out: Path) -> list[dict]:
    path = out / "dataset" / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def all_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


# --- the reliable HTTP layer ------------------------------------------------------------------


def fetch_once(server: LoopbackServer, path: str, check=require_image, **http) -> tuple:
    cfg = HttpConfig(**{"attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                        "timeout_s": 1.0, **http})  # fmt: skip

    async def go():
        provider = Provider("tiles", cfg, max_concurrency=4, rate_per_s=1000, redactor=Redactor())
        try:
            return await provider.request("GET", server.url + path, check), provider.stats
        finally:
            await provider.close()

    return asyncio.run(go())


TILE = f"/xyz/3/1/2.png?key={TILE_KEY}"


@pytest.mark.parametrize("kind", ["500", "503", "reset", "truncate", "slow", "html",
                                  "wrong_type", "truncated_image"])  # fmt: skip
def test_transient_faults_are_retried_until_a_good_tile(server, kind) -> None:
    server.inject("tiles", kind, times=2, delay_s=1.5)
    data, stats = fetch_once(server, TILE)
    assert Image.open(io.BytesIO(data)).size == (256, 256)
    assert stats.retries == 2 and server.stats.faults[kind] == 2


def test_429_retry_after_is_honoured(server) -> None:
    server.inject("tiles", "429", times=1, retry_after="0.6")
    started = time.monotonic()
    _, stats = fetch_once(server, TILE)
    assert time.monotonic() - started >= 0.55
    assert stats.throttled == 1 and stats.retries == 1


def test_bad_payloads_never_pass_and_fail_with_reasons(server) -> None:
    server.inject("tiles", "html", times=-1)
    with pytest.raises(FetchFailed) as err:
        fetch_once(server, TILE)
    assert "content type 'text/html' is not an image" in err.value.reason
    assert len(err.value.attempts) == 4
    server.clear_faults()
    server.inject("images", "bad_json", times=-1)
    with pytest.raises(FetchFailed, match="malformed JSON"):
        fetch_once(server, "/mapillary/images?bbox=0,0,0.001,0.001", check=require_json)


def test_refused_credentials_stop_with_a_redacted_message(server) -> None:
    with pytest.raises(ProviderUnavailable) as err:
        fetch_once(server, "/xyz/3/1/2.png?key=WRONG-KEY-9")
    assert "HTTP 401" in str(err.value) and "WRONG-KEY-9" not in str(err.value)


def test_failures_during_an_outage_use_up_no_attempts(server) -> None:
    """A request that probes a dead provider again and again stops with the outage, never as a
    failed request (which would quarantine a good sample); with the breaker closed, its own
    failures still run out."""
    server.inject("tiles", "503", times=-1)
    outage = {"breaker_threshold": 1, "breaker_cooldown_s": 0.05, "max_outage_s": 0.4}
    with pytest.raises(ProviderUnavailable, match=r"tiles: unreachable for \d+ s"):
        fetch_once(server, TILE, attempts=2, **outage)
    assert server.stats.requests["tiles"] > 2  # it kept probing past its 2 attempts
    with pytest.raises(FetchFailed, match="HTTP 503 after 2 attempts"):
        fetch_once(server, TILE, attempts=2, breaker_threshold=5)


def test_circuit_breaker_stops_a_dead_provider_and_resume_finishes(server, tmp_path) -> None:
    server.inject("tiles", "503", times=-1)
    # A generous timeout: on a loaded machine a slow 503 must still read as a 503, not as a
    # timeout (the error message below names the last error).
    dead = {
        "http.breaker_threshold": 3,
        "http.max_outage_s": 0.5,
        "http.attempts": 3,
        "http.timeout_s": 10.0,
    }
    with pytest.raises(
        PlanetlocError, match=r"satellite: unreachable for \d+ s \(last error: HTTP 503\)"
    ):
        build(server, tmp_path, **dead)
    # The breaker held the load down: far fewer tile requests than samples x attempts x tiles.
    assert server.stats.requests["tiles"] < 40
    assert not (tmp_path / "work" / "quarantine" / "satellite").exists()
    server.clear_faults()
    report = build(server, tmp_path, **dead)
    assert report["dataset"]["samples"] == report["stages"]["satellite"]["counts"]["done"]
    street = report["stages"]["streetview"]["counts"]
    assert street["existing"] >= 1 and street["existing"] + street.get("done", 0) == 12


def test_concurrency_cap_and_user_agent(server, tmp_path) -> None:
    server.latency["tiles"] = 0.03
    build(server, tmp_path, stages=["sample", "streetview", "satellite"],
          **{"satellite.max_concurrency": 2})  # fmt: skip
    assert 1 <= server.stats.max_inflight["tiles"] <= 2
    assert server.stats.user_agents == {"planetloc-test/1.0 (contact: test@example.org)"}


# --- stitching ----------------------------------------------------------------------------------


def test_xyz_crop_is_the_right_ground_square(server) -> None:
    cfg = load_build_config(None, settings(server, **{"satellite.zoom": 16}))
    lat, lon = 35.68, 139.76
    x0, y0, x1, _ = tile_window(lat, lon, 16, cfg.satellite.size_m)
    cfg.satellite.pixels = round(x1 - x0)  # native resolution: compare pixel for pixel

    async def go():
        source = XYZSource(cfg.satellite, cfg.http, Redactor())
        try:
            return await source.fetch(lat, lon)
        finally:
            await source.close()

    data, meta = asyncio.run(go())
    # The same square through the quadkey route of the service is the same image.
    cfg.satellite.url = server.url + "/quadkey/{q}.png?key={key}"
    assert asyncio.run(go())[0] == data
    got = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)
    n = cfg.satellite.pixels
    step = (x1 - x0) / n
    gx, gy = np.meshgrid(x0 + (np.arange(n) + 0.5) * step, y0 + (np.arange(n) + 0.5) * step)
    error = np.abs(got - pattern(gx, gy)).mean()
    assert error < 3.0
    assert np.abs(got - pattern(gx + 12, gy)).mean() > 3 * error
    assert meta["tiles"] >= 1 and meta["zoom"] == 16


# --- the whole pipeline -------------------------------------------------------------------------


def test_pipeline_writes_a_valid_dataset(server, tmp_path) -> None:
    report = build(server, tmp_path)
    manifest = read_manifest(tmp_path / "dataset" / "manifest.jsonl", check_images=True)
    samples = manifest.samples
    assert len(samples) == report["dataset"]["samples"] >= 8
    assert len({s.id for s in samples}) == len(samples)
    assert {s.split for s in samples} <= {"train", "val", "test", "test_unseen"}
    unseen = set(report["dataset"]["unseen_regions"])
    assert len(unseen) == 1
    assert all((s.split == "test_unseen") == (s.region in unseen) for s in samples)
    for s in samples:
        assert s.text.startswith("I ") and 30 <= len(s.text.split()) <= 120
        street = s.meta["street"]
        assert 0 <= street["distance_m"] <= 50.0
        # The tile is centred on the photo, which lies within the radius of the point.
        assert float(haversine_m(s.lat, s.lon, *s.meta["point"])) == pytest.approx(
            street["distance_m"], abs=0.05
        )
        assert Image.open(manifest.resolve(s.sat_path)).size == (64, 64)
        assert Image.open(manifest.resolve(s.street_path)).format == "JPEG"
    d = report["stages"]["describe"]["describe"]
    assert d["requests"] == len(samples) and d["completion_tokens"] > 0
    counts = report["stages"]["streetview"]["counts"]
    assert counts["done"] + counts.get("no_coverage", 0) == 12
    shards = sorted((tmp_path / "dataset" / "webdataset").glob("*.tar"))
    members = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            members += tar.getnames()
    assert len(members) == 4 * len(samples)
    assert {m.split(".", 1)[1] for m in members} == {"sat.jpg", "street.jpg", "txt", "json"}
    # Every stage is idempotent: a second run fetches nothing and writes the same manifest.
    before = (tmp_path / "dataset" / "manifest.jsonl").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    requests = sum(server.stats.requests.values())
    again = build(server, tmp_path)
    assert sum(server.stats.requests.values()) == requests
    assert again["stages"]["describe"]["counts"]["existing"] == len(samples)
    assert (tmp_path / "dataset" / "manifest.jsonl").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in shards} == stamps  # shards not rewritten


def test_faulty_providers_still_give_the_clean_dataset(server, tmp_path) -> None:
    build(server, tmp_path / "clean")
    for route, kind in [("tiles", "429"), ("tiles", "500"), ("tiles", "truncate"),
                        ("tiles", "html"), ("images", "reset"), ("images", "bad_json"),
                        ("photo", "truncated_image"), ("lvlm", "bad_json"), ("lvlm", "503"),
                        ("lvlm", "refusal"), ("lvlm", "leak"), ("lvlm", "short"),
                        ("lvlm", "length")]:  # fmt: skip
        server.inject(route, kind, times=2, retry_after="0.05")
    # Up to eight faults per route may land on one request or sample in a row: allow that
    # many retries and re-asks, so only a fault that never recovers could cost a sample.
    report = build(server, tmp_path / "faulty", **{"describe.attempts": 9, "http.attempts": 9})
    assert report["quarantine"]["count"] == 0
    assert manifest_rows(tmp_path / "faulty") == manifest_rows(tmp_path / "clean")
    rejected = report["stages"]["describe"]["describe"]["rejected"]
    assert rejected == {"refusal": 2, "names a place": 2, "too short": 2,
                        "answer cut off at max_tokens": 2}  # fmt: skip
    assert report["stages"]["satellite"]["http"]["throttled"] == 2
    assert all("Tokyo" not in row["text"] for row in manifest_rows(tmp_path / "faulty"))


def test_quarantine_reports_and_retries_on_request(server, tmp_path) -> None:
    build(server, tmp_path, stages=["sample"])
    points = [
        json.loads(x) for x in (tmp_path / "work/points/tokyo-jp.jsonl").read_text().splitlines()
    ]
    covered = [p for p in points if photos_within(p["lat"], p["lon"], 50.0)]
    victim = covered[0]

    def near_victim(req) -> bool:
        c = req.centre
        return (
            c is not None and abs(c[0] - victim["lat"]) < 1e-6 and abs(c[1] - victim["lon"]) < 1e-6
        )

    server.inject("images", "bad_json", times=-1, where=near_victim)
    report = build(server, tmp_path)
    q = report["quarantine"]
    assert q["count"] == 1 and q["samples"][0]["id"] == victim["id"]
    assert q["samples"][0]["stage"] == "streetview"
    assert "malformed JSON" in q["samples"][0]["reason"] and len(q["samples"][0]["attempts"]) == 4
    ids = {row["id"] for row in manifest_rows(tmp_path)}
    assert victim["id"] not in ids and report["dataset"]["states"]["quarantined"] == 1
    # A plain rerun leaves it alone; --retry-quarantined fetches it once the provider behaves.
    seen = server.stats.requests["images"]
    build(server, tmp_path)
    assert server.stats.requests["images"] == seen
    server.clear_faults()
    cfg = load_build_config(None, settings(server))
    report = run_build(cfg, tmp_path, ["sample", *FETCH_STAGES, "write"], retry_quarantined=True)
    assert report["quarantine"]["count"] == 0
    assert victim["id"] in {row["id"] for row in manifest_rows(tmp_path)}


def test_keys_never_reach_logs_reports_or_files(server, tmp_path, capsys) -> None:
    for route in ("tiles", "images", "lvlm"):
        server.inject(route, "500", times=3)
    server.inject("tiles", "html", times=-1, where=lambda r: r.path.startswith("/xyz/17/1"))
    config = write_yaml(tmp_path / "build.yaml", settings(server))
    out = tmp_path / "out"
    assert main(["build", "run", "--config", str(config), "--out", str(out), "-v"]) == 0
    printed = capsys.readouterr()
    log = (out / "build.log").read_text()
    assert "key=***" in log  # the tile URLs were logged, with the key masked
    for secret in (TOKEN, TILE_KEY, LVLM_KEY):
        assert secret not in printed.out + printed.err
        for path in all_files(out):
            assert secret.encode() not in path.read_bytes(), path


def test_satellite_only_build_makes_gallery_tiles(server, tmp_path) -> None:
    report = build(server, tmp_path, **{"streetview.provider": "none"})
    manifest = read_manifest(tmp_path / "dataset" / "manifest.jsonl", check_images=True)
    assert len(manifest.samples) == 12 == report["dataset"]["samples"]
    assert {s.split for s in manifest.samples} == {"gallery"}
    assert all(s.text == "" and s.street_path is None for s in manifest.samples)
    assert server.stats.requests["lvlm"] == 0 and server.stats.requests["images"] == 0


def test_write_refuses_unfinished_samples(server, tmp_path) -> None:
    build(server, tmp_path, stages=["sample", "streetview"])
    with pytest.raises(PlanetlocError, match=r"samples are unfinished \(first: "):
        build(server, tmp_path, stages=["write"])


# --- kill -9 and engines ---------------------------------------------------------------------


def _run_cli(config: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "planetloc.cli", "build", "run", "--config", str(config),
           "--out", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the build never reached the kill point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_at_any_stage_then_resume_gives_every_sample_once(server, tmp_path) -> None:
    flat = settings(server, **{"streetview.max_concurrency": 1, "describe.max_concurrency": 1,
                               "satellite.max_concurrency": 1})  # fmt: skip
    config = write_yaml(tmp_path / "build.yaml", flat)
    out = tmp_path / "out"

    def records() -> int:
        return sum(len(list((out / "work" / s).glob("*/*.json"))) for s in FETCH_STAGES)

    # Three kills, each after the run has made some progress (samples flow through all
    # stages at once, so a kill lands in the middle of street view, satellite and LVLM work).
    server.latency.update({"images": 0.05, "tiles": 0.02, "lvlm": 0.1})
    for _ in range(3):
        start = records()
        proc = _run_cli(config, out)
        _kill_when(proc, lambda start=start: records() >= start + 4)
        assert not (out / "dataset" / "manifest.jsonl").exists()
    lvlm_before = server.stats.requests["lvlm"]
    answered = len(list((out / "work" / "cache" / "describe").glob("*/*.json")))
    server.latency.clear()
    proc = _run_cli(config, out)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    rows = manifest_rows(out)
    assert len(rows) == len({r["id"] for r in rows})
    # The resumed run asked the LVLM only for descriptions it had no answer for.
    assert server.stats.requests["lvlm"] - lvlm_before == len(rows) - answered
    assert not [p for p in all_files(out) if p.name.endswith(".tmp")]
    build(server, tmp_path / "reference")
    assert rows == manifest_rows(tmp_path / "reference")
    for row in rows:
        for key in ("sat_path", "street_path"):
            a = (out / "dataset" / row[key]).read_bytes()
            assert a == (tmp_path / "reference" / "dataset" / row[key]).read_bytes()


def _same_dataset(a: Path, b: Path) -> None:
    rows = manifest_rows(a)
    assert rows == manifest_rows(b) and rows
    shards = sorted(p.name for p in (a / "dataset" / "webdataset").glob("*.tar"))
    for name in shards:
        assert (a / "dataset/webdataset" / name).read_bytes() == (
            b / "dataset/webdataset" / name
        ).read_bytes()


def test_process_engine_equals_single_process(server, tmp_path) -> None:
    build(server, tmp_path / "one")
    cfg = load_build_config(None, settings(server))
    run_build(cfg, tmp_path / "two", ["sample", *FETCH_STAGES, "write"], workers=2)
    _same_dataset(tmp_path / "one", tmp_path / "two")


def test_ray_engine_equals_local_engine(server, tmp_path, monkeypatch) -> None:
    import ray

    # Ray runs its workers at nice 15; beside the other test process they would get almost
    # no CPU and this test would take minutes instead of seconds.
    monkeypatch.setenv("RAY_worker_niceness", "0")

    build(server, tmp_path / "local")
    cfg = load_build_config(None, settings(server))
    # The engine starts a local instance, ray.init(num_cpus=2), and shuts it down after.
    stages = ["sample", *FETCH_STAGES, "write"]
    report = run_build(cfg, tmp_path / "ray", stages, engine="ray", workers=2)
    assert not ray.is_initialized()
    assert report["engine"] == "ray"
    _same_dataset(tmp_path / "local", tmp_path / "ray")
    # A user error inside a Ray task comes back as the same one-line error.
    cfg.describe.api_key_env = "UNSET_LVLM_KEY"
    with pytest.raises(PlanetlocError, match=r"^describe.api_key_env: environment variable"):
        run_build(cfg, tmp_path / "ray2", stages, engine="ray", workers=2)


def test_cli_reports_bad_settings_in_one_line(server, tmp_path, capsys) -> None:
    config = write_yaml(tmp_path / "b.yaml", settings(server, **{"streetview.token_env": "NOPE"}))
    assert main(["build", "run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "planetloc: error: streetview.token_env: environment variable NOPE is not set"


class FixedPhotoSource:
    """A third-party street-view provider plugged in by ``module:Class``."""

    def __init__(self, cfg, http, redactor) -> None:
        self.radius = cfg.radius_m

    async def nearest(self, lat: float, lon: float, radius_m: float):
        from planetloc.builder.streetview import StreetPhoto

        buffer = io.BytesIO()
        Image.new("RGB", (40, 20), (200, 30, 30)).save(buffer, "JPEG")
        return StreetPhoto(buffer.getvalue(), lat, lon, 0.0, {"provider": "fixed"})

    async def close(self) -> None:
        return None


def test_plugged_in_street_view_provider(server, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    provider = "test_build_pipeline:FixedPhotoSource"
    build(server, tmp_path, **{"streetview.provider": provider})
    rows = manifest_rows(tmp_path)
    assert len(rows) == 12 and {r["meta"]["street"]["provider"] for r in rows} == {"fixed"}
    assert server.stats.requests["images"] == 0
    with pytest.raises(PlanetlocError, match="cannot be loaded"):
        build(server, tmp_path / "x", **{"streetview.provider": "no_such_module:Source"})


def test_changed_settings_are_refused_not_mixed(server, tmp_path) -> None:
    build(server, tmp_path, stages=["sample", "streetview", "satellite"])
    with pytest.raises(PlanetlocError, match=r"satellite.*pixels = 64, not 96; use a new --out"):
        build(server, tmp_path, stages=["satellite"], **{"satellite.pixels": 96})
    with pytest.raises(PlanetlocError, match=r"points.*min_spacing_m = 150.0, not 20.0"):
        build(server, tmp_path, stages=["sample"], **{"sample.min_spacing_m": 20.0})
    # Speed settings may change between runs.
    build(server, tmp_path, **{"satellite.max_concurrency": 3, "describe.rate_per_s": 5.0})


def test_descriptions_come_from_the_cache_when_records_are_lost(server, tmp_path) -> None:
    first = build(server, tmp_path)
    n = first["dataset"]["samples"]
    for record in (tmp_path / "work" / "describe").glob("*/*.json"):
        record.unlink()
    asked = server.stats.requests["lvlm"]
    again = build(server, tmp_path)
    assert server.stats.requests["lvlm"] == asked
    assert again["stages"]["describe"]["describe"]["cached"] == n
    assert again["dataset"]["samples"] == n


def test_lvlm_that_keeps_refusing_quarantines_with_every_reason(server, tmp_path) -> None:
    server.inject("lvlm", "refusal", times=-1)
    report = build(server, tmp_path / "q", stages=["sample", *FETCH_STAGES],
                   **{"sample.per_region": 2, "describe.attempts": 3})  # fmt: skip
    q = report["quarantine"]
    assert (
        q["count"]
        == q["by_stage"]["describe"]
        == report["stages"]["describe"]["counts"]["quarantined"]
    )
    assert q["count"] >= 1
    for item in q["samples"]:
        assert item["attempts"] == ["rejected answer: refusal"] * 3
    assert report["stages"]["describe"]["describe"]["rejected"] == {"refusal": 3 * q["count"]}


def test_tiles_the_service_does_not_have_mean_no_coverage_not_quarantine(server, tmp_path) -> None:
    build(server, tmp_path, stages=["sample", "streetview"])
    records = sorted((tmp_path / "work" / "streetview").glob("*/*.json"))
    photo = next(json.loads(p.read_text()) for p in records if '"ok"' in p.read_text())
    x0, y0, x1, y1 = tile_window(photo["lat"], photo["lon"], 17, 200.0)
    missing = {(int(x0 // 256), int(y0 // 256)), (int(x1 // 256), int(y1 // 256))}

    def absent(req) -> bool:
        x, y = req.path.removesuffix(".png").split("/")[3:5]
        return (int(x), int(y)) in missing

    server.inject("tiles", "404", times=-1, where=absent)
    report = build(server, tmp_path)
    assert report["stages"]["satellite"]["counts"]["no_coverage"] >= 1
    assert report["quarantine"]["count"] == 0
    assert report["dataset"]["states"]["no_satellite"] >= 1
