"""Loopback stand-ins for the builder's providers, with fault injection.

One threaded HTTP server on 127.0.0.1 plays three services, so a whole build can run (and
be tested or benchmarked) with no network and no keys. Each behaves as the real service's
documentation says, not as our client would like:

* ``/xyz/{z}/{x}/{y}.png``, ``/quadkey/{q}.png`` and WMTS ``/wmts/{TileMatrix}/{TileRow}/
  {TileCol}.png``: a tile service whose imagery is a smooth pattern in global Web Mercator
  pixels, so stitched crops can be checked pixel for pixel. The WMTS route answers tiles
  outside its tile matrix limits with HTTP 400 and an OGC ``ExceptionReport``
  (``TileOutOfRange``), and an unknown ``TileMatrix`` with ``InvalidParameterValue``.
* ``/mapillary/images?bbox=&fields=&limit=&is_pano=`` and ``/mapillary/{image_id}?fields=``:
  the Mapillary API v4 search and image entity over a fixed world of photos (mostly a few per
  100 m cell, some cells empty, one in twenty dense with more photos than a search answers).
  Answers hold only the requested fields, at most ``limit`` hits (2000 at most) in an order
  unrelated to distance; ``computed_geometry`` and ``computed_compass_angle`` are missing on
  unprocessed photos. A wrong token gets the Graph API's ``OAuthException`` (code 190).
* ``/cdn/{id}.jpg?size=&sig=``: the caching host behind the ``thumb_*_url`` fields. Each
  answer signs its URLs afresh; a signed URL stops working after ``thumb_ttl_s`` seconds or
  ``thumb_uses`` downloads and then answers 403 ``URL signature expired``.
* ``/v1/chat/completions``: an OpenAI-compatible LVLM whose answer is a first-person
  description determined by the image it is sent, cut off (``finish_reason: length``) at
  ``max_tokens`` / ``max_completion_tokens``; with ``reject_max_tokens`` it refuses
  ``max_tokens`` with HTTP 400 ``unsupported_parameter``, as OpenAI's API does.

:meth:`LoopbackServer.inject` makes chosen requests fail: ``429`` (with ``Retry-After``),
``500``, ``503``, ``400``, ``401``, ``404``, ``oauth`` (the Graph API's token error with any
``status``, 400 by default), ``slow``, ``reset`` (connection dropped), ``truncate`` (body cut
short of its Content-Length), ``truncated_image``, ``html`` (error page with status 200),
``wrong_type``, ``bad_json``, and for the LVLM ``refusal``, ``short``, ``leak``, ``length``.
Routes: ``tiles``, ``images``, ``image``, ``photo``, ``lvlm``. Run ``python -m
planetloc.builder.loopback --port 8765`` to serve it from a shell.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import io
import json
import math
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

from planetloc.geo import webmercator as wm
from planetloc.geo.coords import EARTH_RADIUS_M, haversine_m, offset_latlon
from planetloc.stable_hash import stable_int

FAULTS = (
    "429", "500", "503", "400", "401", "404", "oauth", "slow", "reset", "truncate",
    "truncated_image", "html", "wrong_type", "bad_json", "refusal", "short", "leak", "length",
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


# The loopback Mapillary's world: photos scattered in cells of CELL_DEG x CELL_DEG degrees.
# Most cells hold a few photos, some none, and one in twenty is dense (a busy square mapped
# many times over) with more photos than one search answers.
CELL_DEG = 0.001
DENSE_PHOTOS = 300
SEARCH_MAX = 2000  # the API's documented maximum for ``limit`` (also its default)
THUMB_SIZES = {"thumb_256_url": 256, "thumb_1024_url": 1024, "thumb_2048_url": 2048,
               "thumb_original_url": 0}  # fmt: skip


@functools.lru_cache(maxsize=8192)
def _cell_photos(i: int, j: int) -> tuple[dict[str, Any], ...]:
    h = stable_int("mapillary-cell", i, j)
    kind = h % 20
    dense = kind == 2
    count = 0 if kind < 2 else DENSE_PHOTOS if dense else 3 + (h // 20) % 6
    # Half the dense cells have a few panoramas; sparse cells have them one photo in four.
    pano_rate = (0.0 if (h >> 16) % 2 else 0.03) if dense else 0.25
    rng = np.random.default_rng(h)
    lat = (i + rng.random(count)) * CELL_DEG
    lon = (j + rng.random(count)) * CELL_DEG
    gps_error = rng.normal(0.0, 4.0, (count, 2))  # metres east, north
    flags = rng.random((count, 3))
    heading = rng.uniform(0.0, 360.0, count)
    drift = rng.normal(0.0, 8.0, count)
    photos = []
    for k in range(count):
        gps_lat, gps_lon = offset_latlon(lat[k], lon[k], gps_error[k, 0], gps_error[k, 1])
        photos.append(
            {
                "id": f"1{i + 100_000:06d}{j + 200_000:06d}{k:03d}",
                "lat": round(float(lat[k]), 7),  # the corrected position
                "lon": round(float(lon[k]), 7),
                "gps_lat": round(float(gps_lat), 7),  # the raw GPS fix
                "gps_lon": round(float(gps_lon), 7),
                "computed": bool(flags[k, 0] < 0.75),  # processing gives most a computed_*
                "compass_angle": round(float(heading[k]), 2) % 360.0,
                "computed_compass_angle": (
                    round(float(heading[k] + drift[k]) % 360.0, 2) % 360.0
                    if flags[k, 1] < 0.6
                    else None
                ),
                "is_pano": bool(flags[k, 2] < pano_rate),
                "captured_at": 1_500_000_000_000 + stable_int("captured", i, j, k) % 10**11,
            }
        )
    return tuple(photos)


def position(photo: dict[str, Any]) -> tuple[float, float]:
    """Where a client should place a photo: ``computed_geometry`` when the API has one."""
    if photo["computed"]:
        return photo["lat"], photo["lon"]
    return photo["gps_lat"], photo["gps_lon"]


def photos_in_box(
    west: float, south: float, east: float, north: float, pano: bool | None = None
) -> list[dict[str, Any]]:
    """Every photo of the world inside a box (all of them: no cap, no order promised)."""
    # One cell of margin: a raw GPS fix can stray from its cell.
    i0, i1 = math.floor(south / CELL_DEG) - 1, math.floor(north / CELL_DEG) + 1
    j0, j1 = math.floor(west / CELL_DEG) - 1, math.floor(east / CELL_DEG) + 1
    out = []
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            for photo in _cell_photos(i, j):
                lat, lon = position(photo)
                inside = south <= lat <= north and west <= lon <= east
                if inside and (pano is None or photo["is_pano"] == pano):
                    out.append(photo)
    return out


def photos_within(lat: float, lon: float, radius_m: float) -> list[tuple[float, dict[str, Any]]]:
    """``(distance_m, photo)`` for every photo within ``radius_m`` of a point, nearest first."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    dlon = dlat / max(1e-6, math.cos(math.radians(lat)))
    found = []
    for photo in photos_in_box(lon - dlon, lat - dlat, lon + dlon, lat + dlat):
        dist = float(haversine_m(lat, lon, *position(photo)))
        if dist <= radius_m:
            found.append((dist, photo))
    return sorted(found, key=lambda pair: (pair[0], pair[1]["id"]))


