"""Ingestion, phase 2: OCR where there is text, captions, text passages, text vectors and
keyword rows, for items phase 1 already made findable.

Work comes from a durable queue in the catalog (written in the same transaction as the item's
row), so it survives a crash and resumes; a lease lets another process take over an item whose
worker died. The worker yields to queries: while any search is running it waits, so people
asking questions never queue behind OCR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from PIL import Image

from core.components import Components
from core.errors import DiskFull, PixragError, StoreBusy, StoreError
from core.glossary import annotated_passages
from core.library.catalog import ItemRow
from core.library.library import ItemWrite
from core.media.chunking import split_passages
from core.media.imageio import Limits, load_image, to_jpeg
from core.types import caption_passage_id

log = logging.getLogger(__name__)

WORK_SIDE = 2048  # OCR needs detail: decode originals at most this large
BATCH = 8
#: A claimed batch is leased for this long and the lease renewed every third of it while the
#: work goes on: a worker that dies (kill -9, a lost host) holds its items at most this long,
#: and one that stops cleanly gives them back at once.
LEASE_S = 60.0
MAX_ATTEMPTS = 3
CAPTION_CONCURRENCY = 4
MAX_NOTED = 10_000

TextProgress = Callable[[int, int], None]


class QueryGate:
    """Counts running queries; background work waits while there are any, and for a moment
    after the last one: people often ask again at once (a search, then an ask), and OCR that
    started in the gap would take a core from the next question."""

    QUIET_S = 0.3

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_end = -1e9

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            self._last_end = asyncio.get_running_loop().time()
            if self._running == 0:
                self._idle.set()

    async def wait_idle(self, max_wait_s: float = 5.0) -> None:
        """Wait for no running query and a quiet moment, but not forever: a steady stream of
        questions must not starve indexing completely."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            if not self._idle.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._idle.wait()
                continue
            quiet = self._last_end + self.QUIET_S - loop.time()
            if quiet <= 0:
                return
            await asyncio.sleep(min(quiet, left))


