"""Fixtures for answer tests: a running fake LLM server and hits backed by real image files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.types import Hit
from tests.answer.fakellm import FakeLLM

KEY = "sk-test-SECRET-do-not-leak-1234567890"


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def make_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    img = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill="black")
    img.save(path)
    return path


@pytest.fixture(scope="module")
def hits(tmp_path_factory: pytest.TempPathFactory) -> list[Hit]:
    """An image (large PNG original), a PDF page (blob unreadable, thumbnail ok), a chunk."""
    tmp_path = tmp_path_factory.mktemp("hits")
    big = make_image(tmp_path / "diagram.png", (2000, 1000))
    thumb = make_image(tmp_path / "page-thumb.jpg", (300, 400))
    broken = tmp_path / "page-blob.bin"
    broken.write_bytes(b"not an image")
    return [
        Hit(id="img1", source=str(big), kind="image", score=0.9, blob=str(big),
            thumbnail=None, text="ERROR 42: disk quota exceeded", name="diagram.png"),
        Hit(id="page1", source="/docs/manual.pdf", kind="page", score=0.8, page=2,
            blob=str(broken), thumbnail=str(thumb), text="Chapter 2: quotas", name="manual.pdf"),
        Hit(id="chunk1", source="/docs/notes.md", kind="chunk", score=0.7,
            text="Quota resets every Monday.", name="notes.md"),
    ]
