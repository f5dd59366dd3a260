"""FastAPI application: ``POST /locate``, the gallery's tiles, ``/health`` and a map page.

Tile ids from requests are only ever dictionary keys: no filesystem path is built from them.
Everything the page and the API docs need is served from this process (no CDN), so both work
offline. Model work runs on one worker thread that answers queued queries in batches
(:mod:`planetloc.serve.batching`); the event loop only parses, queues and replies.
"""

from __future__ import annotations

import io
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from planetloc import __version__
from planetloc.data.images import decode_rgb, read_image_bytes
from planetloc.errors import PlanetlocError
from planetloc.index.locate import Locator
from planetloc.index.priors import Prior, select
from planetloc.serve.assets import load_assets
from planetloc.serve.batching import LocateBatcher, Overloaded
from planetloc.serve.middleware import BodyLimit, SecurityHeaders, basemap_source
from planetloc.serve.queries import (
    MAX_JSON_BYTES,
    MAX_UPLOAD_BYTES,
    RequestError,
    describe_errors,
    openapi_body,
    read_query,
    short,
)

THUMB_PX = 256
MAX_TILES_IN = 2000
THUMB_CACHE = 512  # thumbnails kept in memory: a map view shows a few hundred tiles
MAX_CONNECTIONS = 1024  # uvicorn answers 503 beyond this many open connections


class ErrorReply(BaseModel):
    """Every error reply: one line saying what is wrong."""

    detail: str


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": short(detail)}, status_code=status, headers=headers)


