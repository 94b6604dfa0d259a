"""RapidReader on rendered text: real OCR models (bundled in the rapidocr wheel), no network."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from core.media.ocr import RapidReader
from core.protocols import TextReader

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MONO = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _render(lines: list[tuple[tuple[int, int], str]], size=(800, 240), *, bg="white", fg="black",
            font: Path = FONT, px: int = 28) -> Image.Image:
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    for xy, text in lines:
        draw.text(xy, text, font=_font(font, px), fill=fg)
    return image


@pytest.fixture(scope="module")
def reader() -> RapidReader:
    return RapidReader()


def test_is_a_text_reader_and_lazy() -> None:
    reader = RapidReader()
    assert isinstance(reader, TextReader)
    assert reader._engine is None  # nothing loaded until the first image with content


def test_reads_rendered_text_in_reading_order(reader: RapidReader) -> None:
    # Second line is drawn right part first: output must still go left to right.
    image = _render([((20, 20), "Invoice INV-20931 due March 7"),
                     ((480, 120), "Paid"), ((20, 120), "Status column")])
    text = reader.read(image)
    assert text.splitlines() == ["Invoice INV-20931 due March 7", "Status column Paid"]


def test_reads_terminal_screenshot(reader: RapidReader) -> None:
    lines = ["$ curl http://localhost:8080/api",
             "curl: (7) Failed: ERR_CONNECTION_REFUSED",
             "$ echo 0x80070005"]
    image = _render([((12, 14 + 32 * i), line) for i, line in enumerate(lines)], (860, 130),
                    bg=(12, 12, 12), fg=(230, 230, 230), font=MONO, px=20)
    text = reader.read(image)
    assert "ERR_CONNECTION_REFUSED" in text
    assert "0x80070005" in text
    assert "localhost:8080" in text
    assert len(text.splitlines()) == 3


def test_blank_and_tiny_images_are_empty_and_fast(reader: RapidReader) -> None:
    start = time.perf_counter()
    assert reader.read(Image.new("RGB", (1200, 900), "white")) == ""
    assert reader.read(Image.new("L", (640, 480), 30)) == ""
    assert reader.read(Image.new("RGB", (12, 300), "black")) == ""
    assert time.perf_counter() - start < 0.5


def test_transparent_tightly_cropped_png(reader: RapidReader) -> None:
    # Black text on a transparent background: naive RGB conversion makes it black on black.
    # Tightly cropped (text near the edges): without a margin the detector split "logo"
    # into "I t".
    image = Image.new("RGBA", (600, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((40, 30), "Transparent logo text", font=_font(FONT, 28),
                               fill=(0, 0, 0, 255))
    assert reader.read(image) == "Transparent logo text"


def test_large_image_is_read_within_bounded_time(reader: RapidReader) -> None:
    image = _render([((200, 300), "ANNUAL REPORT 2025")], (4800, 3000), px=150)
    start = time.perf_counter()
    text = reader.read(image)
    elapsed = time.perf_counter() - start
    assert text.lower() == "annual report 2025"
    assert elapsed < 30  # downscaled to 2000 px first; generous for a shared 2-core box


def test_concurrent_reads_are_serialised_safely(reader: RapidReader) -> None:
    image = _render([((20, 80), "Thread safe OCR")], (600, 200))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(reader.read(image)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == ["Thread safe OCR", "Thread safe OCR"]


def test_engine_uses_bundled_models_and_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.utils import download_file

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("RapidOCR tried to download a model")

    monkeypatch.setattr(download_file.DownloadFile, "run", no_download)
    reader = RapidReader()
    assert reader.read(_render([((20, 80), "Offline models")], (600, 200))) == "Offline models"
    cfg = reader._engine.cfg
    for section in (cfg.Det, cfg.Rec):
        assert Path(section.model_path).is_file()
        assert "rapidocr" in Path(section.model_path).parts
