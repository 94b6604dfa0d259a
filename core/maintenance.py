"""Keeping an index healthy: re-embedding after a model change, and checking/repairing.

**Reindex** builds the new vectors beside the live ones: a new collection per changed channel,
named after the new model so a re-run finds it and resumes (ids are deterministic; what is
already there is skipped). The live index stays fully searchable by the processes still
running the old model until the switch, which is one catalog write. Only what changed is
recomputed: a new CLIP re-embeds images from their stored originals (read one at a time,
inside the ingestion window); a new text model re-embeds the stored passages; OCR never runs
again.

**Check** compares the four parts (catalog, vectors, keyword index, blobs) and reports every
inconsistency; with ``repair`` it fixes what can be fixed: missing vectors are re-embedded from
the originals, missing keyword rows and text vectors from the catalog's text, thumbnails
re-made, a lost catalog row rebuilt from its vectors' metadata, and orphans dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.components import Components
from core.errors import PixragError, StoreError
from core.glossary import annotated_passages
from core.ingest import LIGHT_SIDE, _thumb_source, tile_boxes
from core.library.catalog import ItemRow
from core.library.library import CHANNELS, ItemWrite, row_from_meta, vector_meta
from core.library.vectors import VectorRecord
from core.media.chunking import split_passages
from core.media.imageio import Limits, load_image, to_jpeg
from core.types import (
    Failed,
    IndexedItem,
    IndexReport,
    Skipped,
    is_caption_passage,
    is_glossary_passage,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
WINDOW = 16  # originals decoded at once while re-embedding
CATCH_UP_ROUNDS = 5  # passes over what other processes indexed during a re-embedding


# re-embedding ---------------------------------------------------------------------------------
async def reindex(c: Components, *, progress: Progress | None = None,
                  force: bool = False) -> IndexReport:
    lib = c.library
    store = await lib.vectors()
    rows = await lib.read("reading the catalog", lib.catalog.all, None)
    report = IndexReport()
    changed: list[str] = []
    for channel in CHANNELS:
        name, _ = store.spec(channel)
        built = await lib.read("reading the vector store", store.built_with, name)
        if force or (built is not None and built != lib.models[channel]):
            changed.append(channel)
    if not changed:
        # Nothing to re-embed; glossary passages are still brought up to date (items indexed
        # without them, or before the glossary file changed).
        glossed = await _sync_glossary(c) if c.settings.text.glossary else set()
        for r in rows:
            if r.id in glossed:
                report.indexed.append(IndexedItem(r.id, r.source, r.kind))  # type: ignore[arg-type]
            else:
                report.skipped.append(Skipped(r.source, "already embedded with the configured "
                                              "models"))
        return report
    failed: dict[str, str] = {}
    forgotten: set[str] = set()  # by another process while this one worked
    done = 0
    total = len(rows) * len(changed)

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for channel in changed:
        target = _target_name(store.prefix, channel, lib.models[channel], force)
        next_channel = f"{channel}@next"
        store.attach(next_channel, target, model=lib.models[channel])
        todo = list(rows)
        done_ids: set[str] = set()
        # Other processes may keep indexing with the old model meanwhile (a bot, another
        # host): what they commit is re-embedded too, in rounds, until a round finds nothing
        # new; only then does the switch happen.
        for _ in range(CATCH_UP_ROUNDS):
            have = {r.id for r in await lib.read("reading the vector store", store.records,
                                                 next_channel)}
            if channel == "clip":
                await _reembed_images(c, next_channel, todo, have, failed, tick)
                embedded = 0  # new images come with new catalog rows
            else:  # the text phase adds passages to items committed long before
                embedded = await _reembed_text(c, channel, next_channel, todo, have, tick)
            done_ids |= {r.id for r in todo}
            todo = [r for r in await lib.read("reading the catalog", lib.catalog.all, None)
                    if r.id not in done_ids]
            if not todo and not embedded:
                break
            total += len(todo)
            known = {r.id for r in rows}
            rows = [*rows, *(r for r in todo if r.id not in known)]
        await lib.write("switching to the new index", lib.switch_collection, channel, target)
        log.info("the %s index now uses %s (%s)", channel, target, lib.models[channel])
        now = await lib.read("reading the catalog", lib.catalog.all, None)
        if channel == "clip":
            # Items committed between the last round and the switch wrote their image vectors
            # into the collection just dropped: one more pass, from their originals.
            late = [r for r in now if r.id not in done_ids]
            if late:
                total += len(late)
                rows = [*rows, *late]
                await _reembed_images(c, channel, late, set(), failed, tick)
        # Items forgotten meanwhile (by another process, whose removal did not reach the new
        # collection): their new vectors go too, or a repair could bring them back.
        gone = done_ids - {r.id for r in now}
        if gone:
            await _drop_items(c, [r for r in rows if r.id in gone])
            forgotten |= gone
    if c.settings.text.glossary:  # after the switch: embedded by the text model now in use
        await _sync_glossary(c)
    for r in rows:
        if r.id in forgotten:
            continue
        if r.id in failed:
            report.failed.append(Failed(r.source, failed[r.id]))
        else:
            report.indexed.append(IndexedItem(r.id, r.source, r.kind))  # type: ignore[arg-type]
    return report


async def _drop_items(c: Components, rows: Sequence[ItemRow]) -> None:
    """Remove the vectors of ``rows`` from every collection this process has attached."""
    lib = c.library
    store = await lib.vectors()
    by_space: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_space[r.space].append(r.id)
    for space, ids in by_space.items():
        await lib.write("dropping vectors of forgotten items", store.delete_items, space, ids)


async def _drop_forgotten(c: Components, rows: Sequence[ItemRow]) -> set[str]:
    """Another process may have forgotten some of ``rows`` while they were being re-made:
    drop their vectors again (its removal may have come first). Returns their ids."""
    lib = c.library
    live = await lib.read("reading the catalog", lib.catalog.live_ids, [r.id for r in rows])
    gone = [r for r in rows if r.id not in live]
    if gone:
        await _drop_items(c, gone)
    return {r.id for r in gone}


async def _sync_glossary(c: Components) -> set[str]:
    """Bring every item's glossary passages up to date with the glossary in use (built in,
    plus ``[text] glossary_file``): items indexed without them get them, items whose terms
    changed get new ones, stale ones go. Made from the stored passages: no OCR; only changed
    passages are embedded. Returns the items that changed."""
    lib = c.library
    records = await lib.vector_records("text", documents=True)
    own: dict[str, list[VectorRecord]] = defaultdict(list)
    stored: dict[str, dict[str, str]] = defaultdict(dict)  # item -> glossary passage -> text
    for r in records:
        item = str(r.metadata.get("item", ""))
        if not item:
            continue
        if is_glossary_passage(r.id):
            stored[item][r.id] = r.document or ""
        elif not is_caption_passage(r.id) and r.document:
            own[item].append(r)
    chars = c.settings.text.passage_chars
    glossary = await c.glossary()
    todo: list[tuple[VectorRecord, list[tuple[str, str]]]] = []
    stale: list[str] = []
    for item, recs in own.items():
        recs.sort(key=_passage_no)
        pieces = await c.run(c.pools.decode, annotated_passages, glossary, item,
                             "\n".join(r.document or "" for r in recs), chars)
        fresh, before = dict(pieces), stored.get(item, {})
        if fresh == before:
            continue
        stale += [pid for pid in before if pid not in fresh]
        todo.append((recs[0], pieces))
    store = await lib.vectors()
    if stale:
        await lib.write("dropping old glossary passages", store.delete_ids, "text", stale)
    for start in range(0, len(todo), 64):
        part = [(rec, pieces) for rec, pieces in todo[start:start + 64] if pieces]
        flat = [(pid, text, rec.metadata) for rec, pieces in part for pid, text in pieces]
        if not flat:
            continue
        vecs = await c.text_vectors.submit_many([t for _, t, _ in flat])
        await lib.write("writing glossary passages", lambda f=flat, v=vecs: store.upsert(
            "text", [p for p, _, _ in f], np.stack(v), [dict(m) for _, _, m in f],
            documents=[t for _, t, _ in f]))
    if todo:
        log.info("glossary passages brought up to date on %d items", len(todo))
    return {str(rec.metadata.get("item", "")) for rec, _ in todo}


def _target_name(prefix: str, channel: str, model: str, force: bool) -> str:
    tag = hashlib.sha256(model.encode()).hexdigest()[:10]
    if force:  # the same model again: a name of its own, still stable for a resumed run
        tag += "r"
    return f"{prefix}_{channel}_{tag}"


async def _reembed_images(c: Components, channel: str, rows: Sequence[ItemRow],
                          have: set[str], failed: dict[str, str],
                          tick: Callable[[int], None]) -> None:
    lib = c.library
    clip = await c.clip()
    limits = Limits.from_settings(c.settings.index)
    window = asyncio.Semaphore(WINDOW)

    async def one(row: ItemRow) -> None:
        async with window:
            try:
                if row.image_sha is None or row.id in have:
                    return
                data = await lib.blob_bytes(row.image_sha)  # lazily, one original at a time

                def prep() -> list[np.ndarray]:
                    image = load_image(data, row.name, limits, max_side=LIGHT_SIDE).image
                    crops = tile_boxes(image)
                    return [clip.preprocess([image])[0], *(clip.preprocess(crops)
                                                            if crops else [])]

                pixels = await c.run(c.pools.decode, prep)
                vecs = await c.clip_images.submit_many(pixels)
                ids = [row.id] + [f"{row.id}#t{n}" for n in range(len(vecs) - 1)]
                store = await lib.vectors()
                await lib.write("writing vectors", lambda: store.upsert(
                    channel, ids, np.stack(vecs), [vector_meta(row)] * len(ids)))
            except StoreError as exc:
                if "missing from the blob store" not in str(exc):
                    raise
                failed[row.id] = "original bytes missing from the blob store"
            except PixragError as exc:
                failed[row.id] = str(exc)
            finally:
                tick(1)

    await asyncio.gather(*(one(r) for r in rows))


async def _reembed_text(c: Components, channel: str, next_channel: str,
                        rows: Sequence[ItemRow], have: set[str],
                        tick: Callable[[int], None]) -> int:
    """Re-embed the stored passages (the very text the old model saw) with the new model;
    returns how many."""
    lib = c.library
    records = await lib.vector_records(channel, documents=True)
    todo = [r for r in records if r.id not in have and r.document]
    store = await lib.vectors()
    for start in range(0, len(todo), 256):
        part = todo[start:start + 256]
        vecs = await c.text_vectors.submit_many([r.document or "" for r in part])
        await lib.write("writing vectors", lambda p=part, v=vecs: store.upsert(
            next_channel, [r.id for r in p], np.stack(v), [dict(r.metadata) for r in p],
            documents=[r.document or "" for r in p]))
    tick(len(rows))
    return len(todo)


# checking and repairing -----------------------------------------------------------------------
@dataclass
class Problem:
    kind: str
    item: str
    source: str
    detail: str
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "item": self.item, "source": self.source,
                "detail": self.detail, "repaired": self.repaired}


@dataclass
class _Scan:
    rows: dict[str, ItemRow]
    clip: dict[str, list[VectorRecord]] = field(default_factory=dict)  # item -> records
    text: dict[str, list[VectorRecord]] = field(default_factory=dict)
    keyword: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    thumbnails: set[str] = field(default_factory=set)  # item ids
    files: list[tuple[str, str, str, int]] = field(default_factory=list)
    forgotten: set[str] = field(default_factory=set)  # removals begun, not finished


def _fix(repair: bool, done: str, todo: str) -> str:
    # A report without --repair must not read as if the fix had happened.
    return f": {done}" if repair else f"; --repair {todo}"


async def check(c: Components, *, repair: bool = False) -> dict[str, Any]:
    lib = c.library
    store = await lib.vectors()

    def scan() -> _Scan:
        s = _Scan(rows={r.id: r for r in lib.catalog.all(None)})
        for ch, into in (("clip", s.clip), ("text", s.text)):
            for rec in store.records(ch, documents=ch == "text"):
                into.setdefault(str(rec.metadata.get("item", rec.id)), []).append(rec)
        s.keyword = lib.keyword.item_ids()
        s.blobs = lib.blobs.shas()
        s.thumbnails = lib.blobs.thumbnail_keys()
        s.files = lib.catalog.files()
        s.forgotten = set(lib.catalog.forgotten())
        return s

    s = await lib.read("scanning the index", scan)
    problems: list[Problem] = []

    # rows lost from the catalog (a crashed write, an emptied catalog) -------------------------
    orphans = (set(s.clip) | set(s.text)) - set(s.rows)
    restored: list[ItemRow] = []
    drop_vectors: list[tuple[str, str]] = []  # (space, item)
    sources: dict[str, str] = {}  # forgotten item -> its file, where its vectors say
    for item in sorted(orphans):
        recs = s.clip.get(item) or s.text.get(item) or []
        # The row's text is the item's own passages (annotations repeat them with additions).
        texts = [r.document or "" for r in sorted(s.text.get(item, []), key=_passage_no)
                 if not is_glossary_passage(r.id)]
        row = row_from_meta(recs[0].metadata, "\n".join(t for t in texts if t)) if recs \
            else None
        if item in s.forgotten:  # an interrupted forget: finish it, never bring it back
            drop_vectors.append((str(recs[0].metadata.get("space", "")) if recs else "", item))
            sources[item] = row.source if row else ""
        elif row is not None and (row.image_sha is None or row.image_sha in s.blobs
                                  or row.kind == "chunk"):
            problems.append(Problem("missing_catalog_row", item, row.source,
                                    "vectors without a catalog row"
                                    + _fix(repair, "row rebuilt from them",
                                           "rebuilds the row from them"),
                                    repaired=repair))
            restored.append(row)
        else:
            space = str(recs[0].metadata.get("space", "")) if recs else ""
            problems.append(Problem("orphan_vectors", item, "",
                                    "vectors of an item that is not in the catalog",
                                    repaired=repair))
            drop_vectors.append((space, item))

    unfinished = sorted(s.forgotten - set(s.rows))
    for item in unfinished:
        problems.append(Problem("interrupted_forget", item, sources.get(item, ""),
                                "a forgotten item whose removal was interrupted"
                                + _fix(repair, "what was left of it is dropped",
                                       "drops what is left of it (vectors, keyword rows, "
                                       "thumbnail, original)"),
                                repaired=repair))

    # every catalog row --------------------------------------------------------------------
    reembed: list[ItemRow] = []
    retext: list[ItemRow] = []
    rethumb: list[ItemRow] = []
    remove: list[ItemRow] = []
    pending = await lib.read("reading the queue", lib.catalog.pending_ids, list(s.rows))
    for row in s.rows.values():
        visual = row.kind in ("image", "page")
        blob_ok = row.image_sha is not None and row.image_sha in s.blobs
        if visual and row.image_sha and not blob_ok:
            problems.append(Problem("missing_original", row.id, row.source,
                                    "the stored original is missing from the blob store"))
        if visual and row.id not in s.clip:
            if blob_ok:
                problems.append(Problem("missing_clip_vector", row.id, row.source,
                                        "no image vector"
                                        + _fix(repair, "re-embedded from the original",
                                               "re-embeds it from the original"),
                                        repaired=repair))
                reembed.append(row)
            elif row.id not in s.text:
                problems.append(Problem("unfindable_item", row.id, row.source,
                                        "no vectors and no original"
                                        + _fix(repair, "the item is removed",
                                               "removes the item"),
                                        repaired=repair))
                remove.append(row)
        if visual and blob_ok and not lib.blobs.has_thumbnail(row.id):
            problems.append(Problem("missing_thumbnail", row.id, row.source,
                                    "no thumbnail"
                                    + _fix(repair, "re-made from the original",
                                           "re-makes it from the original"),
                                    repaired=repair))
            rethumb.append(row)
        if row.id in pending or not row.text.strip():
            continue
        lacks = [what for what, ok in (("text vectors", row.id in s.text),
                                       ("keyword rows", row.id in s.keyword)) if not ok]
        if lacks:
            problems.append(Problem("missing_text_index", row.id, row.source,
                                    f"no {' and no '.join(lacks)}"
                                    + _fix(repair, "rebuilt from its text",
                                           "rebuilds them from its text"),
                                    repaired=repair))
            retext.append(row)

    # keyword rows, blobs and file marks nobody refers to -------------------------------------
    known = set(s.rows) | {r.id for r in restored}
    stray_keyword = sorted(s.keyword - known)
    for item in stray_keyword:
        problems.append(Problem("orphan_keyword_rows", item, "",
                                "keyword rows of an item that is not in the catalog",
                                repaired=repair))
    used = {sha for r in [*s.rows.values(), *restored] for sha in (r.file_sha, r.image_sha)
            if sha}
    stray_blobs = sorted(s.blobs - used)
    for sha in stray_blobs:
        problems.append(Problem("orphan_original", sha, "",
                                "a stored original no item uses", repaired=repair))
    stray_thumbnails = sorted(s.thumbnails - known - set(unfinished))
    for key in stray_thumbnails:
        problems.append(Problem("orphan_thumbnail", key, "",
                                "a thumbnail no item uses", repaired=repair))
    have_files = {(r.space, r.file_sha) for r in [*s.rows.values(), *restored]}
    stale_files = [(sp, sha) for sp, sha, _, _ in s.files if (sp, sha) not in have_files]
    for sp, sha in stale_files:
        problems.append(Problem("stale_file_mark", sha, "",
                                f"space {sp!r} marks a file as indexed that has no items: "
                                "indexing it again will work", repaired=repair))

    requeued = 0
    if repair:
        requeued = await _repair(c, restored, drop_vectors, reembed, retext, rethumb, remove,
                                 stray_keyword, stray_blobs, stale_files)
        # Every removal begun is finished now: vectors, keyword rows and unused originals
        # were dropped above; thumbnails are per item.
        thumbs = [*unfinished, *stray_thumbnails]
        live = await lib.read("reading the catalog", lib.catalog.live_ids, thumbs)
        for item in thumbs:
            if item not in live:  # else committed meanwhile (by another process)
                await lib.write("dropping a thumbnail", lib.blobs.delete_thumbnail, item)
        await lib.write("recording the repair", lib.catalog.clear_forgotten, unfinished)
        await lib.write("recording the repair", lib.catalog.set_meta, "needs_repair", None)
    counts: dict[str, int] = defaultdict(int)
    for p in problems:
        counts[p.kind] += 1
    return {"items": len(s.rows) + (len(restored) if repair else 0),
            "ok": not problems, "problems": [p.to_json() for p in problems],
            "counts": dict(counts), "repaired": repair,
            "requeued": requeued}


def _passage_no(rec: VectorRecord) -> int:
    tail = rec.id.rsplit("#", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _repair(c: Components, restored: list[ItemRow], drop_vectors: list[tuple[str, str]],
                  reembed: list[ItemRow], retext: list[ItemRow], rethumb: list[ItemRow],
                  remove: list[ItemRow], stray_keyword: list[str], stray_blobs: list[str],
                  stale_files: list[tuple[str, str]]) -> int:
    lib = c.library
    store = await lib.vectors()
    requeued = 0
    # The scan is a snapshot, and other processes may have indexed since: whatever an item
    # committed meanwhile uses is no orphan any more. Looked up again right before each
    # removal (the writer puts back an original removed just before its commit).
    now_live = await lib.read("reading the catalog", lib.catalog.live_ids, [
        *(r.id for r in restored), *(item for _, item in drop_vectors), *stray_keyword,
        *(r.id for r in [*reembed, *rethumb])])
    restored = [r for r in restored if r.id not in now_live]
    drop_vectors = [(sp, item) for sp, item in drop_vectors if item not in now_live]
    stray_keyword = [item for item in stray_keyword if item not in now_live]
    # ... and what was forgotten since is not re-made.
    reembed = [r for r in reembed if r.id in now_live]
    rethumb = [r for r in rethumb if r.id in now_live]
    if restored:
        # Rows with text are whole again; the others go back to the text queue (OCR).
        needs_text = [r.id for r in restored if not r.text and r.kind != "chunk"]
        await lib.write("restoring catalog rows", lambda: lib.catalog.add(
            [replace(r, stage=2 if r.id not in needs_text else 1) for r in restored],
            enrich=needs_text))
        requeued += len(needs_text)
        files: dict[tuple[str, str], tuple[str, int]] = {}
        for r in restored:
            src, n = files.get((r.space, r.file_sha), (r.source, 0))
            files[(r.space, r.file_sha)] = (src, n + 1)
        for (sp, sha), (src, n) in files.items():
            await lib.mark_file(sp, sha, src, n)
    by_space: dict[str, list[str]] = defaultdict(list)
    for sp, item in drop_vectors:
        by_space[sp].append(item)
    for sp, items in by_space.items():
        await lib.write("dropping orphan vectors", store.delete_items, sp, items)
    if reembed:
        await _reembed_images(c, "clip", reembed, set(), {}, lambda n: None)
        await _drop_forgotten(c, reembed)
    if retext:
        ingest_passages = []
        for row in retext:
            chars = c.settings.text.passage_chars
            pieces = [(f"{row.id}#{i}", p.text)
                      for i, p in enumerate(split_passages(row.text, max_chars=chars))]
            if c.settings.text.glossary:
                pieces += await c.run(c.pools.decode, annotated_passages,
                                      await c.glossary(), row.id,
                                      row.text,
                                      chars)
            vecs = await c.text_vectors.submit_many([t for _, t in pieces])
            ingest_passages.append(ItemWrite(row=replace(row, stage=2), passages=[
                (pid, v, t) for (pid, t), v in zip(pieces, vecs, strict=True)]))
        await lib.enrich_done(ingest_passages)
    if rethumb:
        limits = Limits.from_settings(c.settings.index)
        side = c.settings.index.thumbnail_px
        for row in rethumb:
            assert row.image_sha is not None
            try:
                data = await lib.blob_bytes(row.image_sha)
            except StoreError:
                if await lib.read("reading the catalog", lib.catalog.live_ids, [row.id]):
                    raise
                continue  # forgotten meanwhile, original and all
            jpeg = await c.run(c.pools.decode, lambda d=data, r=row: to_jpeg(_thumb_source(
                load_image(d, r.name, limits, max_side=max(LIGHT_SIDE, side)).image, side),
                side))
            await lib.write("writing a thumbnail", lib.blobs.put_thumbnail, row.id, jpeg)
        for item in await _drop_forgotten(c, rethumb):
            await lib.write("dropping a thumbnail", lib.blobs.delete_thumbnail, item)
    for row in remove:
        await lib.forget(row.space, [row.id])
    if stray_keyword:
        await lib.write("dropping orphan keyword rows", lib.keyword.delete_items,
                        stray_keyword)
    for sha in stray_blobs:
        await lib.write("dropping an orphan original", _delete_if_unused, lib, sha)
    by_space_files: dict[str, list[str]] = defaultdict(list)
    for sp, sha in stale_files:
        if not await lib.read("reading the catalog", lambda s=sp, h=sha: lib.catalog.find(
                s, file_sha=h)):
            by_space_files[sp].append(sha)
    for sp, shas in by_space_files.items():
        await lib.write("clearing file marks", lib.catalog.unmark_files, sp, shas)
    return requeued


def _delete_if_unused(lib: Any, sha: str) -> None:
    # One look-up right before the removal: an item committed since the scan keeps it.
    if not lib.catalog.sha_in_use(sha):
        lib.blobs.delete(sha)
