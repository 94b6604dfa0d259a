"""PDF pages as images plus their text layer (pypdfium2).

PDFium is not thread-safe: it keeps global state (font caches, the last-error code) and
pypdfium2 documents that concurrent calls from several threads may crash the process, even on
different documents. Every pdfium call here, including closing objects, runs under
``_PDFIUM_LOCK``; objects are closed explicitly inside the lock so no finalizer runs pdfium
code later from the garbage collector in another thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from core.errors import UnsupportedInput

log = logging.getLogger(__name__)

_PDFIUM_LOCK = threading.Lock()

# PDF user space is 1/72 inch.
_POINTS_PER_INCH = 72.0


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based
    image: Image.Image  # RGB render, longest side <= max_side
    text: str  # text layer; "" for scanned pages


def _open(data: bytes, name: str) -> pdfium.PdfDocument:
    """Open under the lock (caller holds it); pdfium errors become ``UnsupportedInput``."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            reason = "PDF is encrypted (password protected)"
        elif code == pdfium_c.FPDF_ERR_SECURITY:
            reason = "PDF uses an unsupported encryption scheme"
        elif code in (pdfium_c.FPDF_ERR_FORMAT, pdfium_c.FPDF_ERR_FILE):
            reason = "not a valid PDF (corrupt or truncated)"
        elif code in (pdfium_c.FPDF_ERR_PAGE, pdfium_c.FPDF_ERR_SUCCESS):
            # PDFium fails a document without pages while reporting "success".
            reason = "PDF has no readable pages"
        else:
            reason = f"cannot open PDF ({exc})"
        raise UnsupportedInput(name, reason) from exc


def page_count(data: bytes, name: str) -> int:
    """Number of pages; ``UnsupportedInput`` for encrypted or corrupt PDFs."""
    if not data:
        raise UnsupportedInput(name, "empty file")
    with _PDFIUM_LOCK:
        doc = _open(data, name)
        try:
            return len(doc)
        finally:
            doc.close()


@dataclass(frozen=True)
class BadPage:
    number: int  # 1-based
    reason: str


def render_pages(
    data: bytes,
    name: str,
    numbers: Sequence[int],
    *,
    dpi: int = 144,
    max_side: int = 2048,
    bad: list[BadPage] | None = None,
) -> list[PdfPage]:
    """Render the 1-based page ``numbers`` at ``dpi`` (capped at ``max_side``) with their text.

    Callers pass small batches of numbers so memory stays bounded on very long PDFs. A page
    that cannot be read raises ``UnsupportedInput``; with ``bad`` it is recorded there and
    left out instead, so one broken page (a page tree that counts more pages than it has, a
    damaged page object) does not cost the readable ones.
    """
    if not numbers:
        return []
    out: list[PdfPage] = []
    with _PDFIUM_LOCK:
        doc = _open(data, name)
        try:
            total = len(doc)
            for number in numbers:
                if not 1 <= number <= total:
                    raise ValueError(f"{name}: page {number} out of range 1..{total}")
                try:
                    out.append(_render_one(doc, number, name, dpi, max_side))
                except UnsupportedInput as exc:
                    if bad is None:
                        raise
                    bad.append(BadPage(number, exc.reason))
        finally:
            doc.close()
    return out


def _render_one(
    doc: pdfium.PdfDocument, number: int, name: str, dpi: int, max_side: int
) -> PdfPage:
    try:
        page = doc[number - 1]
    except pdfium.PdfiumError as exc:
        # The page tree names a page that is not there or not a page object.
        raise UnsupportedInput(name, f"page {number} cannot be read ({exc})") from exc
    try:
        width, height = page.get_size()  # points, page rotation already applied
        scale = dpi / _POINTS_PER_INCH
        longest = max(width, height) * scale
        if longest > max_side:
            # Render straight at the capped size: a poster-sized page at full dpi would
            # allocate hundreds of MB just to be thrown away.
            scale *= max_side / longest
        try:
            bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
            try:
                # to_pil() may share the bitmap's buffer; convert() always returns a new
                # image that owns its pixels, so closing the bitmap below is safe.
                image = bitmap.to_pil().convert("RGB")
            finally:
                bitmap.close()
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_bounded()
            finally:
                textpage.close()
        except pdfium.PdfiumError as exc:
            raise UnsupportedInput(name, f"page {number} cannot be rendered ({exc})") from exc
    finally:
        page.close()
    if max(image.size) > max_side:  # rounding up in pdfium can overshoot by a pixel
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
    log.debug("%s: page %d rendered %dx%d, %d chars of text", name, number, *image.size, len(text))
    return PdfPage(number=number, image=image, text=text)
