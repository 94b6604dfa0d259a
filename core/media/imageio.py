"""Decide what a file is (by content) and decode images safely into RGB.

Images are opened through the format plugins directly rather than ``Image.open``: Pillow's
own decompression-bomb guard would refuse (or warn about) a legitimate 200 MP phone photo,
and we enforce our own, configurable limits on the header dimensions before any pixel is
decoded. Nothing here mutates Pillow's global ``MAX_IMAGE_PIXELS``. (Some plugins still run
Pillow's check themselves: a TIFF or GIF between Pillow's 89 MP warning level and our limit
may emit a ``DecompressionBombWarning``; beyond 2x that, WebP/TIFF/GIF are refused.)

All functions are pure and thread-safe: callers run them in executors.
"""

from __future__ import annotations

import codecs
import io
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    IcoImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from core.errors import UnsupportedImage, UnsupportedInput

if TYPE_CHECKING:
    from core.config import IndexSettings

log = logging.getLogger(__name__)

FileType = Literal["image", "pdf", "text"]

IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
     ".avif", ".heic", ".heif", ".svg", ".ico"}
)
TEXT_EXTS = frozenset(
    {".txt", ".text", ".md", ".markdown", ".mdown", ".rst", ".csv", ".tsv", ".log"}
)

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Limits:
    """What one input may cost before we refuse it."""

    max_bytes: int
    max_pixels: int
    max_side: int

    @classmethod
    def from_settings(cls, s: IndexSettings) -> Limits:
        return cls(max_bytes=s.max_bytes, max_pixels=s.max_pixels, max_side=s.max_side)


@dataclass(frozen=True)
class Decoded:
    """An RGB image ready for models; ``width``/``height`` are the full-resolution size as
    displayed (EXIF orientation applied), before any downscale."""

    image: Image.Image
    width: int
    height: int
    format: str


# Raster formats we decode, keyed by the name ``_image_format`` returns.
_OPENERS: dict[str, Callable[[io.BytesIO], ImageFile.ImageFile]] = {
    "JPEG": lambda fp: JpegImagePlugin.JpegImageFile(fp),
    "PNG": lambda fp: PngImagePlugin.PngImageFile(fp),
    "GIF": lambda fp: GifImagePlugin.GifImageFile(fp),
    "BMP": lambda fp: BmpImagePlugin.BmpImageFile(fp),
    "TIFF": lambda fp: TiffImagePlugin.TiffImageFile(fp),
    "WEBP": lambda fp: WebPImagePlugin.WebPImageFile(fp),
    # Icons (favicons, app icons) hold several sizes; Pillow opens the largest.
    "ICO": lambda fp: IcoImagePlugin.IcoImageFile(fp),
}
try:  # AVIF support arrived in Pillow 11.2; older Pillows just report it unsupported.
    from PIL import AvifImagePlugin

    if AvifImagePlugin.SUPPORTED:
        _OPENERS["AVIF"] = lambda fp: AvifImagePlugin.AvifImageFile(fp)
except ImportError:  # pragma: no cover - depends on the Pillow build
    pass


def _ext(name: str) -> str:
    return PurePath(name).suffix.lower()


def _image_format(data: bytes) -> str | None:
    """The raster format named by the magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    # Four bytes are a weak signature: also ask for at least one icon and its 16-byte entry.
    if data[:4] == b"\x00\x00\x01\x00" and data[4:6] != b"\x00\x00" and len(data) >= 22:
        return "ICO"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
    return None


def _not_image_reason(data: bytes) -> str | None:
    """Why bytes that are not a decodable raster image are not one (None if they may be)."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG vector images are not supported (export it as PNG or JPEG)"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "not an image: looks like HTML"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "not an image: looks like a ZIP archive"
    if data[:2] == b"\x1f\x8b":
        return "not an image: looks like a gzip archive"
    if data[:6] == b"7z\xbc\xaf\x27\x1c" or data[:4] == b"Rar!":
        return "not an image: looks like an archive"
    if data[:5] == b"%PDF-":
        return "not an image: it is a PDF"
    return None


def _heic_reason() -> str:
    return "HEIC/HEIF images are not supported (convert it to JPEG or PNG)"