def photo_by_id(photo_id: str) -> dict[str, Any] | None:
    """The photo with this id, if the world has it (ids encode their cell)."""
    if len(photo_id) != 16 or not photo_id.isdigit():
        return None
    i, j, k = int(photo_id[1:7]) - 100_000, int(photo_id[7:13]) - 200_000, int(photo_id[13:])
    cell = _cell_photos(i, j)
    return cell[k] if k < len(cell) else None


def render_photo(photo_id: str, wide: bool) -> bytes:
    """The loopback's picture for a photo id (a panorama is twice as wide as it is high)."""
    h = stable_int("photo", photo_id)
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
    status: int = 400  # of an ``oauth`` fault


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
    # What the services did on their own: "capped" searches, "expired" thumbnail URLs,
    # "out_of_range" WMTS tiles, "rejected_field" LVLM requests.
    events: Counter[str] = field(default_factory=Counter)
    inflight: Counter[str] = field(default_factory=Counter)
    max_inflight: Counter[str] = field(default_factory=Counter)
    user_agents: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)


def oauth_error(message: str = "Invalid OAuth access token - Cannot parse access token") -> bytes:
    """The Graph API's error body for a refused token."""
    error = {"message": message, "type": "OAuthException", "code": 190, "fbtrace_id": "Aloop"}
    return json.dumps({"error": error}).encode()


