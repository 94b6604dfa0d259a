"""The parts the service is made of, built once by :func:`core.app.open_service`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from core.batching import MicroBatcher
from core.blobs import BlobStore
from core.catalog import Catalog
from core.clip import ClipEmbedder
from core.config import Settings
from core.keyword import KeywordIndex
from core.protocols import Captioner, TextEmbedder, TextReader
from core.store import VectorStore

T = TypeVar("T")


@dataclass
class Executors:
    """Thread pools sized on purpose: one for each model (they use all cores themselves), a few
    for decoding/preprocessing so it overlaps the model, one for storage so writes serialise."""

    model: ThreadPoolExecutor
    text: ThreadPoolExecutor
    decode: ThreadPoolExecutor
    ocr: ThreadPoolExecutor
    store: ThreadPoolExecutor

    @classmethod
    def create(cls, settings: Settings) -> Executors:
        return cls(
            model=ThreadPoolExecutor(1, thread_name_prefix="pixrag-clip"),
            text=ThreadPoolExecutor(1, thread_name_prefix="pixrag-text"),
            decode=ThreadPoolExecutor(settings.embedding.preprocess_workers,
                                      thread_name_prefix="pixrag-decode"),
            ocr=ThreadPoolExecutor(1, thread_name_prefix="pixrag-ocr"),
            store=ThreadPoolExecutor(1, thread_name_prefix="pixrag-store"),
        )

    def shutdown(self) -> None:
        for pool in (self.model, self.text, self.decode, self.ocr, self.store):
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Components:
    settings: Settings
    clip: ClipEmbedder
    text: TextEmbedder
    reader: TextReader | None
    store: VectorStore
    catalog: Catalog
    keyword: KeywordIndex
    blobs: BlobStore
    captioner: Captioner | None
    pools: Executors
    clip_images: MicroBatcher[np.ndarray, np.ndarray]  # preprocessed pixels -> vector
    clip_texts: MicroBatcher[str, np.ndarray]
    text_vectors: MicroBatcher[str, np.ndarray]

    async def run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