class Enricher:
    def __init__(self, c: Components, gate: QueryGate) -> None:
        self.c = c
        self.s = c.settings
        self.lib = c.library
        self.gate = gate
        self.limits = Limits.from_settings(self.s.index)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._progress = asyncio.Condition()
        self.done = 0
        self._claimed: list[str] = []  # the batch in hand, leased to this worker
        self._captions: dict[str, asyncio.Future[str]] = {}
        # Why an item has no caption (item id -> reason), for the index report's warnings;
        # the durable record is the caption cache itself (``pixrag stats``, --recaption).
        self.caption_failures: dict[str, str] = {}
        # A local VLM server serves a few requests at a time; many items in flight must not
        # become as many concurrent caption requests.
        self._caption_slots = asyncio.Semaphore(CAPTION_CONCURRENCY)

    def kick(self) -> None:
        """New work was queued: make sure a worker runs."""
        if self._closing:
            return
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="pixrag-enrich")

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                n = await self.step()
            except StoreBusy as exc:  # another process has the store: no retry helps here
                log.warning("text enrichment stopped: %s", exc)
                return
            except (StoreError, DiskFull) as exc:
                log.error("text enrichment paused: %s", exc)
                n = 0
                await asyncio.sleep(5)
            async with self._progress:
                self._progress.notify_all()
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await self._wake.wait()
                if self._closing:
                    return
                if not self._wake.is_set() and await self.lib.pending() == 0:
                    return  # nothing left: kick() starts a new worker for new work

    async def step(self) -> int:
        """Enrich one batch from the queue; returns how many items it took."""
        await self.gate.wait_idle()
        rows = await self.lib.claim_enrich(BATCH, LEASE_S, MAX_ATTEMPTS)
        if not rows:
            return 0
        self._claimed = [r.id for r in rows]
        renew = asyncio.get_running_loop().create_task(self._renew(self._claimed))
        try:
            results = await asyncio.gather(*(self._one(r) for r in rows),
                                           return_exceptions=True)
        finally:
            renew.cancel()
        writes: list[ItemWrite] = []
        for row, res in zip(rows, results, strict=True):
            if isinstance(res, (StoreError, DiskFull)):
                raise res
            if isinstance(res, BaseException):
                reason = str(res) if isinstance(res, PixragError) else type(res).__name__
                if not isinstance(res, PixragError):
                    log.error("text enrichment of %s failed", row.source, exc_info=res)
                await self.lib.fail_enrich(row.id, reason)
                continue
            writes.append(res)
        if writes:
            await self.lib.enrich_done(writes)
        self._claimed = []
        self.done += len(rows)
        return len(rows)

    async def _renew(self, ids: list[str]) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            try:
                await self.lib.renew_enrich(ids, LEASE_S)
            except (StoreError, DiskFull) as exc:  # the work itself will meet the store error
                log.debug("could not renew the text queue's lease: %s", exc)

    async def _one(self, row: ItemRow) -> ItemWrite:
        texts: list[str] = []
        image: Image.Image | None = None
        if row.text.strip():  # a PDF text layer, or text read before (re-captioning)
            texts.append(row.text.strip())
        need_image = (not texts and self.s.index.ocr) or self._captions_on
        if need_image and row.image_sha:
            data = await self.lib.blob_bytes(row.image_sha)
            image = (await self.c.run(self.c.pools.decode, lambda: load_image(
                data, row.name, self.limits, max_side=WORK_SIDE))).image
        if image is not None and not texts and self.s.index.ocr:
            reader = await self.c.reader()
            if reader is not None:
                # Per item, not only per batch: an OCR read holds a core for up to a second.
                await self.gate.wait_idle()
                ocr = (await self.c.run(self.c.pools.ocr, reader.read, image)).strip()
                if ocr:
                    texts.append(ocr)
        caption = ""
        if image is not None and row.image_sha:
            caption = await self._caption(row, image)
        max_chars = self.s.text.passage_chars
        pieces = [(f"{row.id}#{i}", p.text) for i, p in enumerate(
            p for t in texts for p in split_passages(t, max_chars=max_chars))]
        if self.s.text.glossary and texts:  # hundreds of regexes per line: off the loop
            pieces += await self.c.run(self.c.pools.decode, annotated_passages,
                                       await self.c.glossary(), row.id,
                                       "\n".join(texts), max_chars)
        # Captions are passages of their own (a signal retrieval weighs separately).
        pieces += [(caption_passage_id(row.id, i), p.text)
                   for i, p in enumerate(split_passages(caption, max_chars=max_chars))]
        vecs = await self.c.text_vectors.submit_many([t for _, t in pieces])
        passages = [(pid, v, t) for (pid, t), v in zip(pieces, vecs, strict=True)]
        text = "\n".join([*texts, caption] if caption and caption not in texts else texts)
        return ItemWrite(row=replace(row, text=text, stage=2), passages=passages)

    @property
    def _captions_on(self) -> bool:
        return self.s.index.captions and self.c.captioner is not None

    async def _caption(self, row: ItemRow, image: Image.Image) -> str:
        if not self._captions_on:
            return ""
        assert row.image_sha
        running = self._captions.get(row.image_sha)
        if running is not None:  # the same image is being captioned right now
            text = await asyncio.shield(running)
        else:
            fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._captions[row.image_sha] = fut
            text = ""
            try:
                text = await self._caption_once(row, image)
            finally:
                del self._captions[row.image_sha]
                fut.set_result(text)
        if not text:
            self._note_failure(row.id, "caption failed (the model gave no caption)")
        return text

    def _note_failure(self, item_id: str, reason: str) -> None:
        self.caption_failures.setdefault(item_id, reason)
        while len(self.caption_failures) > MAX_NOTED:  # bots never read them: stay bounded
            del self.caption_failures[next(iter(self.caption_failures))]

    async def _caption_once(self, row: ItemRow, image: Image.Image) -> str:
        captioner = self.c.captioner
        assert captioner is not None and row.image_sha
        model = captioner.model_id
        cached = await self.lib.caption(row.image_sha, model)
        if cached is not None:
            return cached
        jpeg = await self.c.run(self.c.pools.decode, to_jpeg, image, 1024)
        try:
            async with self._caption_slots:
                text, _usage = await captioner.caption(jpeg)
        except PixragError as exc:  # captions are optional: index without one
            log.warning("caption failed for %s: %s", row.image_sha[:12], exc)
            self._note_failure(row.id, f"caption failed: {exc}")
            return ""
        if not text.strip():
            return ""
        self.caption_failures.pop(row.id, None)
        await self.lib.put_caption(row.image_sha, model, text)
        return text

    async def wait_for(self, ids: Sequence[str], progress: TextProgress | None = None) -> None:
        """Work until none of ``ids`` is waiting for text (failed ones count as done once
        they ran out of attempts)."""
        ids = list(ids)
        total = len(ids)
        while True:
            waiting = await self.lib.read("reading the queue",
                                          self.lib.catalog.pending_ids, ids)
            if waiting:
                failed = {i for i, _ in await self.lib.read(
                    "reading the queue", self.lib.catalog.enrich_failures, MAX_ATTEMPTS)}
                waiting -= failed
            if progress is not None:
                progress(total - len(waiting), total)
            if not waiting:
                return
            if self.lib.sole_user:
                # The work needs the embedded vector store: when another process has it open,
                # say so now (the worker would retry every few seconds, for ever).
                await self.lib.vectors()
            ids = list(waiting)
            self.kick()
            async with self._progress:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._progress.wait()

    async def aclose(self) -> None:
        # The flag and the wake-up end the worker even if the cancellation below is lost (a
        # cancel that arrives as an awaited result does can be swallowed by library code): a
        # lost one used to leave close waiting out the worker's 30 s idle wait.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._claimed:
            # Stopped mid-batch (Ctrl-C, --no-wait, a bot shutting down): the next run takes
            # these at once instead of waiting out the lease.
            claimed, self._claimed = self._claimed, []
            try:
                async with asyncio.timeout(5):
                    await self.lib.release_enrich(claimed)
            except (TimeoutError, StoreError, DiskFull) as exc:
                log.debug("could not give the text queue's items back: %s", exc)