def ows_exception(code: str, locator: str, text: str) -> bytes:
    """An OGC OWS 1.1 ``ExceptionReport``, as WMTS servers send with their 4xx answers."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ExceptionReport xmlns="http://www.opengis.net/ows/1.1" version="1.0.0" '
        'xml:lang="en">\n'
        f'  <Exception exceptionCode="{code}" locator="{locator}">\n'
        f"    <ExceptionText>{text}</ExceptionText>\n"
        "  </Exception>\n</ExceptionReport>\n"
    ).encode()


def _json(status: int, payload: Any) -> tuple[int, bytes, str]:
    return status, json.dumps(payload).encode(), "application/json"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _route(self, path: str) -> str:
        if path.startswith(("/xyz/", "/quadkey/", "/wmts/")):
            return "tiles"
        if path.startswith("/mapillary/images"):
            return "images"
        if path.startswith("/mapillary/"):
            return "image"
        if path.startswith("/cdn/"):
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
        elif kind == "400":
            if info.route == "tiles":
                body = ows_exception("InvalidParameterValue", "Format", "injected")
                self._send(400, body, "application/xml")
            else:
                self._send(400, b'{"error": {"message": "injected"}}', "application/json")
            return
        elif kind == "oauth":
            self._send(fault.status, oauth_error(), "application/json")
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
            return self._tile(info)
        if info.route in ("images", "image"):
            if owner.token and info.headers.get("Authorization") != f"OAuth {owner.token}":
                return 401, oauth_error(), "application/json"
            if info.route == "images":
                return self._search(info)
            return self._entity(info)
        if info.route == "photo":
            return self._thumbnail(info)
        if info.route == "lvlm":
            return self._completion(info, kind)
        return 404, b"not found", "text/plain"

    def _tile(self, info: RequestInfo) -> tuple[int, bytes, str]:
        owner = self.server.owner
        if owner.tile_key and info.query.get("key", [""])[0] != owner.tile_key:
            return 401, b"bad key", "text/plain"
        parts = info.path.rsplit(".", 1)[0].split("/")
        if parts[1] == "quadkey":
            x, y = quadkey_to_xy(parts[2])
        elif parts[1] == "wmts":
            z, y, x = int(parts[2]), int(parts[3]), int(parts[4])  # TileMatrix/TileRow/TileCol
            problem = owner.wmts_problem(z, y, x)
            if problem is not None:
                if problem[0] == "TileOutOfRange":
                    with owner.lock:
                        owner.stats.events["out_of_range"] += 1
                return 400, ows_exception(*problem), "application/xml"
        else:
            x, y = int(parts[3]), int(parts[4])
        return 200, owner.tile(x, y), "image/png"

    def _search(self, info: RequestInfo) -> tuple[int, bytes, str]:
        """``/images?bbox=&fields=&limit=&is_pano=``: at most ``limit`` photos of the box, in
        an order that has nothing to do with distance."""
        owner = self.server.owner
        try:
            west, south, east, north = (float(v) for v in info.query["bbox"][0].split(","))
            limit = int(info.query.get("limit", [str(SEARCH_MAX)])[0])
        except (KeyError, ValueError):
            error = {"message": "Invalid parameter", "type": "GraphMethodException", "code": 100}
            return _json(400, {"error": error})
        pano = info.query.get("is_pano", [None])[0]
        found = photos_in_box(west, south, east, north, None if pano is None else pano == "true")
        bbox = info.query["bbox"][0]
        found.sort(key=lambda p: stable_int("order", bbox, p["id"]))
        cap = max(1, min(limit, SEARCH_MAX))
        if len(found) > cap:
            with owner.lock:
                owner.stats.events["capped"] += 1
        wanted = _wanted(info)
        base = f"http://{self.headers.get('Host')}"
        return _json(200, {"data": [owner.fields(p, wanted, base) for p in found[:cap]]})

    def _entity(self, info: RequestInfo) -> tuple[int, bytes, str]:
        """``/{image_id}?fields=``: one image's fields (fresh signed thumbnail URLs)."""
        owner = self.server.owner
        photo_id = info.path.rsplit("/", 1)[1]
        photo = photo_by_id(photo_id)
        if photo is None:
            message = f"Unsupported get request. Object with ID '{photo_id}' does not exist"
            return _json(404, {"error": {"message": message, "type": "GraphMethodException",
                                         "code": 100}})  # fmt: skip
        base = f"http://{self.headers.get('Host')}"
        return _json(200, owner.fields(photo, _wanted(info), base))

    def _thumbnail(self, info: RequestInfo) -> tuple[int, bytes, str]:
        """The caching host: a signed URL works until it expires, then answers 403."""
        owner = self.server.owner
        photo_id = info.path.rsplit("/", 1)[1].split(".")[0]
        verdict = owner.use_signature(photo_id, info.query.get("sig", [""])[0])
        if verdict is not None:
            return 403, verdict.encode(), "text/plain"
        photo = photo_by_id(photo_id)
        if photo is None:
            return 404, b"Not Found", "text/plain"
        return 200, render_photo(photo_id, photo["is_pano"]), "image/jpeg"

    def _completion(self, info: RequestInfo, kind: str | None) -> tuple[int, bytes, str]:
        owner = self.server.owner
        if owner.api_key and info.headers.get("Authorization") != f"Bearer {owner.api_key}":
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error",
                     "param": None, "code": "invalid_api_key"}  # fmt: skip
            return _json(401, {"error": error})
        try:
            request = json.loads(info.body)
            parts = request["messages"][-1]["content"]
            url = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
            base64.b64decode(url.split(",", 1)[1], validate=True)
        except (ValueError, KeyError, IndexError, StopIteration, TypeError):
            return 400, b'{"error": "bad request"}', "application/json"
        if owner.reject_max_tokens and "max_tokens" in request:
            # What OpenAI's API answers for models that only take max_completion_tokens.
            with owner.lock:
                owner.stats.events["rejected_field"] += 1
            error = {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this "
                "model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "unsupported_parameter",
            }
            return _json(400, {"error": error})
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
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        if isinstance(limit, int) and len(text.split()) > limit:  # one token a word here
            text, finish = " ".join(text.split()[:limit]), "length"
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
        return _json(200, answer)


