"""Pictures of results: a query's text beside its top-ranked tiles."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from planetloc.atomic import write_bytes
from planetloc.data.images import load_tile

THUMB = 128
TEXT_W = 360


def retrieval_examples_png(
    examples: Sequence[tuple[str, Sequence[tuple[str, bool, float]]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> None:
    """One row per query: its wrapped text, then its top tiles (green frame = the true tile).

    ``examples`` holds ``(query_text, [(tile_path, is_true, score), ...])``.
    """
    font = ImageFont.load_default()
    k = max(len(tiles) for _, tiles in examples)
    row_h = THUMB + 28
    top = 24 if title else 4
    sheet = Image.new("RGB", (TEXT_W + k * (THUMB + 8) + 8, top + row_h * len(examples)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((8, 6), title, fill="black", font=font)
    for row, (text, tiles) in enumerate(examples):
        y = top + row * row_h
        wrapped = textwrap.wrap(text, width=58)[:11]
        draw.multiline_text((8, y), "\n".join(wrapped), fill="black", font=font, spacing=2)
        for col, (tile_path, is_true, score) in enumerate(tiles):
            x = TEXT_W + col * (THUMB + 8)
            thumb = Image.fromarray(load_tile(tile_path)).resize((THUMB, THUMB))
            sheet.paste(thumb, (x, y))
            colour = (20, 160, 40) if is_true else (200, 200, 200)
            draw.rectangle([x - 2, y - 2, x + THUMB + 1, y + THUMB + 1], outline=colour, width=3)
            draw.text(
                (x, y + THUMB + 4),
                f"#{col + 1}  {score:.3f}" if isinstance(score, float) else f"#{col + 1}",
                fill="black",
                font=font,
            )
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def _canvas(
    width: int, height: int, title: str
) -> tuple[Image.Image, ImageDraw.ImageDraw, ImageFont.ImageFont]:
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((10, 6), title, fill="black", font=font)
    return img, draw, font


def _save(img: Image.Image, path: str | os.PathLike[str]) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


PALETTE = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
]


def recall_curve_png(
    curves: dict[str, Sequence[float]], path: str | os.PathLike[str], *, title: str
) -> None:
    """Recall@K (percent) against K = 1..len(curve), one line per method."""
    w, h, left, bottom, top, right = 640, 420, 60, 50, 40, 150
    img, draw, font = _canvas(w, h, title)
    x0, y0, x1, y1 = left, h - bottom, w - right, top
    draw.rectangle([x0, y1, x1, y0], outline="black")
    k_max = max(len(c) for c in curves.values())
    for pct in range(0, 101, 20):
        y = y0 - (y0 - y1) * pct / 100
        draw.line([x0, y, x1, y], fill=(225, 225, 225))
        draw.text((x0 - 30, y - 6), f"{pct}", fill="black", font=font)
    for k in (1, 5, 10, 20, 50, 100):
        if k <= k_max:
            x = x0 + (x1 - x0) * (k - 1) / max(1, k_max - 1)
            draw.text((x - 6, y0 + 6), f"{k}", fill="black", font=font)
    draw.text(((x0 + x1) // 2 - 10, y0 + 24), "K", fill="black", font=font)
    draw.text((6, y1 - 16), "R@K %", fill="black", font=font)
    for i, (name, curve) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = [
            (x0 + (x1 - x0) * j / max(1, k_max - 1), y0 - (y0 - y1) * float(v) / 100)
            for j, v in enumerate(curve)
        ]
        draw.line(pts, fill=colour, width=2)
        draw.rectangle([x1 + 12, y1 + 18 * i + 4, x1 + 24, y1 + 18 * i + 14], fill=colour)
        draw.text((x1 + 30, y1 + 18 * i + 3), name, fill="black", font=font)
    _save(img, path)


def error_map_png(
    points: Sequence[tuple[float, float, int]], path: str | os.PathLike[str], *, title: str
) -> None:
    """Equirectangular world map of queries coloured by the rank of their true tile."""
    w, h = 720, 400
    img, draw, font = _canvas(w, h, title)
    x0, y0, x1, y1 = 20, 30, w - 20, h - 40

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return x0 + (lon + 180) / 360 * (x1 - x0), y0 + (90 - lat) / 180 * (y1 - y0)

    draw.rectangle([x0, y0, x1, y1], outline="black", fill=(240, 246, 252))
    for lon in range(-150, 181, 30):
        draw.line([xy(90, lon), xy(-90, lon)], fill=(215, 222, 230))
    for lat in range(-60, 61, 30):
        draw.line([xy(lat, -180), xy(lat, 180)], fill=(215, 222, 230))
    buckets = [
        (1, (20, 160, 40), "top-1"),
        (10, (240, 170, 0), "top-10"),
        (10**9, (210, 40, 40), "beyond"),
    ]
    for lat, lon, rank in points:
        colour = next(c for limit, c, _ in buckets if rank < limit)
        x, y = xy(lat, lon)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    for i, (_, colour, name) in enumerate(buckets):
        draw.ellipse([x0 + 10 + 90 * i, y1 + 14, x0 + 18 + 90 * i, y1 + 22], fill=colour)
        draw.text((x0 + 24 + 90 * i, y1 + 12), name, fill="black", font=font)
    _save(img, path)
