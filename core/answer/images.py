"""Source images for the prompt: read from disk, downscaled, re-encoded as JPEG.

Blocking (PIL decoding): callers run :func:`prepare_images` in a thread. Pure functions,
so any number of threads may call them at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import IndexSettings
from core.errors import UnsupportedImage
from core.media import imageio
from core.media.imageio import Limits, load_image
from core.types import Hit

log = logging.getLogger(__name__)

JPEG_QUALITY = 85


# Every image reaching the prompt already passed the operator's [index] limits: an indexed
# original, or a query image that was searched with first. These stop only what could not
# have (a blob replaced on disk since): the defaults, without a byte cap (the bytes are in
# memory already).
LIMITS = Limits(max_bytes=sys.maxsize, max_pixels=IndexSettings().max_pixels,
                max_side=IndexSettings().max_side)


def to_jpeg(data: bytes, max_px: int, name: str = "image") -> bytes:
    """Decode ``data`` as indexing does, fit its longest side into ``max_px``, encode as JPEG.

    Decoding is :func:`core.media.imageio.load_image`'s, so the model sees what search saw: a
    phone photo upright (EXIF orientation), a 16-bit scan scaled rather than all white,
    transparency on white, a 200 MP photo (past Pillow's own bomb guard) downscaled.
    Raises UnsupportedImage (naming ``name``) for bytes that are not a readable image.
    """
    decoded = load_image(data, name, LIMITS, max_side=max_px)
    return imageio.to_jpeg(decoded.image, max_px, JPEG_QUALITY)


def load_hit_image(hit: Hit, max_px: int) -> bytes | None:
    """The hit's original (or rendered page), else its thumbnail, as a downscaled JPEG."""
    for path in (hit.blob, hit.thumbnail):
        if not path:
            continue
        try:
            return to_jpeg(Path(path).read_bytes(), max_px, hit.id)
        except OSError as exc:
            log.warning("source %s: cannot read image %s (%s)", hit.id, path, exc)
        except UnsupportedImage as exc:
            log.warning("source %s: cannot use image %s (%s)", hit.id, path, exc.reason)
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
    return await asyncio.to_thread(to_jpeg, data, max_px, name)
