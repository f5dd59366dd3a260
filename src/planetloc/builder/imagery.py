"""Image bytes in and out of the builder: strict decoding of what providers and folders
hold, and deterministic JPEG encoding."""

from __future__ import annotations

import io

import httpx
from PIL import Image, UnidentifiedImageError

from planetloc.builder.fetch import BadResponse


def decode_image(data: bytes) -> Image.Image:
    """Fully decode ``data`` (a truncated or corrupt image raises :class:`BadResponse`)."""
    if not data:
        raise BadResponse("empty image body")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadResponse(f"not a complete image ({err})") from None
    return image


def image_of(response: httpx.Response) -> Image.Image:
    """The decoded image body of a provider's response; HTML/JSON error pages and truncated
    or corrupt images are :class:`BadResponse`."""
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise BadResponse(f"content type {ctype!r} is not an image")
    return decode_image(response.content)


def require_image(response: httpx.Response) -> bytes:
    """The raw bytes of a body that :func:`image_of` accepts."""
    image_of(response)
    return response.content


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    """Baseline RGB JPEG; the same image always gives the same bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def as_jpeg(data: bytes, quality: int = 92) -> bytes:
    """Keep JPEG bytes as they are (no second compression); re-encode anything else."""
    image = decode_image(data)
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        return data
    return encode_jpeg(image, quality)


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most ``max_side`` (never upscales)."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
