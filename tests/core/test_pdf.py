"""PDF pages: count, render, text layer, bad files, concurrent callers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from core.errors import UnsupportedInput
from core.media.pdf import BadPage, page_count, render_pages
from tests import corpus

ROOT = Path(__file__).resolve().parents[2]
TWO_PAGES = corpus.pdf_bytes(
    ["Invoice INV-20931\nTotal 420 EUR", "Page two: payment due (March 7)"])


def test_page_count() -> None:
    assert page_count(TWO_PAGES, "report.pdf") == 2
    assert page_count(corpus.scanned_pdf_bytes(3), "scan.pdf") == 3


def test_render_pages_with_text_layer() -> None:
    pages = render_pages(TWO_PAGES, "report.pdf", [1, 2], dpi=72, max_side=4096)
    assert [p.number for p in pages] == [1, 2]
    assert pages[0].image.mode == "RGB"
    assert pages[0].image.size == (612, 792)  # US letter at 72 dpi
    assert pages[0].text == "Invoice INV-20931\nTotal 420 EUR"
    assert pages[1].text == "Page two: payment due (March 7)"
    # The text is drawn in black on white: the render is not blank.
    arr = np.asarray(pages[0].image.convert("L"))
    assert arr.min() < 80 and np.median(arr) == 255


def test_dpi_and_max_side() -> None:
    (page,) = render_pages(TWO_PAGES, "report.pdf", [2])
    assert page.image.size == (1224, 1584)  # default 144 dpi
    (capped,) = render_pages(TWO_PAGES, "report.pdf", [2], dpi=300, max_side=1000)
    assert max(capped.image.size) == 1000
    poster = corpus.pdf_bytes(["poster"], size=(14_400, 7_200))  # 200 x 100 inches
    (big,) = render_pages(poster, "poster.pdf", [1], max_side=2048)
    assert big.image.size == (2048, 1024)


def test_scanned_page_has_no_text() -> None:
    data = corpus.scanned_pdf_bytes(2)
    pages = render_pages(data, "scan.pdf", [2, 1])
    assert [p.number for p in pages] == [2, 1]
    assert all(p.text == "" for p in pages)
    assert np.asarray(pages[0].image.convert("L")).min() < 80  # the scanned text is there


def test_page_out_of_range_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="page 3 out of range 1..2"):
        render_pages(TWO_PAGES, "report.pdf", [3])
    assert render_pages(TWO_PAGES, "report.pdf", []) == []


def _no_pages() -> bytes:
    doc = pdfium.PdfDocument.new()
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (corpus.pdf_bytes(["secret"], encrypted=True), "PDF is encrypted (password protected)"),
        (TWO_PAGES[:60], "not a valid PDF (corrupt or truncated)"),
        (b"%PDF-1.7\n" + corpus.random_bytes(2000), "not a valid PDF (corrupt or truncated)"),
        (b"", "empty file"),
    ],
)
def test_bad_pdfs(data: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedInput) as info:
        page_count(data, "bad.pdf")
    assert info.value.reason == reason and info.value.name == "bad.pdf"
    if data:
        with pytest.raises(UnsupportedInput, match="bad.pdf"):
            render_pages(data, "bad.pdf", [1])


def test_a_pdf_without_pages_says_so(tmp_path: Path) -> None:
    # PDFium reports no error code of its own for this case, and its last code is left over
    # from any earlier failure in the process: checked in a fresh one, as a CLI run is.
    (tmp_path / "none.pdf").write_bytes(_no_pages())
    code = ("from pathlib import Path; from core.errors import UnsupportedInput\n"
            "from core.media.pdf import page_count\n"
            "try:\n    page_count(Path('none.pdf').read_bytes(), 'none.pdf')\n"
            "except UnsupportedInput as exc:\n    print(exc.reason)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "PDF has no readable pages", out.stderr


def test_a_broken_page_is_a_clear_error_or_left_out() -> None:
    data = corpus.broken_page_pdf_bytes(["Page one", "Page two", "Page three"], broken=2)
    assert page_count(data, "tree.pdf") == 3
    with pytest.raises(UnsupportedInput) as info:
        render_pages(data, "tree.pdf", [1, 2, 3])
    assert info.value.reason.startswith("page 2 cannot be read")
    # Asked to, the readable pages come back and the broken one is named.
    bad: list[BadPage] = []
    pages = render_pages(data, "tree.pdf", [1, 2, 3], bad=bad)
    assert [(p.number, p.text) for p in pages] == [(1, "Page one"), (3, "Page three")]
    assert [b.number for b in bad] == [2] and bad[0].reason.startswith("page 2 cannot be read")


def test_concurrent_renders_from_threads() -> None:
    """pdfium is not thread-safe: the module lock must make parallel callers safe."""
    docs = [corpus.pdf_bytes([f"Document {i} page {j}" for j in range(3)]) for i in range(4)]
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                pages = render_pages(docs[i], f"d{i}.pdf", [1, 2, 3], dpi=36)
                assert page_count(docs[i], f"d{i}.pdf") == 3
            results[i] = [p.text for p in pages]
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert not errors, errors
    assert results == {i: [f"Document {i} page {j}" for j in range(3)] for i in range(4)}