def create_app(
    locator: Locator,
    *,
    basemap: str | None = None,
    batching: bool = True,
    max_batch: int = 16,
    batch_window_s: float = 0.002,
    max_pending: int = 256,
    max_uploads: int = 16,
    static: Path | None = None,
) -> FastAPI:
    """The service for one opened index.

    ``basemap``: an XYZ URL template drawn under the gallery's tiles (allowed by the CSP).
    ``batching=False`` answers queries one at a time (the benchmark's baseline).
    ``max_pending``: queries queued or in work beyond which ``/locate`` answers 503.
    ``max_uploads``: image uploads held at once (each up to 20 MiB) beyond which: 503.
    ``static``: the page's files (default: the package's; for tests of missing assets).
    """
    if basemap is not None:
        basemap_source(basemap)  # refuse a bad template before anything starts
    assets = load_assets(static)
    batcher = LocateBatcher(
        locator.locate_many,
        max_batch=max_batch if batching else 1,
        window_s=batch_window_s if batching else 0.0,
        max_pending=max_pending,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        batcher.close()

    app = FastAPI(
        title="planetloc",
        version=__version__,
        description="Find where a person is from what they say they see or photograph.",
        docs_url=None,  # served below from local files: FastAPI's own page loads a CDN
        redoc_url=None,
        lifespan=lifespan,
        responses={422: {"model": ErrorReply, "description": "a bad value, named in one line"}},
    )
    app.state.batcher = batcher
    # Added last = outermost: the headers also cover the body limit's 413s.
    app.add_middleware(
        BodyLimit,
        default_bytes=MAX_JSON_BYTES,
        upload_bytes=MAX_UPLOAD_BYTES,
        max_uploads=max_uploads,
    )
    app.add_middleware(SecurityHeaders, basemap=basemap)

    index = locator.index
    position = {str(i): n for n, i in enumerate(index.ids)}
    gallery_info = {
        "count": int(index.info["count"]),
        "bbox": [
            float(index.lon.min()),
            float(index.lat.min()),
            float(index.lon.max()),
            float(index.lat.max()),
        ],
        "regions": sorted({str(r) for r in index.region}),
        "tile_size_m": index.tile_size_m,
        "basemap": basemap,
    }

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return _error(err.status, err.detail)

    @app.exception_handler(PlanetlocError)
    async def planetloc_error(_: Request, err: PlanetlocError) -> JSONResponse:
        return _error(422, str(err))

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, err: Overloaded) -> JSONResponse:
        return _error(503, f"{err}; retry shortly", {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(422, describe_errors(list(err.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), getattr(err, "headers", None))

    def page(name: str) -> HTMLResponse:
        return HTMLResponse(assets[name].body, headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def home() -> HTMLResponse:
        return page("index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return page("docs.html")

    @app.get("/static/{name:path}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(404, "no such file")
        cache = "max-age=86400" if name.startswith("vendor/") else "no-cache"
        return Response(asset.body, media_type=asset.media_type, headers={"Cache-Control": cache})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, what the model accepts (text, image) and how busy the queue is."""
        return {
            "status": "ok",
            "tiles": int(index.info["count"]),
            "model": index.info["model_fingerprint"],
            "index_kind": index.info["search"]["kind"],
            "accepts": list(locator.accepts),
            "queue": {
                "pending": batcher.pending,
                "limit": batcher.max_pending,
                "batch": batcher.max_batch,
            },
        }

    @app.get("/gallery")
    async def gallery() -> dict[str, Any]:
        """The gallery's extent, regions, tile size and the configured basemap."""
        return gallery_info

    @app.get("/tiles_in")
    def tiles_in(
        west: float,
        south: float,
        east: float,
        north: float,
        limit: int = Query(default=200, ge=1, le=MAX_TILES_IN),
    ) -> dict[str, Any]:
        """Tiles inside a box (``west > east`` crosses the antimeridian), at most ``limit``.

        Over the limit an evenly spread subset is returned and ``total`` says how many matched.
        """
        rows = select(Prior(bbox=(west, south, east, north)), index.lat, index.lon, index.region)
        total = len(rows)
        if total > limit:
            rows = rows[np.linspace(0, total - 1, limit).astype(np.int64)]
        return {
            "total": total,
            "tiles": [
                {"id": str(index.ids[j]), "lat": float(index.lat[j]), "lon": float(index.lon[j])}
                for j in rows.tolist()
            ],
        }

    @lru_cache(maxsize=THUMB_CACHE)
    def thumbnail(row: int) -> bytes:
        path = str(index.paths[row])
        pixels = decode_rgb(read_image_bytes(path), None, source=path)
        img = Image.fromarray(pixels)
        img.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    @app.get("/tiles/{tile_id:path}", responses={200: {"content": {"image/png": {}}}})
    def tile(tile_id: str) -> Response:
        """A gallery tile's thumbnail (PNG) by its sample id."""
        if len(tile_id) > 512 or tile_id not in position:
            raise HTTPException(404, "unknown tile id")
        try:
            body = thumbnail(position[tile_id])
        except PlanetlocError:
            raise HTTPException(500, "that tile's image is unreadable on the server") from None
        return Response(body, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    body_ref = {"requestBody": {"$ref": "#/components/requestBodies/Locate"}}

    @app.post(
        "/locate",
        openapi_extra=body_ref,
        responses={
            code: {"model": ErrorReply, "description": what}
            for code, what in (
                (413, "the body or the image is too large"),
                (415, "neither JSON nor a form, or an upload that is not an image"),
                (503, "too many queries waiting; retry after Retry-After seconds"),
            )
        },
    )
    async def locate(request: Request) -> dict[str, Any]:
        """Rank the gallery's tiles for a description and/or street-level image.

        JSON: ``{"text", "k", "near": {"lat", "lon"}, "radius_km", "nearest", "regions",
        "bbox"}``. Multipart form: ``text``, ``image`` (file), ``heading`` (degrees), ``k``,
        ``near`` ("lat,lon"), ``radius_km``, ``nearest``, ``regions`` (repeated), ``bbox``
        ("west,south,east,north"). Bad values: 422; too large: 413; not an image: 415;
        queue full: 503.
        """
        query = await read_query(request, max_chars=locator.max_chars)
        result = await batcher.locate(query)
        out = result.to_dict()
        for hit in out["tiles"]:
            hit["tile_url"] = "/tiles/" + quote(hit["id"], safe="")
        return out

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            body, models = openapi_body()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(models)
            components["requestBodies"] = {"Locate": body}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(
    folder: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str | None = None,
    basemap: str | None = None,
) -> None:
    """Open the index and serve it until interrupted."""
    import uvicorn

    # A bad basemap template or missing page files are refused before the model loads.
    if basemap is not None:
        basemap_source(basemap)
    load_assets()
    app = create_app(Locator.open(folder, checkpoint=checkpoint), basemap=basemap)
    uvicorn.run(app, host=host, port=port, log_level="info", limit_concurrency=MAX_CONNECTIONS)