def _as_text(data: bytes) -> str | None:
    """The text if ``data`` looks like a text document, else None: UTF-8, UTF-16 (with a
    byte-order mark or recognised by its zero bytes), or an 8-bit Windows/Latin-1 file."""
    text = _decode_text_bytes(data)
    if text is None or "\x00" in text:
        return None
    # A few stray control characters are fine (form feeds, ANSI colour in logs); many are binary.
    controls = sum(1 for c in text[:65536] if ord(c) < 32 and c not in "\t\n\r\f\x1b\x0b")
    if controls > max(2, len(text[:65536]) // 100):
        return None
    return text


def _decode_text_bytes(data: bytes) -> str | None:
    try:
        for bom, encoding in _BOMS:
            if data.startswith(bom):
                return data.decode(encoding)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if data.startswith(tuple(bom for bom, _ in _BOMS)):
        return None  # marked as Unicode yet not decodable: corrupt, not 8-bit text
    unmarked = _utf16_order(data)
    if unmarked:
        try:
            return data.decode(unmarked)
        except UnicodeDecodeError:
            return None
    # Notes saved by older Windows editors are Windows-1252 (Latin-1 plus quotes and dashes);
    # its five unassigned bytes fall back to Latin-1. Binary data is caught afterwards by
    # its NUL and control bytes.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _utf16_order(data: bytes) -> str | None:
    """UTF-16 saved without a byte-order mark (some Windows tools): Latin text then has a
    zero byte in every other position, on one side only."""
    head = data[:4096]
    if len(head) < 4 or len(head) % 2:
        return None
    pairs = len(head) // 2
    zero_even, zero_odd = head[0::2].count(0), head[1::2].count(0)
    if zero_odd >= pairs * 0.3 and zero_even <= pairs * 0.02:
        return "utf-16-le"
    if zero_even >= pairs * 0.3 and zero_odd <= pairs * 0.02:
        return "utf-16-be"
    return None


def sniff(data: bytes, name: str) -> FileType:
    """Classify ``data`` by its content as image, PDF or text; ``UnsupportedInput`` otherwise.

    The extension may accept text (``notes.txt``), never binary: a web page saved as ``.jpg``
    is refused with a reason saying so.
    """
    if not data:
        raise UnsupportedInput(name, "empty file")
    fmt = _image_format(data)
    if fmt == "HEIC":
        raise UnsupportedImage(name, _heic_reason())
    if fmt is not None:
        if fmt not in _OPENERS:
            raise UnsupportedImage(name, f"{fmt} images are not supported by this installation")
        return "image"
    # PDF readers accept a header within the first KiB (some generators prepend junk).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    ext = _ext(name)
    if ext in TEXT_EXTS:
        # Markdown may well contain HTML or XML: for text names content only has to be text.
        if _as_text(data) is not None:
            return "text"
        raise UnsupportedInput(name, "unsupported file type: not text")
    reason = _not_image_reason(data)
    if reason is not None:
        if ext in IMAGE_EXTS or ext == "" or reason.startswith("SVG"):
            raise UnsupportedImage(name, reason)
        raise UnsupportedInput(name, "unsupported file type (" + reason.split(": ", 1)[-1] + ")")
    if ext in IMAGE_EXTS:
        if _as_text(data) is not None:
            raise UnsupportedImage(name, "not an image: looks like text")
        raise UnsupportedImage(name, "not an image: unknown or corrupt image data")
    if ext == "" and _as_text(data) is not None:
        return "text"  # chat snippets often have no extension
    raise UnsupportedInput(name, "unsupported file type")


def decode_text(data: bytes, name: str) -> str:
    """Decode a text document (see :func:`_as_text` for the encodings) with newlines
    normalised."""
    text = _as_text(data)
    if text is None:
        raise UnsupportedInput(name, "not a text file (binary data)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _open(data: bytes, name: str) -> ImageFile.ImageFile:
    fmt = _image_format(data)
    if fmt == "HEIC":
        raise UnsupportedImage(name, _heic_reason())
    opener = _OPENERS.get(fmt or "")
    if opener is None:
        reason = _not_image_reason(data)
        if reason is None:
            reason = "not an image: looks like text" if _as_text(data) else (
                "unsupported image format" if fmt else "not an image: unknown or corrupt data")
        raise UnsupportedImage(name, reason)
    try:
        return opener(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise UnsupportedImage(name, "image is too large (decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            struct.error) as exc:
        raise UnsupportedImage(name, f"truncated or corrupt image ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# EXIF orientation -> the transpose that displays it upright (as ImageOps.exif_transpose).
# Done by hand because TIFF keeps orientation in its own tags, not in info["exif"].
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF must not make an otherwise good image unreadable
        return 1
    return value if isinstance(value, int) else 1


def _check_size(w: int, h: int, name: str, limits: Limits) -> None:
    if w * h > limits.max_pixels:
        raise UnsupportedImage(
            name, f"image is {w}x{h} pixels, limit is {_fmt_int(limits.max_pixels)}")
    if max(w, h) > limits.max_side:
        raise UnsupportedImage(
            name, f"image is {w}x{h} pixels, the longest side limit is {_fmt_int(limits.max_side)}")


def _ico_sizes(data: bytes) -> list[tuple[int, int]]:
    """The real sizes of an icon's images: a PNG entry's from its IHDR, a bitmap entry's from
    its DIB header (whose height counts the mask too); broken entries are left to Pillow."""
    sizes = []
    count = struct.unpack_from("<H", data, 4)[0]
    for i in range(count):
        entry = 6 + 16 * i
        if entry + 16 > len(data):
            break
        offset = struct.unpack_from("<I", data, entry + 12)[0]
        head = data[offset : offset + 24]
        if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 24:
            sizes.append(struct.unpack(">II", head[16:24]))
        elif len(head) >= 12:
            w, h = struct.unpack("<ii", head[4:12])
            sizes.append((abs(w), abs(h) // 2))
    return sizes


def load_image(
    data: bytes, name: str, limits: Limits, *, max_side: int | None = 4096
) -> Decoded:
    """Decode ``data`` to RGB (orientation applied, first frame), longest side <= ``max_side``.

    Size limits are checked on the byte count and on the header's dimensions *before*
    decoding; JPEGs are decoded at a reduced DCT scale when a downscale is wanted.
    """
    if len(data) > limits.max_bytes:
        raise UnsupportedImage(
            name, f"file is {len(data) / 1e6:.1f} MB, limit is {limits.max_bytes / 1e6:.1f} MB")
    if not data:
        raise UnsupportedImage(name, "empty file")
    if _image_format(data) == "ICO":
        # Pillow decodes an icon as it opens it, at the size its images really have, which
        # the icon's own directory need not tell: check those before anything is decoded.
        for w, h in _ico_sizes(data):
            _check_size(w, h, name, limits)
    im = _open(data, name)
    try:
        return _decode(im, data, name, limits, max_side)
    finally:
        im.close()


def _decode(
    im: ImageFile.ImageFile, data: bytes, name: str, limits: Limits, max_side: int | None
) -> Decoded:
    fmt = im.format or _image_format(data) or "?"
    w, h = im.size
    _check_size(w, h, name, limits)
    try:
        if max_side is not None and fmt == "JPEG" and max(w, h) > max_side:
            # Ask libjpeg for a 1/2, 1/4 or 1/8 scale no smaller than the target: a 200 MP
            # photo then decodes into a few MP instead of 600 MB of RGB.
            ratio = max_side / max(w, h)
            im.draft("RGB", (max(1, math.ceil(w * ratio)), max(1, math.ceil(h * ratio))))
            log.debug("%s: JPEG %dx%d decoded at %dx%d (draft)", name, w, h, *im.size)
        im.load()
        # Read after load(): PNG may keep EXIF after the pixels, and a getexif() that loads
        # a broken file would swallow the error we want to report.
        orientation = _orientation(im)
        rgb = to_rgb(im)
        if orientation in _TRANSPOSE:
            rgb = rgb.transpose(_TRANSPOSE[orientation])
        if max_side is not None and max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as exc:
        raise UnsupportedImage(name, "image is too large (decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
            struct.error, ZeroDivisionError) as exc:
        raise UnsupportedImage(name, f"truncated or corrupt image ({_short(exc)})") from exc
    out_w, out_h = (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)
    return Decoded(image=rgb, width=out_w, height=out_h, format=fmt)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency is composited on white (how viewers show it)."""
    mode = im.mode
    if mode == "RGB":
        # ``exif`` stays in info so exif_transpose can use it; the copy detaches from the file.
        out = im.copy()
        out.info = dict(im.info)
        return out
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _scale_wide(im)
    if mode == "CMYK":
        # The JPEG plugin already undoes Adobe's inverted CMYK ("CMYK;I"), so this is plain.
        out = im.convert("RGB")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
    else:  # P, L, 1, YCbCr, LAB, HSV, RGBX ...
        out = im.convert("RGB")
    out.info = {k: v for k, v in im.info.items() if k == "exif"}
    return out


def _scale_wide(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit RGB, scaled (not clipped to white)."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        arr8 = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        a = arr.astype(np.float64)
        finite = np.isfinite(a)
        a = np.where(finite, a, 0.0)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = a * 255.0
        elif im.mode == "I" and lo >= 0 and hi <= 255:
            scaled = a
        elif im.mode == "I" and lo >= 0 and hi <= 65535:
            scaled = a / 257.0  # a 16-bit image that Pillow widened to 32-bit
        elif hi > lo:
            scaled = (a - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(a)
        arr8 = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    out = Image.fromarray(arr8).convert("RGB")
    out.info = {k: v for k, v in im.info.items() if k == "exif"}
    return out


def to_jpeg(image: Image.Image, max_side: int, quality: int = 85) -> bytes:
    """A downscaled JPEG copy (thumbnails, images sent to answer models)."""
    img = image if image.mode == "RGB" else to_rgb(image)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
