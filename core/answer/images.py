"""Source images for the prompt: read from disk, downscaled, re-encoded as JPEG.

Blocking (PIL decoding): callers run :func:`prepare_images` in a thread. Pure functions,
so any number of threads may call them at once.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.errors import UnsupportedImage
from core.types import Hit

log = logging.getLogger(__name__)

JPEG_QUALITY = 85


def to_jpeg(data: bytes, max_px: int) -> bytes:
    """Decode any PIL-readable image, fit its longest side into ``max_px``, encode as JPEG.

    Raises ``OSError``/``ValueError`` (PIL's errors) for bytes that are not an image.
    """
    with Image.open(io.BytesIO(data)) as img:
        # draft() lets the JPEG decoder skip most of the work for big photos; it keeps at
        # least the requested size, so ask for the final size, not a max_px square.
        scale = min(1.0, max_px / max(img.size))
        img.draft("RGB", (max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        img.load()
        rgb = _flatten(img)
    if max(rgb.size) > max_px:
        rgb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    """RGB copy; transparent pixels become white (JPEG has no alpha, black would hide text)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def load_hit_image(hit: Hit, max_px: int) -> bytes | None:
    """The hit's original (or rendered page), else its thumbnail, as a downscaled JPEG."""
    for path in (hit.blob, hit.thumbnail):
        if not path:
            continue
        try:
            return to_jpeg(Path(path).read_bytes(), max_px)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            log.warning("source %s: cannot read image %s (%s)", hit.id, path, exc)
    return None


def prepare_images(hits: Sequence[Hit], max_images: int, max_px: int) -> list[bytes | None]:
    """One entry per hit: JPEG bytes for the first ``max_images`` hits that have an image.

    ``chunk`` hits have no image; the model gets their text only.
    """
    out: list[bytes | None] = []
    sent = 0
    for hit in hits:
        jpeg = None
        if hit.kind != "chunk" and sent < max_images:
            jpeg = load_hit_image(hit, max_px)
            if jpeg is not None:
                sent += 1
        out.append(jpeg)
    return out


async def downscale(data: bytes, max_px: int, name: str) -> bytes:
    """:func:`to_jpeg` in a thread; bytes that are not an image raise UnsupportedImage(name)."""
    try:
        return await asyncio.to_thread(to_jpeg, data, max_px)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnsupportedImage(name, "not a readable image") from exc
