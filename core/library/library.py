"""The Library: every stored thing behind one async interface.

It owns four parts: the catalog (item rows, the commit marker, small per-space state), the
vectors (Chroma), the keyword index and the blobs (originals and thumbnails). Ingestion,
retrieval and the service talk to the Library, never to the parts, so the rules below live in
one place:

- **Write order.** Blobs, then vectors, then keyword passages, then the catalog row, which is
  the commit marker: a crash at any moment leaves nothing half-shown, and a re-run overwrites
  (every id is derived from space + content).
- **Forget order.** The catalog row first (from then on nothing shows it), recorded as
  forgotten in the same transaction, then vectors, keyword passages, the thumbnail, and blobs
  no other item uses, then the record: what an interrupted forget leaves is dropped by
  ``pixrag check --repair``, never mistaken for a lost row and rebuilt.
- **One writer, a read pool.** Writes run on one thread; reads run on a small pool with their
  own connections, so a search never queues behind indexing.
- **Tenancy.** Every read takes a :class:`~core.types.Scope`; rows another scope may not see
  are dropped here, whatever the part below returned.
- **Model records.** Which collection is live for each vector channel and which model built
  it; a different configured model is :class:`~core.errors.ModelMismatch`.
- **Time limits.** Every call has a deadline: a frozen store is
  :class:`~core.errors.StoreUnavailable`, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.errors import (
    CollectionGone,
    ModelError,
    ModelMismatch,
    StoreError,
    StoreUnavailable,
    from_os_error,
)
from core.library.catalog import ItemRow
from core.library.keyword import KeywordDoc
from core.library.parts import BlobPart, CatalogPart, KeywordPart
from core.library.vectors import VectorRecord, VectorStore
from core.models.batching import MicroBatcher
from core.types import Hit, Origin, Scope, is_derived_passage

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNELS = ("clip", "text")


@dataclass
class ItemWrite:
    """Everything one item stores, ready to commit."""

    row: ItemRow
    blobs: list[bytes] = field(default_factory=list)  # content-addressed payloads
    thumbnail: bytes | None = None
    clip: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (vector id, vector)
    passages: list[tuple[str, np.ndarray, str]] = field(default_factory=list)  # (id, vec, text)
    enrich: bool = False  # queue the item for the second ingestion phase


def vector_meta(row: ItemRow) -> dict[str, str | int | float | bool]:
    """Vector metadata: the filter fields, and the rest of the row so that a lost catalog can
    be rebuilt from the vectors (``pixrag check --repair``)."""
    return {"space": row.space, "item": row.id, "kind": row.kind, "audience": row.audience,
            "page": row.page or 0, "source": row.source, "name": row.name,
            "file_sha": row.file_sha, "image_sha": row.image_sha or "", "phash": row.phash,
            "platform": row.platform, "channel": row.channel, "message": row.message,
            "attachment": row.attachment, "author": row.author, "link": row.link,
            "private": row.private, "created": row.created}


def row_from_meta(meta: Mapping[str, Any], text: str = "") -> ItemRow | None:
    """The catalog row a vector's metadata describes (None for vectors written before rows
    were recorded in full)."""
    if not meta.get("file_sha") or not meta.get("source"):
        return None
    kind = str(meta.get("kind", "image"))
    page = int(meta.get("page", 0) or 0)
    return ItemRow(
        id=str(meta["item"]), space=str(meta["space"]), kind=kind, source=str(meta["source"]),
        name=str(meta.get("name", "")), page=page if kind != "image" else None,
        file_sha=str(meta["file_sha"]), image_sha=str(meta.get("image_sha") or "") or None,
        text=text, phash=str(meta.get("phash", "")), audience=str(meta.get("audience", "*")),
        platform=str(meta.get("platform", "local")), channel=str(meta.get("channel", "")),
        message=str(meta.get("message", "")), attachment=str(meta.get("attachment", "")),
        author=str(meta.get("author", "")), link=str(meta.get("link", "")),
        private=bool(meta.get("private", False)), created=float(meta.get("created", 0.0)),
        stage=2 if text else 1)


def visible(row: ItemRow, scope: Scope) -> bool:
    aud = scope.audiences()
    return row.space == scope.space and (aud is None or row.audience in aud)


class Library:
    def __init__(
        self,
        *,
        catalog: CatalogPart,
        keyword: KeywordPart,
        blobs: BlobPart,
        open_vectors: Callable[[], VectorStore],
        models: Mapping[str, str],
        timeout_s: float = 30.0,
        read_workers: int = 3,
        check_models: bool = True,
        sole_user: bool = False,
    ) -> None:
        self.catalog = catalog
        self.keyword = keyword
        self.blobs = blobs
        self._open_vectors = open_vectors
        self._vectors: VectorStore | None = None
        self._vectors_lock = asyncio.Lock()
        self.models = dict(models)  # channel -> configured model id
        self.timeout_s = timeout_s
        self.check_models = check_models
        #: Every part is embedded: once the vector store is open, this process is the only
        #: one on the data folder (core.library.folderlock).
        self.sole_user = sole_user
        self._recorded: set[str] = set()  # channels whose model is known to be recorded
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pixrag-write")
        self._readers = ThreadPoolExecutor(read_workers, thread_name_prefix="pixrag-read")
        self._io = ThreadPoolExecutor(4, thread_name_prefix="pixrag-blobs")
        self._commits: MicroBatcher[list[ItemWrite], None] = MicroBatcher(
            self._commit_batch, executor=self._writer, max_batch=32, max_wait_s=0.005,
            max_pending=256, name="library-writes")

    # plumbing -------------------------------------------------------------------------------
    async def _call(self, pool: ThreadPoolExecutor, what: str, fn: Callable[..., T],
                    *args: Any) -> T:
        try:
            return await self._call_once(pool, what, fn, *args)
        except CollectionGone:
            if not await self._follow_switch():
                raise
            return await self._call_once(pool, what, fn, *args)

    async def _follow_switch(self) -> bool:
        """After CollectionGone: look the collections up again, following a switch another
        process made; whether the failed call is worth one more try."""
        return await self._call_once(self._readers, "reading the catalog", self._reattach)

    def _reattach(self) -> bool:
        store = self._vectors
        if store is None:
            return False
        for channel in CHANNELS:
            name = self.catalog.get_meta(f"collection:{channel}") or store.default_name(channel)
            if name == store.spec(channel)[0]:
                continue
            recorded = self.catalog.get_meta(f"model:{channel}")
            if self.check_models and recorded not in (None, self.models[channel]):
                raise ModelMismatch(
                    f"the {channel} index was re-embedded with model {recorded!r} (`pixrag "
                    "reindex` in another process or on another host), but this process is "
                    f"configured with {self.models[channel]!r}: set the new model in its "
                    "config and restart it.")
            store.attach(channel, name, model=self.models[channel])
            log.info("the %s index was switched to %s by another process: using it now",
                     channel, name)
        # Also under the same name: a Chroma server restarted on an emptied volume has the
        # collection again (new, empty) once anyone writes, and the stale handle was dropped.
        # Behave like a process started now, not fail until restarted.
        return True

    async def _call_once(self, pool: ThreadPoolExecutor, what: str, fn: Callable[..., T],
                         *args: Any) -> T:
        fut = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result and
            # drops a cancellation that arrives as the call finishes, so closing could hang.
            async with asyncio.timeout(self.timeout_s):
                return await fut
        except TimeoutError:
            raise StoreUnavailable(
                f"the index did not answer within {self.timeout_s:.0f} s ({what}): the vector "
                "store, catalog or blob store is not responding") from None
        except OSError as exc:
            raise from_os_error(exc, what) from exc

    async def read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._readers, what, fn, *args)

    async def write(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._writer, what, fn, *args)

    async def vectors(self) -> VectorStore:
        """The vector store, opened on first use (importing and opening Chroma costs time that
        ``stats`` or ``forget`` of an unknown id need not pay)."""
        if self._vectors is not None:
            return self._vectors
        async with self._vectors_lock:
            if self._vectors is None:
                # Importing chromadb takes seconds on a busy machine: that is not the store
                # being slow, so it happens outside the time limit.
                await asyncio.get_running_loop().run_in_executor(self._writer, _import_chroma)
                self._vectors = await self._call(self._writer, "opening the vector store",
                                                 self._attach)
        return self._vectors

    def _attach(self) -> VectorStore:
        store = self._open_vectors()
        try:
            for channel in CHANNELS:
                name = self.catalog.get_meta(f"collection:{channel}") or \
                    store.default_name(channel)
                model = self.models[channel]
                store.attach(channel, name, model=model)
                if self.check_models:
                    store.check(channel)
            if self.sole_user:
                # Leases held now are a killed process's (no other one can be at the queue):
                # its items are free at once instead of after the lease (a minute).
                n = self.catalog.reclaim_leases()
                if n:
                    log.info("%d item(s) a stopped process was reading the text of are "
                             "queued again", n)
        except BaseException:
            store.close()
            raise
        return store

    def check_recorded_models(self) -> None:
        """ModelMismatch when the catalog records another model for a channel (cheap: no
        model and no vector store needed)."""
        for channel in CHANNELS:
            recorded = self.catalog.get_meta(f"model:{channel}")
            if recorded is not None and recorded != self.models[channel]:
                configured = self.models[channel]
                if _missing_folder(configured):
                    # A typo in a path, not a model change: `pixrag reindex` is not the fix.
                    raise ModelError(
                        f"the configured {channel} model {configured!r} is not a folder on "
                        f"this machine; the index was built with {recorded!r}. Correct the "
                        "path in the config (or its PIXRAG_ variable).")
                dim = self.catalog.get_meta(f"dim:{channel}")
                raise ModelMismatch(
                    f"the {channel} index was built with model {recorded!r} ({dim}-dim), but "
                    f"the configured model is {self.models[channel]!r}. Re-embed everything "
                    "with the new model: `pixrag reindex` (or set the old model back in the "
                    "config).")

    async def aclose(self) -> None:
        await self._commits.aclose()
        for pool in (self._writer, self._readers, self._io):
            pool.shutdown(wait=True, cancel_futures=True)
        if self._vectors is not None:
            self._vectors.close()
        self.catalog.close()
        self.keyword.close()

    # writes ---------------------------------------------------------------------------------
    async def commit(self, writes: Sequence[ItemWrite]) -> None:
        """Store items in the write order. Blobs go first, in parallel on the blob pool; the
        rest is batched across concurrent callers into one vector upsert per channel."""
        if not writes:
            return
        await self.vectors()
        await self._call(self._io, "storing originals", self._put_blobs, list(writes))
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                await self._commits.submit(list(writes))
        except CollectionGone:
            if not await self._follow_switch():
                raise
            async with asyncio.timeout(self.timeout_s * 2):
                await self._commits.submit(list(writes))
        if not self.sole_user:
            # Until the row above was committed, another process could take these blobs for
            # unused ones and delete them (`check --repair`, or a forget of an item with the
            # same bytes). From now on the row protects them, so one look afterwards puts
            # back whatever went missing in between.
            await self._call(self._io, "storing originals", self._restore_blobs,
                             list(writes))

    def _put_blobs(self, writes: list[ItemWrite]) -> None:
        for w in writes:
            for blob in w.blobs:
                self.blobs.put(blob)
            if w.thumbnail is not None:
                self.blobs.put_thumbnail(w.row.id, w.thumbnail)

    def _restore_blobs(self, writes: list[ItemWrite]) -> None:
        def original(blob: bytes) -> int:
            if self.blobs.has(hashlib.sha256(blob).hexdigest()):
                return 0
            self.blobs.put(blob)
            return 1

        def thumbnail(key: str, jpeg: bytes) -> int:
            if self.blobs.has_thumbnail(key):
                return 0
            self.blobs.put_thumbnail(key, jpeg)
            return 1

        jobs: list[Callable[[], int]] = [partial(original, b) for w in writes for b in w.blobs]
        jobs += [partial(thumbnail, w.row.id, w.thumbnail)
                 for w in writes if w.thumbnail is not None]
        if len(jobs) <= 1:
            restored = sum(job() for job in jobs)
        else:  # one request each against S3: in parallel, not one after the other
            with ThreadPoolExecutor(min(8, len(jobs)),
                                    thread_name_prefix="pixrag-blobcheck") as pool:
                restored = sum(pool.map(lambda job: job(), jobs))
        if restored:
            log.info("stored %d original(s) or thumbnail(s) again: another process removed "
                     "them while their items were being committed", restored)

    def _commit_batch(self, batches: list[list[ItemWrite]]) -> list[None]:
        """Several callers' items in one go: one upsert per collection instead of one per file.
        Per item the order still ends with the catalog row, the commit marker."""
        store = self._vectors
        assert store is not None
        writes = [w for b in batches for w in b]
        clip = [(vid, vec, w.row) for w in writes for vid, vec in w.clip]
        if clip:
            store.upsert("clip", [c[0] for c in clip], np.stack([c[1] for c in clip]),
                         [vector_meta(c[2]) for c in clip])
            self._record_model("clip", int(clip[0][1].shape[0]))
        passages = [(pid, vec, text, w.row) for w in writes for pid, vec, text in w.passages]
        if passages:
            store.upsert("text", [p[0] for p in passages], np.stack([p[1] for p in passages]),
                         [vector_meta(p[3]) for p in passages],
                         documents=[p[2] for p in passages])
            self._record_model("text", int(passages[0][1].shape[0]))
            self.keyword.add([KeywordDoc(pid, row.id, row.space, row.audience, text)
                              for pid, _, text, row in passages if not is_derived_passage(pid)])
        self.catalog.add([w.row for w in writes],
                         enrich=[w.row.id for w in writes if w.enrich])
        return [None] * len(batches)

    def switch_collection(self, channel: str, target: str) -> None:
        """Make ``target`` the live collection of ``channel`` (built by the configured model)
        and drop the old one. One catalog write: every process sees the switch at once."""
        store = self._vectors
        assert store is not None
        old, _ = store.spec(channel)
        self.catalog.set_meta(f"collection:{channel}", target)
        self.catalog.set_meta(f"model:{channel}", self.models[channel])
        store.attach(channel, target, model=self.models[channel])
        dim = store.collection_dim(channel)
        if dim is not None:
            self.catalog.set_meta(f"dim:{channel}", str(dim))
        if old != target:
            store.drop_collection(old)

    def _record_model(self, channel: str, dim: int) -> None:
        # Once per channel and process: every write batch would otherwise read the catalog.
        if channel in self._recorded:
            return
        self._recorded.add(channel)
        if self.catalog.get_meta(f"model:{channel}") != self.models[channel]:
            self.catalog.set_meta(f"model:{channel}", self.models[channel])
            self.catalog.set_meta(f"dim:{channel}", str(dim))

    async def mark_file(self, space: str, file_sha: str, source: str, items: int) -> None:
        await self.write("recording a file", self.catalog.mark_file, space, file_sha, source,
                         items)

    async def enrich_done(self, writes: Sequence[ItemWrite]) -> None:
        """Second phase: text vectors and keyword passages, then the enriched rows (text,
        stage 2) and their queue entries in one catalog transaction."""
        await self.vectors()

        def work() -> None:
            store = self._vectors
            assert store is not None
            live = self.catalog.live_ids([w.row.id for w in writes])
            todo = [w for w in writes if w.row.id in live]  # forgotten meanwhile: stay so
            passages = [(pid, vec, text, w.row) for w in todo for pid, vec, text in w.passages]
            if passages:
                store.upsert("text", [p[0] for p in passages],
                             np.stack([p[1] for p in passages]),
                             [vector_meta(p[3]) for p in passages],
                             documents=[p[2] for p in passages])
                self._record_model("text", int(passages[0][1].shape[0]))
                self.keyword.add([KeywordDoc(pid, row.id, row.space, row.audience, text)
                                  for pid, _, text, row in passages
                                  if not is_derived_passage(pid)])
                if not self.sole_user:
                    self._drop_forgotten_meanwhile(store, todo)
            self.catalog.finish_enrich([w.row for w in writes])

        await self.write("storing text", work)

    def _drop_forgotten_meanwhile(self, store: VectorStore, writes: Sequence[ItemWrite]) -> None:
        """Another process may have forgotten some of ``writes`` between the look-up and the
        writes just made: it removed the rows first and their vectors and keyword rows after,
        so what it missed was written after its row removal, and one more look-up finds it."""
        ids = [w.row.id for w in writes]
        gone = set(ids) - self.catalog.live_ids(ids)
        if not gone:
            return
        for space in {w.row.space for w in writes if w.row.id in gone}:
            store.delete_items(space, [w.row.id for w in writes
                                       if w.row.id in gone and w.row.space == space])
        self.keyword.delete_items(sorted(gone))
        log.info("dropped the text of %d item(s) forgotten while it was being read", len(gone))

    async def forget(self, space: str, ids: Sequence[str]) -> list[str]:
        """Remove items in the forget order; returns the ids that existed."""
        store = await self.vectors()

        def work() -> list[ItemRow]:
            rows = list(self.catalog.get(space, ids).values())
            if not rows:
                return []
            gone = [r.id for r in rows]
            self.catalog.delete(space, gone)  # first: from now on search cannot show them
            self.catalog.unmark_files(space, [r.file_sha for r in rows])
            store.delete_items(space, gone)
            self.keyword.delete_items(gone)
            return rows

        rows = await self.write("forgetting", work)
        await self._call(self._io, "removing originals", self._drop_blobs, rows)
        gone = [r.id for r in rows]
        # Only now is nothing of them left: until here `pixrag check --repair` drops what an
        # interrupted removal left behind instead of rebuilding the rows from it.
        await self.write("forgetting", self.catalog.clear_forgotten, gone)
        return gone

    async def finish_forgets(self, space: str) -> int:
        """Finish the removals interrupted forgets of ``space`` left: vectors, keyword rows,
        thumbnails and the originals no other item uses. Returns how many items they were."""
        left = [i for i, sp in (await self.read("reading the catalog",
                                                 self.catalog.forgotten)).items()
                if sp == space]
        if not left:
            return 0
        store = await self.vectors()

        def work() -> set[str]:
            shas = self.catalog.forgotten_shas(left)
            store.delete_items(space, left)
            self.keyword.delete_items(left)
            return shas

        shas = await self.write("forgetting", work)

        def drop() -> None:
            for item in left:
                self.blobs.delete_thumbnail(item)
            for sha in shas:
                if not self.catalog.sha_in_use(sha):
                    self.blobs.delete(sha)

        await self._call(self._io, "removing originals", drop)
        await self.write("forgetting", self.catalog.clear_forgotten, left)
        log.info("finished removing %d item(s) an interrupted forget left", len(left))
        return len(left)

    def _drop_blobs(self, rows: list[ItemRow]) -> None:
        for r in rows:
            self.blobs.delete_thumbnail(r.id)
            for sha in {r.file_sha, r.image_sha}:
                if sha and not self.catalog.sha_in_use(sha):
                    self.blobs.delete(sha)

    # reads: every one through a Scope -------------------------------------------------------
    async def rows(self, scope: Scope, ids: Sequence[str]) -> dict[str, ItemRow]:
        got = await self.read("reading items", self.catalog.get, scope.space, list(ids))
        return {i: r for i, r in got.items() if visible(r, scope)}

    async def row(self, scope: Scope, item_id: str) -> ItemRow | None:
        return (await self.rows(scope, [item_id])).get(item_id)

    async def find(self, scope: Scope, **where: str | None) -> list[ItemRow]:
        rows = await self.read("finding items", lambda: self.catalog.find(scope.space, **where))
        return [r for r in rows if visible(r, scope)]

    async def find_prefix(self, scope: Scope, prefix: str) -> list[ItemRow]:
        rows = await self.read("finding items", self.catalog.find_by_source_prefix,
                               scope.space, prefix)
        return [r for r in rows if visible(r, scope)]

    async def query(self, channel: str, vector: np.ndarray, scope: Scope,
                    n: int) -> list[tuple[str, float, str]]:
        """Nearest vectors visible to ``scope``: ``[(item, similarity, document)]``."""
        hits = await self.query_passages(channel, vector, scope, n)
        return [(item, sim, doc) for _id, item, sim, doc in hits]

    async def query_passages(self, channel: str, vector: np.ndarray, scope: Scope,
                             n: int) -> list[tuple[str, str, float, str]]:
        """Like :meth:`query`, with each vector's own id: ``[(id, item, similarity, doc)]``."""
        store = await self.vectors()
        hits = await self.read(f"{channel} search", lambda: store.query(
            channel, vector, space=scope.space, audiences=scope.audiences(), n=n))
        return [(h.id, h.item, h.similarity, h.document or "") for h in hits]

    async def keyword_search(self, scope: Scope, text: str, n: int) -> list[tuple[str, float]]:
        return await self.read("keyword search", lambda: self.keyword.search(
            scope.space, text, n, scope.audiences()))

    async def phashes(self, scope: Scope) -> list[tuple[str, str]]:
        return await self.read("near-duplicate search", self.catalog.phashes, scope.space,
                               scope.audiences())

    async def stored_vectors(self, channel: str, scope: Scope,
                             ids: Sequence[str]) -> dict[str, np.ndarray]:
        store = await self.vectors()
        rows = await self.rows(scope, ids)
        return await self.read("reading vectors", lambda: store.get_vectors(
            channel, space=scope.space, items=list(rows)))

    async def hits(self, rows: Iterable[tuple[ItemRow, float, Mapping[str, float], str]]
                   ) -> list[Hit]:
        """Hits for ``(row, score, signals, snippet)``; blob paths resolved off the loop (a
        remote blob store fetches into its local cache)."""
        items = list(rows)

        def work() -> list[Hit]:
            self.blobs.prefetch([r.image_sha for r, *_ in items if r.image_sha],
                                [r.id for r, *_ in items if r.kind != "chunk"])
            return [row_hit(r, self.blobs, score=s, signals=sig, snippet=snip)
                    for r, s, sig, snip in items]

        return await self._call(self._io, "reading thumbnails", work)

    # state ----------------------------------------------------------------------------------
    async def file_done(self, space: str, file_sha: str) -> str | None:
        return await self.read("reading the catalog", self.catalog.file_done, space, file_sha)

    async def existing(self, space: str, ids: Sequence[str]) -> set[str]:
        return await self.read("reading the catalog", self.catalog.existing, space, list(ids))

    async def has_attachments(self, space: str, attachment_ids: Sequence[str]) -> set[str]:
        return await self.read("reading the catalog", self.catalog.attachments, space,
                               list(attachment_ids))

    async def counts(self, space: str) -> dict[str, int]:
        return await self.read("counting", self.catalog.counts, space)

    async def spaces(self) -> dict[str, int]:
        return await self.read("counting", self.catalog.spaces)

    async def pending(self, space: str | None = None) -> int:
        return await self.read("counting", self.catalog.pending, space)

    async def get_pref(self, space: str, key: str) -> str | None:
        return await self.read("reading a setting", self.catalog.get_pref, space, key)

    async def set_pref(self, space: str, key: str, value: str | None) -> None:
        await self.write("saving a setting", self.catalog.set_pref, space, key, value)

    async def prefs_like(self, space: str, prefix: str) -> dict[str, str]:
        return await self.read("reading settings", self.catalog.prefs_like, space, prefix)

    async def caption(self, sha: str, model: str) -> str | None:
        return await self.read("reading captions", self.catalog.caption, sha, model)

    async def put_caption(self, sha: str, model: str, text: str) -> None:
        await self.write("saving a caption", self.catalog.put_caption, sha, model, text)

    async def uncaptioned(self, space: str, model: str) -> list[str]:
        return await self.read("reading captions", self.catalog.uncaptioned, space, model)

    async def requeue(self, space: str, ids: Sequence[str]) -> None:
        await self.write("updating the queue", self.catalog.requeue, space, list(ids))

    async def add_feedback(self, space: str, platform: str, user: str, question: str,
                           verdict: str, sources: Sequence[dict[str, Any]]) -> None:
        await self.write("saving feedback", self.catalog.add_feedback, space, platform, user,
                         question, verdict, list(sources))

    async def feedback(self, space: str | None) -> list[dict[str, Any]]:
        return await self.read("reading feedback", self.catalog.feedback, space)

    async def claim_enrich(self, limit: int, lease_s: float, max_attempts: int
                           ) -> list[ItemRow]:
        if self.sole_user:
            await self.vectors()  # needed for the text anyway; frees a killed run's leases
        return await self.write("reading the queue", self.catalog.claim_enrich, limit, lease_s,
                                max_attempts)

    async def fail_enrich(self, item_id: str, error: str) -> None:
        await self.write("updating the queue", self.catalog.fail_enrich, item_id, error)

    async def renew_enrich(self, ids: Sequence[str], lease_s: float) -> None:
        await self.write("updating the queue", self.catalog.renew_enrich, ids, lease_s)

    async def release_enrich(self, ids: Sequence[str]) -> None:
        await self.write("updating the queue", self.catalog.release_enrich, ids)

    async def blob_bytes(self, sha: str) -> bytes:
        """Original bytes (read lazily, one at a time: re-indexing streams from here)."""
        def read() -> bytes:
            try:
                return self.blobs.read(sha)
            except FileNotFoundError:
                raise StoreError(f"original {sha[:12]} is missing from the blob store") from None
            except StoreError:
                if not self.blobs.has(sha):
                    raise StoreError(
                        f"original {sha[:12]} is missing from the blob store") from None
                raise
        return await self._call(self._io, "reading an original", read)

    async def vector_records(self, channel: str, **kwargs: Any) -> list[VectorRecord]:
        store = await self.vectors()
        return await self.read("reading vectors", lambda: store.records(channel, **kwargs))

    @property
    def location(self) -> str:
        return self._vectors.location if self._vectors is not None else ""


