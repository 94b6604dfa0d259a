"""Wiring: settings + secrets -> a ready :class:`core.service.PixRAG`, in one place.

Everything is built here (nothing at import time) and closed in reverse order on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from core.answer import build_answerer, build_captioner
from core.batching import MicroBatcher
from core.blobs import BlobStore
from core.catalog import Catalog
from core.clip import ClipEmbedder
from core.components import Components, Executors
from core.config import Secrets, Settings
from core.keyword import KeywordIndex
from core.ocr import RapidReader
from core.service import PixRAG
from core.store import VectorStore
from core.textembed import build_text_embedder

log = logging.getLogger(__name__)

REINDEX_HINT = "pixrag reindex"


@contextlib.asynccontextmanager
async def open_service(settings: Settings, secrets: Secrets, *,
                       check_models: bool = True) -> AsyncIterator[PixRAG]:
    """Open every resource, yield the service, close everything (also on errors)."""
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    pools = Executors.create(settings)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(pools.shutdown)
        emb = settings.embedding
        clip = await loop.run_in_executor(
            pools.model, lambda: ClipEmbedder(emb.model, device=emb.device, dtype=emb.dtype))
        text = build_text_embedder(settings.text, secrets)
        store = await loop.run_in_executor(pools.store, lambda: VectorStore(
            url=settings.store.url, path=Path(settings.store.path).expanduser()
            if settings.store.path else data / "chroma", prefix=settings.store.prefix))
        stack.callback(store.close)
        if check_models:
            await loop.run_in_executor(pools.store, lambda: open_collections(
                store, clip.model_id, clip.dim, text.model_id, text.dim))
        catalog = Catalog(data / "catalog.sqlite")
        stack.callback(catalog.close)
        keyword = KeywordIndex(data / "keyword.sqlite")
        stack.callback(keyword.close)
        answerer = build_answerer(settings.answer, secrets)
        stack.push_async_callback(answerer.aclose)
        captioner = build_captioner(settings.index, settings.answer, secrets)
        if captioner is not None:
            stack.push_async_callback(captioner.aclose)
        wait_s = emb.max_wait_ms / 1000
        clip_images: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            lambda px: list(clip.embed_pixels(_stack(px))), executor=pools.model,
            max_batch=emb.batch_size, max_wait_s=wait_s, max_pending=emb.queue_size * 4,
            name="clip-images")
        clip_texts: MicroBatcher[str, np.ndarray] = MicroBatcher(
            lambda ts: list(clip.embed_texts(ts)), executor=pools.model,
            max_batch=emb.batch_size, max_wait_s=wait_s, name="clip-texts")
        text_vectors: MicroBatcher[str, np.ndarray] = MicroBatcher(
            lambda ts: list(text.embed_batch(ts)), executor=pools.text,
            max_batch=settings.text.batch_size, max_wait_s=wait_s, max_pending=4096,
            name="text-vectors")
        for b in (clip_images, clip_texts, text_vectors):
            stack.push_async_callback(b.aclose)
        components = Components(
            settings=settings, clip=clip, text=text,
            reader=RapidReader(gate=settings.index.ocr_gate) if settings.index.ocr else None,
            store=store, catalog=catalog, keyword=keyword, blobs=BlobStore(data / "blobs"),
            captioner=captioner, pools=pools, clip_images=clip_images, clip_texts=clip_texts,
            text_vectors=text_vectors)
        service = PixRAG(components, answerer)
        stack.push_async_callback(service.aclose)
        yield service


def open_collections(store: VectorStore, clip_model: str, clip_dim: int, text_model: str,
                     text_dim: int) -> None:
    store.open("clip", model=clip_model, dim=clip_dim, reindex_hint=REINDEX_HINT)
    store.open("text", model=text_model, dim=text_dim, reindex_hint=REINDEX_HINT)


def _stack(pixels: list[np.ndarray]) -> np.ndarray:
    return np.stack(pixels)
