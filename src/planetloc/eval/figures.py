"""Pictures of results: a query's text beside its top-ranked tiles."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from planetloc.atomic import write_bytes

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
            with Image.open(tile_path) as img:
                thumb = img.convert("RGB").resize((THUMB, THUMB))
            sheet.paste(thumb, (x, y))
            colour = (20, 160, 40) if is_true else (200, 200, 200)
            draw.rectangle([x - 2, y - 2, x + THUMB + 1, y + THUMB + 1], outline=colour, width=3)
            draw.text((x, y + THUMB + 4), f"#{col + 1}  {score:.3f}", fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