def _import_chroma() -> None:
    import chromadb  # noqa: F401


def row_hit(row: ItemRow, blobs: BlobPart, *, score: float = 0.0,
            signals: Mapping[str, float] | None = None, snippet: str = "") -> Hit:
    """The Hit for a catalog row: thumbnail and original resolved to local paths."""
    thumb = blobs.thumbnail_path(row.id) if row.kind != "chunk" else None
    return Hit(
        id=row.id, source=row.source, kind=row.kind,  # type: ignore[arg-type]
        score=score, page=row.page if row.kind == "page" else None,
        thumbnail=str(thumb) if thumb is not None else None,
        signals=dict(signals or {}), text=snippet or row.text[:1500], name=row.name,
        origin=row_origin(row),
        blob=str(blobs.path(row.image_sha)) if row.image_sha else None,
    )


def row_origin(row: ItemRow) -> Origin:
    return Origin(platform=row.platform, channel=row.channel, message=row.message,
                  attachment=row.attachment, author=row.author, private=row.private,
                  link=row.link)


def _missing_folder(model: str) -> bool:
    """Whether ``model`` is written as a local path (a Hub id is ``org/name``) that is not
    there."""
    if not model.startswith(("/", "./", "../", "~")):
        return False
    return not Path(model).expanduser().exists()
