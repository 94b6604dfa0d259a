"""Wiring: settings + secrets -> a ready :class:`core.service.PixRAG`, in one place.

Everything is built here (nothing at import time) and closed in reverse order on exit. Models
are loaded on first use, and the vector store is opened on first use, so a command pays only
for what it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Secrets, Settings
from core.library.open import open_library

if TYPE_CHECKING:
    from core.service import PixRAG

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_service(settings: Settings, secrets: Secrets, *,
                       check_models: bool = True) -> AsyncIterator[PixRAG]:
    """Open every resource, yield the service, close everything (also on errors)."""
    from core.models.textembed import build_text_embedder

    text = build_text_embedder(settings.text, secrets)
    models = {"clip": settings.embedding.model, "text": text.model_id}
    fresh = not settings.data_path.exists()
    try:
        async with _open(settings, secrets, models, text, check_models) as service:
            yield service
    except BaseException:
        if fresh:  # a first run that failed (no model yet, say) leaves no empty folder behind
            remove_if_empty_index(settings.data_path)
        raise


@contextlib.asynccontextmanager
async def _open(settings: Settings, secrets: Secrets, models: dict[str, str], text: Any,
                check_models: bool) -> AsyncIterator[PixRAG]:
    from core.answer import DeferredAnswerer, build_captioner, build_expander
    from core.components import Components, Executors
    from core.glossary import load_glossary
    from core.service import PixRAG

    async with contextlib.AsyncExitStack() as stack:
        library = await open_library(settings, models, check_models=check_models)
        stack.push_async_callback(library.aclose)
        pools = Executors.create(settings)
        stack.callback(pools.shutdown)
        answerer = DeferredAnswerer(settings.answer, secrets)
        stack.push_async_callback(answerer.aclose)
        captioner = build_captioner(settings.index, settings.answer, secrets)
        if captioner is not None:
            stack.push_async_callback(captioner.aclose)
        expander = build_expander(settings.retrieval, settings.answer, secrets)
        if expander is not None:
            stack.push_async_callback(expander.aclose)
        if settings.text.glossary_file:
            # Read and checked before any work: a bad file is a config error now, not half-way
            # through an index run (and it is then built once, cached by core.glossary).
            await asyncio.get_running_loop().run_in_executor(
                pools.decode, load_glossary, settings.text.glossary_file)
        emb = settings.embedding

        def load_clip():  # type: ignore[no-untyped-def]
            from core.models.clip import ClipEmbedder

            return ClipEmbedder(emb.model, device=emb.device, dtype=emb.dtype)

        def load_reader():  # type: ignore[no-untyped-def]
            from core.machine import usable_cores
            from core.media.ocr import RapidReader, ReaderPool

            index = settings.index
            engines = index.ocr_engines()
            if engines == 1:
                return RapidReader(gate=index.ocr_gate, int8=index.ocr_int8)
            threads = max(1, usable_cores() // engines)
            log.info("OCR: %d engines, %d threads each", engines, threads)
            return ReaderPool(lambda: RapidReader(gate=index.ocr_gate, int8=index.ocr_int8,
                                                  threads=threads), engines)

        components = Components(settings=settings, library=library, text=text,
                                captioner=captioner, expander=expander, pools=pools,
                                load_clip=load_clip,
                                load_reader=load_reader if settings.index.ocr else None)
        stack.push_async_callback(components.aclose)
        service = PixRAG(components, answerer)
        stack.push_async_callback(service.aclose)
        yield service



#: What a brand-new embedded index holds before anything was indexed.
_FRESH_FILES = ("catalog.sqlite", "keyword.sqlite", "chroma")


def remove_if_empty_index(data: Path) -> None:
    """Remove ``data`` if it holds nothing but the empty index files this run created (the
    folder did not exist before it started)."""
    if not data.is_dir():
        return
    from core.library.folderlock import unused

    with unused(data) as free:
        if not free:  # another process is filling it (started at the same moment)
            log.debug("%s is in use by another process: kept", data)
            return
        names = [p.name for p in data.iterdir()]
        if any(not n.startswith(_FRESH_FILES) for n in names):
            return
        try:
            with contextlib.closing(sqlite3.connect(
                    f"file:{data / 'catalog.sqlite'}?mode=ro", uri=True)) as db:
                if db.execute("SELECT count(*) FROM items").fetchone()[0]:
                    return
        except sqlite3.Error:
            return
        shutil.rmtree(data, ignore_errors=True)
