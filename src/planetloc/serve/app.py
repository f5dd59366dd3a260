"""FastAPI application: ``POST /locate``, ``GET /tiles/{id}``, ``GET /health`` and a map page.

Tile ids from requests are only ever dictionary keys: no filesystem path is built from them.
Everything the page needs is served from this process (no CDN), so it works offline.
"""

from __future__ import annotations

import io
import threading
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import BaseModel, Field, field_validator, model_validator

from planetloc import __version__
from planetloc.errors import PlanetlocError
from planetloc.index.locate import DEFAULT_MAX_CHARS, MAX_K, Locator
from planetloc.index.priors import Prior

THUMB_PX = 256
STATIC = ("app.js", "app.css")


class Point(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class LocateRequest(BaseModel):
    text: str = Field(
        min_length=1, max_length=DEFAULT_MAX_CHARS, description="the ground-level description"
    )
    k: int = Field(default=5, ge=1, le=MAX_K, description="how many tiles to return")
    near: Point | None = Field(default=None, description="prior: a point the answer is near")
    radius_km: float | None = Field(
        default=None, gt=0, description="prior: within this distance of `near`"
    )
    nearest: int | None = Field(
        default=None, ge=1, description="prior: only the m tiles nearest `near`"
    )
    regions: list[str] = Field(default_factory=list, description="prior: only these regions")
    bbox: list[float] | None = Field(default=None, description="prior: west, south, east, north")

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value

    @field_validator("bbox")
    @classmethod
    def four_numbers(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 4:
            raise ValueError("bbox needs 4 numbers: west, south, east, north")
        return value

    @model_validator(mode="after")
    def prior_needs_point(self) -> LocateRequest:
        if (self.radius_km is not None or self.nearest is not None) and self.near is None:
            raise ValueError("radius_km and nearest need `near`")
        return self

    def prior(self) -> Prior | None:
        if self.near is None and not self.regions and self.bbox is None:
            return None
        return Prior(
            bbox=tuple(self.bbox) if self.bbox else None,
            near=(self.near.lat, self.near.lon) if self.near else None,
            radius_km=self.radius_km,
            nearest=self.nearest,
            regions=tuple(self.regions),
        )


def create_app(locator: Locator, *, tile_size_m: float = 192.0) -> FastAPI:
    """The service for one opened index."""
    app = FastAPI(
        title="planetloc",
        version=__version__,
        description="Find where a person is from what they say they see.",
    )
    lock = threading.Lock()  # one model forward at a time; requests queue in the thread pool
    index = locator.index
    position = {str(i): n for n, i in enumerate(index.ids)}
    page = resources.files("planetloc.serve").joinpath("static/index.html").read_text("utf-8")
    assets = {
        name: resources.files("planetloc.serve").joinpath(f"static/{name}").read_bytes()
        for name in STATIC
    }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> str:
        return page

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "no such file")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(assets[name], media_type=kind)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "tiles": int(index.info["count"]),
            "model": index.info["model_fingerprint"],
            "index_kind": index.info["params"]["kind"],
        }

    @app.get("/gallery")
    def gallery() -> dict[str, Any]:
        return {
            "count": int(index.info["count"]),
            "bbox": [
                float(index.lon.min()),
                float(index.lat.min()),
                float(index.lon.max()),
                float(index.lat.max()),
            ],
            "regions": sorted({str(r) for r in index.region}),
            "tile_size_m": tile_size_m,
        }

    @app.get("/tiles_in")
    def tiles_in(
        west: float = Query(ge=-180, le=180),
        south: float = Query(ge=-90, le=90),
        east: float = Query(ge=-180, le=180),
        north: float = Query(ge=-90, le=90),
        limit: int = Query(default=200, ge=1, le=2000),
    ) -> list[dict[str, Any]]:
        mask = (
            (index.lat >= south) & (index.lat <= north) & (index.lon >= west) & (index.lon <= east)
        )
        hits = np.flatnonzero(mask)
        if len(hits) > limit:
            hits = hits[np.linspace(0, len(hits) - 1, limit).astype(int)]
        return [
            {"id": str(index.ids[j]), "lat": float(index.lat[j]), "lon": float(index.lon[j])}
            for j in hits
        ]

    @app.get("/tiles/{tile_id:path}", responses={200: {"content": {"image/png": {}}}})
    def tile(tile_id: str) -> Response:
        if len(tile_id) > 512 or tile_id not in position:
            raise HTTPException(404, "unknown tile id")
        path = str(index.paths[position[tile_id]])
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                img.thumbnail((THUMB_PX, THUMB_PX))
                buf = io.BytesIO()
                img.save(buf, format="PNG")
        except OSError:
            raise HTTPException(500, f"tile {tile_id!r} is unreadable on the server") from None
        return Response(
            buf.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=3600"}
        )

    @app.post("/locate")
    def locate(request: LocateRequest) -> dict[str, Any]:
        try:
            prior = request.prior()
            with lock:
                result = locator.locate(request.text, k=request.k, prior=prior)
        except PlanetlocError as err:
            raise HTTPException(422, str(err)) from None
        out = result.to_dict()
        for hit in out["tiles"]:
            hit["tile_url"] = f"/tiles/{hit['id']}"
        return out

    return app


def serve(
    folder: str, *, host: str = "127.0.0.1", port: int = 8000, checkpoint: str | None = None
) -> None:
    import uvicorn

    app = create_app(Locator.open(folder, checkpoint=checkpoint))
    uvicorn.run(app, host=host, port=port, log_level="info")
