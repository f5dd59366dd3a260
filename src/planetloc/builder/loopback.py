"""Loopback stand-ins for the builder's providers, with fault injection.

One threaded HTTP server on 127.0.0.1 plays three services, so a whole build can run (and
be tested or benchmarked) with no network and no keys:

* ``/xyz/{z}/{x}/{y}.png`` and ``/quadkey/{q}.png``: a tile service whose imagery is a smooth
  pattern in global Web Mercator pixels, so stitched crops can be checked pixel for pixel;
* ``/mapillary/images?bbox=...`` and ``/mapillary/photo/{id}.jpg``: a Mapillary-like search
  with deterministic photos near each query (about one query in ten finds none);
* ``/v1/chat/completions``: an OpenAI-compatible LVLM whose answer is a first-person
  description determined by the image it is sent.

:meth:`LoopbackServer.inject` makes chosen requests fail: ``429`` (with ``Retry-After``),
``500``, ``503``, ``401``, ``404``, ``slow``, ``reset`` (connection dropped), ``truncate`` (body cut
short of its Content-Length), ``truncated_image``, ``html`` (error page with status 200),
``wrong_type``, ``bad_json``, and for the LVLM ``refusal``, ``short``, ``leak``, ``length``.
Run ``python -m planetloc.builder.loopback --port 8765`` to serve it from a shell.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from planetloc.geo.coords import haversine_m, offset_latlon
from planetloc.stable_hash import stable_int

FAULTS = (
    "429", "500", "503", "401", "404", "slow", "reset", "truncate", "truncated_image", "html",
    "wrong_type", "bad_json", "refusal", "short", "leak", "length",
)  # fmt: skip


def pattern(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """RGB of the loopback world at global pixel coordinates (smooth, so resampling is mild)."""
    r = 128 + 90 * np.sin(gx / 41.0) * np.cos(gy / 67.0)
    g = 128 + 90 * np.sin(gy / 53.0 + 1.0)
    b = 128 + 70 * np.sin((gx + gy) / 89.0 + 2.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def render_tile(x: int, y: int, size: int = 256) -> bytes:
    gx, gy = np.meshgrid(np.arange(size) + x * size + 0.5, np.arange(size) + y * size + 0.5)
    buffer = io.BytesIO()
    Image.fromarray(pattern(gx, gy)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def photos_near(lat: float, lon: float, radius_m: float) -> list[dict[str, Any]]:
    """The photos the loopback Mapillary knows around a query centre (deterministic)."""
    h = stable_int(round(lat, 6), round(lon, 6))
    if h % 10 == 0:
        return []
    rng = np.random.default_rng(h)
    out = []
    for k in range(3):
        east, north = rng.uniform(-0.7, 0.7, 2) * radius_m
        plat, plon = offset_latlon(lat, lon, east, north)
        out.append(
            {
                "id": f"{h % 10**12:012d}{k}",
                "lat": round(float(plat), 7),
                "lon": round(float(plon), 7),
                "is_pano": k == 0 and h % 2 == 1,
                "captured_at": 1_600_000_000_000 + h % 10**10,
                "compass_angle": float(h % 360),
            }
        )
    return out


def render_photo(photo_id: str) -> bytes:
    h = stable_int("photo", photo_id)
    wide = int(photo_id[-1]) == 0
    w, hgt = (160, 80) if wide else (96, 72)
    yy, xx = np.mgrid[0:hgt, 0:w]
    base = np.array([h % 200, (h >> 8) % 200, (h >> 16) % 200], dtype=np.float64) + 30
    img = base + 25 * np.sin(xx[..., None] / (5 + h % 7)) + 20 * (yy[..., None] > hgt // 2)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


_SLOTS = (
    ("I am standing on", "I stand on", "I am standing at the edge of", "I find myself on"),
    ("a wide asphalt street", "a narrow brick lane", "a quiet residential road",
     "a busy four-lane avenue"),
    ("lined with", "flanked by", "bordered on both sides by", "running between"),
    ("low two-storey houses with red tiled roofs.", "tall glass and steel towers.",
     "mid-rise concrete apartment blocks.", "terraced brick buildings with grey slate roofs."),
    ("To my left there is", "On my right I can see", "Just ahead of me is", "Behind me lies"),
    ("a small park with mature leafy trees", "a paved plaza with a few benches",
     "a fenced sports field of green grass", "a parking lot of pale concrete"),
    ("and the sidewalks are", "while the pavements are", "and the kerbs are", "and the verges are"),
    ("broad and edged with grass.", "narrow and patched with cracks.",
     "lined with young trees in square pits.", "made of light grey slabs."),
    ("Further away the road meets", "In the distance the street reaches",
     "About a block ahead it joins", "Beyond that it curves toward"),
    ("a roundabout planted with shrubs", "a railway embankment", "a wide river bank with reeds",
     "a crossroads with zebra crossings"),
    ("and the buildings there look", "where the rooftops appear", "and everything there seems",
     "and the surroundings look"),
    ("dense and tightly packed.", "spread out with gardens between them.",
     "newer and more uniform.", "older, with mixed colours and materials."),
)  # fmt: skip


def describe_image(data_url: str) -> str:
    """The loopback LVLM's first-person answer for an inline image."""
    h = stable_int("lvlm", hashlib.sha256(data_url.encode()).hexdigest())
    words = []
    for i, options in enumerate(_SLOTS):
        words.append(options[(h >> (2 * i)) % len(options)])
    text = " ".join(words)
    return text + " The light is even and the surfaces show their colours and textures clearly."


