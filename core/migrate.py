"""Copy an index to another storage configuration (embedded -> server mode) without
re-embedding anything: vectors, catalog rows, keyword passages, blobs, and the small state
(preferences, feedback, caption cache, file marks, the text queue).

The copy follows the write order (blobs, vectors, keyword passages, catalog rows last), every
step is an idempotent upsert by id, and nothing is deleted at the source: an interrupted run
is simply run again. At the end the counts of both sides are compared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from core.config import Settings
from core.errors import PixragError
from core.library.catalog import STATE_TABLES
from core.library.library import CHANNELS, Library
from core.library.open import open_library

log = logging.getLogger(__name__)

BATCH = 500
Progress = Callable[[str, int, int], None]  # (step, done, total)


async def migrate(source: Settings, target: Settings, models: dict[str, str], *,
                  progress: Progress | None = None) -> dict[str, Any]:
    src = await open_library(source, models)
    try:
        dst = await open_library(target, models)
        try:
            return await _copy(src, dst, progress)
        finally:
            await dst.aclose()
    finally:
        await src.aclose()


def _same_place(src: Library, dst: Library) -> bool:
    return src.catalog.location == dst.catalog.location


async def _copy(src: Library, dst: Library, progress: Progress | None) -> dict[str, Any]:
    if _same_place(src, dst):
        raise PixragError("the target configuration points at the same catalog as the source")

    def tell(step: str, done: int, total: int) -> None:
        if progress is not None:
            progress(step, done, total)

    rows = await src.read("reading the catalog", src.catalog.all, None)

    # 1. blobs: originals and thumbnails.
    shas = sorted({s for r in rows for s in (r.file_sha, r.image_sha) if s})
    for n, sha in enumerate(shas, 1):
        have = await dst.read("checking blobs", dst.blobs.has, sha)
        if not have:
            data = await src.blob_bytes(sha)
            await dst.write("copying originals", dst.blobs.put, data)
        tell("originals", n, len(shas))
    visual = [r for r in rows if r.kind != "chunk"]
    for n, r in enumerate(visual, 1):
        thumb = await src.read("reading thumbnails", src.blobs.read_thumbnail, r.id)
        if thumb is not None:
            await dst.write("copying thumbnails", dst.blobs.put_thumbnail, r.id, thumb)
        tell("thumbnails", n, len(visual))

    # 2. vectors, with their documents and metadata, under the same ids; a page at a time, so
    # an index of millions of vectors is copied in bounded memory.
    s_store = await src.vectors()
    d_store = await dst.vectors()
    vector_counts: dict[str, tuple[int, int]] = {}
    for channel in CHANNELS:
        total = await src.read("counting vectors", s_store.count, channel)
        dim = 0
        for start in range(0, total, BATCH):
            part = await src.read("reading vectors", lambda ch=channel, at=start: (
                s_store.records_page(ch, at, BATCH, documents=ch == "text", vectors=True)))
            if not part:
                break
            documents = [r.document or "" for r in part] if channel == "text" else None
            await dst.write("copying vectors", lambda p=part, d=documents, ch=channel:
                            d_store.upsert(ch, [r.id for r in p],
                                           np.stack([r.vector for r in p]),
                                           [dict(r.metadata) for r in p], documents=d))
            dim = dim or (int(part[0].vector.shape[0]) if part[0].vector is not None else 0)
            tell(f"{channel} vectors", min(start + len(part), total), total)
        if total:
            await dst.write("recording models", _record, dst, channel, dim)
        vector_counts[channel] = (total, await dst.read("counting vectors", d_store.count,
                                                        channel))

    # 3. keyword passages, a page at a time.
    n_docs, after = 0, 0
    while True:
        page = await src.read("reading keyword rows", lambda a=after: src.keyword.docs(
            after=a, limit=BATCH))
        if not page:
            break
        after = page[-1][0]
        n_docs += len(page)
        await dst.write("copying keyword rows", dst.keyword.add, [d for _, d in page])
        tell("keyword rows", n_docs, n_docs)

    # 4. catalog rows (the commit marker), then the small state.
    for start in range(0, len(rows), BATCH):
        await dst.write("copying catalog rows", dst.catalog.add, rows[start:start + BATCH])
        tell("items", min(start + BATCH, len(rows)), len(rows))
    for table in STATE_TABLES:
        state = await src.read("reading state", src.catalog.dump, table)
        await dst.write("copying state", dst.catalog.restore, table, state)

    # 5. verify.
    s_items = await src.spaces()
    d_items = await dst.spaces()
    d_keyword = await dst.read("counting keyword rows", dst.keyword.count, None)
    missing_blobs = [s for s in shas if not await dst.read("checking blobs", dst.blobs.has, s)]
    ok = (all(d_items.get(sp, 0) >= n for sp, n in s_items.items())
          and all(d >= s for s, d in vector_counts.values())
          and d_keyword >= n_docs and not missing_blobs)
    return {
        "ok": ok,
        "items": {"source": sum(s_items.values()), "target": sum(d_items.values())},
        "spaces": {"source": s_items, "target": d_items},
        "vectors": {ch: {"source": s, "target": d} for ch, (s, d) in vector_counts.items()},
        "keyword_rows": {"source": n_docs, "target": d_keyword},
        "originals": {"source": len(shas), "target": len(shas) - len(missing_blobs)},
    }


def _record(lib: Library, channel: str, dim: int) -> None:
    lib.catalog.set_meta(f"model:{channel}", lib.models[channel])
    lib.catalog.set_meta(f"dim:{channel}", str(dim))