def _wanted(info: RequestInfo) -> list[str]:
    return [f for f in info.query.get("fields", [""])[0].split(",") if f]


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
    """Start with ``with LoopbackServer() as server:``; ``server.url`` is its base URL.

    ``thumb_ttl_s`` / ``thumb_uses``: how long, and for how many downloads, a signed
    thumbnail URL works (``None``: no limit). ``wmts_extent`` (west, south, east, north) and
    ``wmts_max_zoom``: the WMTS route's tile matrix limits. ``reject_max_tokens``: the LVLM
    refuses ``max_tokens`` as OpenAI's API does for newer models.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        token: str | None = None,
        api_key: str | None = None,
        tile_key: str | None = None,
        latency: dict[str, float] | None = None,
        thumb_ttl_s: float | None = None,
        thumb_uses: int | None = None,
        wmts_extent: tuple[float, float, float, float] | None = None,
        wmts_max_zoom: int = 19,
        reject_max_tokens: bool = False,
    ) -> None:
        self.token = token
        self.api_key = api_key
        self.tile_key = tile_key
        self.latency = latency or {}
        self.thumb_ttl_s = thumb_ttl_s
        self.thumb_uses = thumb_uses
        self.wmts_extent = wmts_extent
        self.wmts_max_zoom = wmts_max_zoom
        self.reject_max_tokens = reject_max_tokens
        self.lock = threading.Lock()
        self.stats = ServerStats()
        self.faults: list[Fault] = []
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._signed: dict[str, list[Any]] = {}  # signature -> [photo id, deadline, uses left]
        self._minted = 0
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

    def wmts_problem(self, z: int, row: int, col: int) -> tuple[str, str, str] | None:
        """The OWS exception (code, locator, text) for a WMTS tile outside the limits."""
        if not 0 <= z <= self.wmts_max_zoom:
            return "InvalidParameterValue", "TileMatrix", f"TileMatrix {z} is not in the set"
        n = 2**z
        if not 0 <= row < n:
            return "TileOutOfRange", "TileRow", f"TileRow {row} is out of range"
        if not 0 <= col < n:
            return "TileOutOfRange", "TileCol", f"TileCol {col} is out of range"
        if self.wmts_extent is not None:
            west, south, east, north = self.wmts_extent
            top, left = wm.pixel_to_latlon(col * 256, row * 256, z)
            bottom, right = wm.pixel_to_latlon((col + 1) * 256, (row + 1) * 256, z)
            if bottom >= north or top <= south:
                return "TileOutOfRange", "TileRow", f"TileRow {row} is out of range"
            if right <= west or left >= east:
                return "TileOutOfRange", "TileCol", f"TileCol {col} is out of range"
        return None

    def sign(self, photo_id: str) -> str:
        """A new signature for a thumbnail URL (valid per ``thumb_ttl_s``/``thumb_uses``)."""
        with self.lock:
            self._minted += 1
            signature = f"{stable_int('cdn', self._minted, photo_id):016x}"
            ttl = self.thumb_ttl_s
            deadline = time.monotonic() + ttl if ttl is not None else None
            self._signed[signature] = [photo_id, deadline, self.thumb_uses]
        return signature

    def use_signature(self, photo_id: str, signature: str) -> str | None:
        """Count one download on a signed URL; the 403 text when it is bad or expired."""
        with self.lock:
            entry = self._signed.get(signature)
            if entry is None or entry[0] != photo_id:
                return "Bad signature"
            _, deadline, uses = entry
            if (deadline is not None and time.monotonic() > deadline) or uses == 0:
                self.stats.events["expired"] += 1
                return "URL signature expired"
            if uses is not None:
                entry[2] = uses - 1
        return None

    def fields(self, photo: dict[str, Any], wanted: list[str], base: str) -> dict[str, Any]:
        """The API's view of a photo: ``id`` and the requested fields it has."""
        out: dict[str, Any] = {"id": photo["id"]}
        for name in wanted:
            if name == "geometry":
                out[name] = {"type": "Point", "coordinates": [photo["gps_lon"], photo["gps_lat"]]}
            elif name == "computed_geometry" and photo["computed"]:
                out[name] = {"type": "Point", "coordinates": [photo["lon"], photo["lat"]]}
            elif name in ("compass_angle", "computed_compass_angle", "is_pano", "captured_at"):
                if photo[name] is not None:  # an unprocessed photo has no computed heading
                    out[name] = photo[name]
            elif name in THUMB_SIZES:
                signature = self.sign(photo["id"])
                size = THUMB_SIZES[name]
                out[name] = f"{base}/cdn/{photo['id']}.jpg?size={size}&sig={signature}"
        return out

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
    parser.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="ROUTE=SECONDS",
        help="added delay per route (tiles, images, image, photo, lvlm)",
    )
    parser.add_argument("--thumb-ttl", type=float, help="seconds a signed thumbnail URL works")
    parser.add_argument("--thumb-uses", type=int, help="downloads a signed thumbnail URL allows")
    parser.add_argument("--reject-max-tokens", action="store_true",
                        help="the LVLM accepts only max_completion_tokens")  # fmt: skip
    args = parser.parse_args()
    latency = {}
    for pair in args.latency:
        route, _, seconds = pair.partition("=")
        latency[route] = float(seconds)
    server = LoopbackServer(
        args.port,
        token=args.token,
        latency=latency,
        thumb_ttl_s=args.thumb_ttl,
        thumb_uses=args.thumb_uses,
        reject_max_tokens=args.reject_max_tokens,
    ).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
