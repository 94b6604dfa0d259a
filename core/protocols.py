"""Small interfaces with one job each. Implementations are chosen by configuration.

Embedders and OCR are *blocking* (they run in executors owned by the caller); answerers are
async because they are network clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from core.types import Usage


@runtime_checkable
class ImageEmbedder(Protocol):
    """CLIP-style joint image/text embedder. Vectors are L2-normalised float32 rows."""

    model_id: str
    dim: int

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Sentence embedder for OCR text, page text, captions and chunks (L2-normalised)."""

    model_id: str
    dim: int

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TextReader(Protocol):
    """OCR: the text visible in an image ("" when there is none)."""

    def read(self, image: Image.Image) -> str: ...


@runtime_checkable
class Captioner(Protocol):
    """Describes an image for retrieval (what it shows, visible text, kind of image)."""

    model_id: str

    async def caption(self, jpeg: bytes) -> tuple[str, Usage]: ...


@runtime_checkable
class QueryExpander(Protocol):
    """Rewrites a question into words likely to appear in what it looks for. Never raises:
    an expansion that failed or took too long is "" (search goes on without it)."""

    async def expand(self, question: str) -> str: ...
