"""What the service is made of: the models (each loaded on first use) and the Library.

Built once by :func:`core.app.open_service`. A command pays only for what it uses: ``stats``
and ``forget`` never load a model, ``search`` loads no OCR and no image side of CLIP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from core.config import Pipeline, Settings
from core.glossary import Glossary, load_glossary
from core.library.library import Library
from core.models.batching import MicroBatcher
from core.models.lighttext import batches_in_torch
from core.models.priority import INDEX, QUERY, PriorityExecutor
from core.protocols import Captioner, QueryExpander, TextEmbedder, TextReader

if TYPE_CHECKING:
    from core.models.clip import ClipEmbedder

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Executors:
    """Thread pools sized on purpose: one thread for each model (a forward pass uses every
    core), shared in priority lanes so queries go before indexing; a few threads for decoding
    and preprocessing so it overlaps the model. Storage has its own (the Library)."""

    model: PriorityExecutor
    text: PriorityExecutor
    decode: ThreadPoolExecutor
    ocr: ThreadPoolExecutor
    pipeline: Pipeline  # CLIP's batch size, the decode threads, files in flight

    @classmethod
    def create(cls, settings: Settings) -> Executors:
        pipeline = settings.embedding.pipeline()
        log.debug("indexing: batches of %d, %d decode threads, %d files in flight",
                  pipeline.batch, pipeline.workers, pipeline.queue)
        return cls(
            pipeline=pipeline,
            model=PriorityExecutor("pixrag-clip"),
            text=PriorityExecutor("pixrag-text"),
            # Threads start on demand: a short command that decodes nothing starts none.
            decode=ThreadPoolExecutor(pipeline.workers, thread_name_prefix="pixrag-decode"),
            ocr=ThreadPoolExecutor(settings.index.ocr_engines(),
                                   thread_name_prefix="pixrag-ocr"),
        )

    def shutdown(self) -> None:
        for pool in (self.model, self.text, self.decode, self.ocr):
            pool.shutdown(wait=True, cancel_futures=True)


class Components:
    def __init__(self, *, settings: Settings, library: Library, text: TextEmbedder,
                 captioner: Captioner | None, pools: Executors,
                 expander: QueryExpander | None = None,
                 load_clip: Callable[[], ClipEmbedder],
                 load_reader: Callable[[], TextReader] | None) -> None:
        self.settings = settings
        self.library = library
        self.text = text
        self.captioner = captioner
        self.expander = expander
        self._glossary: Glossary | None = None
        self.pools = pools
        self._load_clip = load_clip
        self._load_reader = load_reader
        self._clip: ClipEmbedder | None = None
        self._reader: TextReader | None = None
        self._lock = asyncio.Lock()
        self._clip_lock = threading.Lock()
        emb = settings.embedding
        wait_s = emb.max_wait_ms / 1000
        batch = pools.pipeline.batch

        def images(px: list[np.ndarray]) -> list[np.ndarray]:
            return list(self._loaded_clip.embed_pixel_list(px))

        def clip_texts(ts: list[str]) -> list[np.ndarray]:
            return list(self._loaded_clip.embed_texts(ts))

        def texts(ts: list[str]) -> list[np.ndarray]:
            return list(text.embed_batch(ts))

        # A query of a few items runs in numpy while nothing needs torch (a cold search does
        # not import it); indexing switches every batch to torch (core.models.lighttext).
        def index_images(px: list[np.ndarray]) -> list[np.ndarray]:
            batches_in_torch()
            return images(px)

        def index_texts(ts: list[str]) -> list[np.ndarray]:
            batches_in_torch()
            return texts(ts)

        # Indexing and queries batch separately and meet in the model thread, where a query
        # batch always goes next.
        self.clip_images: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            index_images, executor=pools.model.lane(INDEX), max_batch=batch,
            max_wait_s=wait_s, max_pending=pools.pipeline.queue * 4, name="clip-images")
        self.clip_query_images: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            images, executor=pools.model.lane(QUERY), max_batch=batch,
            max_wait_s=wait_s, name="clip-query-images")
        self.clip_texts: MicroBatcher[str, np.ndarray] = MicroBatcher(
            clip_texts, executor=pools.model.lane(QUERY), max_batch=batch,
            max_wait_s=wait_s, name="clip-texts")
        self.text_vectors: MicroBatcher[str, np.ndarray] = MicroBatcher(
            index_texts, executor=pools.text.lane(INDEX), max_batch=settings.text.batch_size,
            max_wait_s=wait_s, max_pending=4096, name="text-vectors")
        self.text_queries: MicroBatcher[str, np.ndarray] = MicroBatcher(
            texts, executor=pools.text.lane(QUERY), max_batch=settings.text.batch_size,
            max_wait_s=wait_s, name="text-queries")

    @property
    def clip_model_id(self) -> str:
        return self.settings.embedding.model

    @property
    def _loaded_clip(self) -> ClipEmbedder:
        """CLIP, loaded on first use (blocking: called in the model thread)."""
        with self._clip_lock:
            if self._clip is None:
                self._clip = self._load_clip()
                self._fit_pipeline(self._clip.device)
            return self._clip

    def _fit_pipeline(self, device: str) -> None:
        """Batch sizes for the device CLIP actually loaded on. They were picked before, by a
        guess that does not import torch (a GPU device node, or not Linux): where CLIP still
        ended up on the CPU (a CPU-only torch, a driver that does not match, a Mac without
        MPS), the CPU's sizes apply, or a query would wait behind a batch of 256 CPU forward
        passes. The decode threads stay as they are (idle threads cost nothing)."""
        fitted = self.settings.embedding.pipeline(accelerated=device != "cpu")
        old = self.pools.pipeline
        if (fitted.batch, fitted.queue) == (old.batch, old.queue):
            return
        self.pools.pipeline = replace(old, batch=fitted.batch, queue=fitted.queue)
        for batcher in (self.clip_images, self.clip_query_images, self.clip_texts):
            batcher.max_batch = fitted.batch
        log.info("CLIP runs on %s: batches of %d, %d files in flight", device, fitted.batch,
                 fitted.queue)

    async def clip(self) -> ClipEmbedder:
        """CLIP, loaded once on first use (in the model thread)."""
        if self._clip is None:
            return await self.run(self.pools.model.lane(QUERY), lambda: self._loaded_clip)
        return self._clip

    async def reader(self) -> TextReader | None:
        """The OCR engine (None when OCR is off), loaded once on first use."""
        if self._load_reader is None:
            return None
        if self._reader is None:
            async with self._lock:
                if self._reader is None:
                    self._reader = await self.run(self.pools.ocr, self._load_reader)
        return self._reader

    async def glossary(self) -> Glossary:
        """The glossary, built on first use (compiling its patterns takes a moment that
        `stats` or `forget` need not pay); cached per file version in ``core.glossary``."""
        if self._glossary is None:
            self._glossary = await self.run(self.pools.decode, load_glossary,
                                            self.settings.text.glossary_file)
        return self._glossary

    async def run(self, pool: Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def aclose(self) -> None:
        for b in (self.clip_images, self.clip_query_images, self.clip_texts,
                  self.text_vectors, self.text_queries):
            await b.aclose()