@dataclass
class Fault:
    route: str
    kind: str
    times: int = 1  # -1: forever
    where: Callable[[RequestInfo], bool] | None = None
    retry_after: str = "1"
    delay_s: float = 1.0


@dataclass
class RequestInfo:
    route: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    @property
    def centre(self) -> tuple[float, float] | None:
        bbox = self.query.get("bbox", [""])[0].split(",")
        if len(bbox) != 4:
            return None
        west, south, east, north = (float(v) for v in bbox)
        return (south + north) / 2, (west + east) / 2


@dataclass
class ServerStats:
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    inflight: Counter[str] = field(default_factory=Counter)
    max_inflight: Counter[str] = field(default_factory=Counter)
    user_agents: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _route(self, path: str) -> str:
        if path.startswith("/xyz/") or path.startswith("/quadkey/"):
            return "tiles"
        if path.startswith("/mapillary/images"):
            return "images"
        if path.startswith("/mapillary/photo/"):
            return "photo"
        if path.endswith("/chat/completions"):
            return "lvlm"
        return "unknown"

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None,
              length: int | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(size))

    def _handle(self, body: bytes) -> None:
        owner = self.server.owner
        parsed = urlparse(self.path)
        route = self._route(parsed.path)
        info = RequestInfo(route, parsed.path, parse_qs(parsed.query), dict(self.headers), body)
        stats = owner.stats
        with owner.lock:
            stats.requests[route] += 1
            stats.inflight[route] += 1
            stats.max_inflight[route] = max(stats.max_inflight[route], stats.inflight[route])
            stats.user_agents.add(self.headers.get("User-Agent", ""))
            stats.log.append(self.path)
            fault = owner.take_fault(info)
        try:
            if owner.latency.get(route):
                time.sleep(owner.latency[route])
            self._respond(info, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with owner.lock:
                stats.inflight[route] -= 1

    def _respond(self, info: RequestInfo, fault: Fault | None) -> None:
        kind = fault.kind if fault else None
        if kind == "slow":
            time.sleep(fault.delay_s)
        elif kind == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        elif kind in ("429", "500", "503", "401", "404"):
            headers = {"Retry-After": fault.retry_after} if kind == "429" else None
            self._send(int(kind), b'{"error": "injected"}', "application/json", headers)
            return
        elif kind == "html":
            self._send(200, b"<html><body>Service error</body></html>", "text/html")
            return
        elif kind == "wrong_type":
            self._send(200, b'{"error": "quota exceeded"}', "application/json")
            return
        elif kind == "bad_json":
            self._send(200, b'{"data": [{"id": ', "application/json")
            return
        status, body, ctype = self._answer(info, kind)
        if kind == "truncate":
            self.close_connection = True
            self._send(status, body[: len(body) // 2], ctype, length=len(body))
            return
        if kind == "truncated_image":
            body = body[: len(body) // 2]
        self._send(status, body, ctype)

    def _answer(self, info: RequestInfo, kind: str | None) -> tuple[int, bytes, str]:
        owner = self.server.owner
        if info.route == "tiles":
            if owner.tile_key and info.query.get("key", [""])[0] != owner.tile_key:
                return 401, b"bad key", "text/plain"
            parts = info.path.rsplit(".", 1)[0].split("/")
            if parts[1] == "quadkey":
                x, y = quadkey_to_xy(parts[2])
            else:
                x, y = int(parts[3]), int(parts[4])
            return 200, owner.tile(x, y), "image/png"
        if info.route == "images":
            if owner.token and info.headers.get("Authorization") != f"OAuth {owner.token}":
                return 401, b'{"error": "auth"}', "application/json"
            centre = info.centre
            if centre is None:
                return 400, b'{"error": "bbox"}', "application/json"
            bbox = [float(v) for v in info.query["bbox"][0].split(",")]
            radius = float(haversine_m(bbox[1], centre[1], bbox[3], centre[1])) / 2
            base = f"http://{self.headers.get('Host')}"
            data = [
                {
                    "id": p["id"],
                    "computed_geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
                    "is_pano": p["is_pano"],
                    "captured_at": p["captured_at"],
                    "compass_angle": p["compass_angle"],
                    "thumb_2048_url": f"{base}/mapillary/photo/{p['id']}.jpg",
                }
                for p in photos_near(centre[0], centre[1], radius)
            ]
            return 200, json.dumps({"data": data}).encode(), "application/json"
        if info.route == "photo":
            photo_id = info.path.rsplit("/", 1)[1].split(".")[0]
            return 200, render_photo(photo_id), "image/jpeg"
        if info.route == "lvlm":
            return self._completion(info, kind)
        return 404, b"not found", "text/plain"

    def _completion(self, info: RequestInfo, kind: str | None) -> tuple[int, bytes, str]:
        owner = self.server.owner
        if owner.api_key and info.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return 401, b'{"error": "auth"}', "application/json"
        try:
            request = json.loads(info.body)
            parts = request["messages"][-1]["content"]
            url = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
            base64.b64decode(url.split(",", 1)[1], validate=True)
        except (ValueError, KeyError, IndexError, StopIteration, TypeError):
            return 400, b'{"error": "bad request"}', "application/json"
        text = describe_image(url)
        finish = "stop"
        if kind == "refusal":
            text = "I'm sorry, but I can't help with identifying or describing this image."
        elif kind == "short":
            text = "I see a road."
        elif kind == "leak":
            text += " It looks a lot like the older districts of Tokyo."
        elif kind == "length":
            text, finish = " ".join(text.split()[:20]), "length"
        answer = {
            "id": "cmpl-loopback",
            "object": "chat.completion",
            "model": request.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": 300 + len(url) // 1000,
                "completion_tokens": len(text.split()),
                "total_tokens": 300 + len(url) // 1000 + len(text.split()),
            },
        }
        return 200, json.dumps(answer).encode(), "application/json"


def quadkey_to_xy(key: str) -> tuple[int, int]:
    x = y = 0
    for digit in key:
        x, y = x * 2, y * 2
        d = int(digit)
        x += d & 1
        y += (d >> 1) & 1
    return x, y


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    owner: LoopbackServer


class LoopbackServer:
    """Start with ``with LoopbackServer() as server:``; ``server.url`` is its base URL."""

    def __init__(
        self,
        port: int = 0,
        *,
        token: str | None = None,
        api_key: str | None = None,
        tile_key: str | None = None,
        latency: dict[str, float] | None = None,
    ) -> None:
        self.token = token
        self.api_key = api_key
        self.tile_key = tile_key
        self.latency = latency or {}
        self.lock = threading.Lock()
        self.stats = ServerStats()
        self.faults: list[Fault] = []
        self._tiles: dict[tuple[int, int], bytes] = {}
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def tile(self, x: int, y: int) -> bytes:
        key = (x, y)
        if key not in self._tiles:
            self._tiles[key] = render_tile(x, y)
        return self._tiles[key]

    def inject(
        self,
        route: str,
        kind: str,
        times: int = 1,
        where: Callable[[RequestInfo], bool] | None = None,
        **options: Any,
    ) -> Fault:
        """Make the next ``times`` matching requests to ``route`` fail with ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        fault = Fault(route, kind, times, where, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, info: RequestInfo) -> Fault | None:
        for fault in self.faults:
            if fault.route != info.route or fault.times == 0:
                continue
            if fault.where is not None and not fault.where(info):
                continue
            if fault.times > 0:
                fault.times -= 1
            self.stats.faults[fault.kind] += 1
            return fault
        return None

    def start(self) -> LoopbackServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def build_settings(self) -> dict[str, Any]:
        """``section.key`` settings pointing a build at this server."""
        return {
            "satellite.url": self.url
            + "/xyz/{z}/{x}/{y}.png"
            + ("?key={key}" if self.tile_key else ""),
            "streetview.api_url": self.url + "/mapillary",
            "describe.base_url": self.url + "/v1",
            "describe.model": "loopback-lvlm",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="loopback-token", help="Mapillary token it expects")
    parser.add_argument("--latency", action="append", default=[], metavar="ROUTE=SECONDS",
                        help="added delay per route (tiles, images, photo, lvlm)")  # fmt: skip
    args = parser.parse_args()
    latency = {}
    for pair in args.latency:
        route, _, seconds = pair.partition("=")
        latency[route] = float(seconds)
    server = LoopbackServer(args.port, token=args.token, latency=latency).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
