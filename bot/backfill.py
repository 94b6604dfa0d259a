"""Backfill: index the files a channel already holds, page by page, for either platform.

A platform walks its history and yields :class:`Page`s of :class:`Candidate` files (nothing
downloaded yet); this runner does the rest the same way for Discord and Slack:

- idempotent: candidates whose attachment / file id already has items are skipped by id,
  before any download; identical bytes under a new id are skipped by core (content hash);
- resumable: once every file of a page is handled, the page's cursor is stored in the catalog
  under ``backfill:<stream>`` (a channel or a thread); a later run starts from there;
- gentle: a few files at a time (``workers``), each indexed through the same
  ``index_uploads`` path as live uploads, so live questions keep their share of the machine;
- observable: a progress callback, at most every ``report_every`` seconds, and a last one;
- cancellable: :meth:`Backfill.cancel` stops after the files in hand; the cursor stays at the
  last finished page (files done since are skipped by id next time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from core.errors import PixragError, public_message
from core.service import PixRAG
from core.types import Upload

log = logging.getLogger(__name__)

STATE_PREFIX = "backfill:"
WORKERS = 2  # files in flight per run: enough to overlap a download with indexing, no more
REPORT_EVERY_S = 3.0  # progress edits: chat edits are rate limited (Slack ~1/s, Discord 5/5s)
MAX_REASONS = 20  # failures kept with their reasons for the summary


@dataclass(frozen=True)
class Candidate:
    """One file seen in history. ``fetch`` downloads it and builds the Upload (with the same
    Origin as a live upload); it raises PixragError (safe to show) when it cannot."""

    attachment: str
    name: str
    fetch: Callable[[], Awaitable[Upload]]


@dataclass
class Page:
    """What one history request found. ``cursor`` is stored under ``stream`` once every
    candidate is handled; ``position`` (0..1) says how far through the history it is."""

    stream: str
    cursor: str
    candidates: list[Candidate] = field(default_factory=list)
    position: float | None = None


@dataclass
class Progress:
    found: int = 0  # files seen so far
    indexed: int = 0  # newly indexed
    already: int = 0  # indexed before (by id or identical content)
    failed: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    estimate: int | None = None  # ~files in the whole history
    finished: bool = False
    cancelled: bool = False
    error: str | None = None  # why the run stopped early (safe to show)
    resumed: bool = False

    @property
    def done(self) -> int:
        return self.indexed + self.already + self.failed

    @property
    def total(self) -> int:
        """The figure after "of ~": the estimate, never less than what is already known."""
        return max(self.estimate or 0, self.found)


class Cursors:
    """Read access to stored cursors for a walker (which streams were already walked)."""

    def __init__(self, service: PixRAG, space: str) -> None:
        self.service = service
        self.space = space

    async def get(self, stream: str) -> str | None:
        return await self.service.get_state(self.space, STATE_PREFIX + stream)

    async def set(self, stream: str, value: str | None) -> None:
        await self.service.set_state(self.space, STATE_PREFIX + stream, value)


Walker = Callable[[Cursors], AsyncIterator[Page]]
Reporter = Callable[[Progress], Awaitable[None]]


class Backfill:
    def __init__(
        self,
        service: PixRAG,
        space: str,
        walk: Walker,
        report: Reporter,
        *,
        workers: int | None = None,
        report_every: float | None = None,
    ) -> None:
        self.service = service
        self.space = space
        self.cursors = Cursors(service, space)
        self._walk = walk
        self._report = report
        self.workers = max(1, WORKERS if workers is None else workers)
        self.report_every = REPORT_EVERY_S if report_every is None else report_every
        self.progress = Progress()
        self._cancel = asyncio.Event()
        self._last_report = 0.0

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def run(self) -> Progress:
        p = self.progress
        try:
            async with contextlib.aclosing(self._walk(self.cursors)) as pages:
                async for page in pages:
                    if self.cancelled:
                        break
                    await self._page(page)
                    if self.cancelled:
                        break  # the page was cut short: its cursor is not stored
                    await self.cursors.set(page.stream, page.cursor)
                    await self._maybe_report()
                else:
                    p.finished = not self.cancelled
        except PixragError as exc:
            p.error = public_message(exc) or str(exc)
            log.warning("backfill in %s stopped: %s", self.space, exc)
        except Exception:  # a bug: the summary says so, the log has the traceback
            log.exception("backfill in %s failed", self.space)
            p.error = "an unexpected error (it has been logged)"
        p.cancelled = self.cancelled and not p.finished
        log.info("backfill in %s: %d indexed, %d already, %d failed, finished=%s",
                 self.space, p.indexed, p.already, p.failed, p.finished)
        await self._report(p)
        return p

    async def _page(self, page: Page) -> None:
        p = self.progress
        p.found += len(page.candidates)
        if page.position and page.position >= 0.02:
            p.estimate = round(p.found / min(1.0, page.position))
        known = await self.service.has_attachments(
            self.space, [c.attachment for c in page.candidates])
        p.already += sum(1 for c in page.candidates if c.attachment in known)
        queue = [c for c in page.candidates if c.attachment not in known]
        queue.reverse()  # pop() from the end keeps history order

        async def worker() -> None:
            while queue and not self.cancelled:
                await self._one(queue.pop())
                await self._maybe_report()

        await asyncio.gather(*(worker() for _ in range(min(self.workers, len(queue)))))

    async def _one(self, cand: Candidate) -> None:
        p = self.progress
        try:
            upload = await cand.fetch()
            report = await self.service.index_uploads([upload], self.space)
        except PixragError as exc:
            self._fail(cand.name, public_message(exc) or type(exc).__name__)
            return
        if report.failed:
            self._fail(cand.name, report.failed[0].error)
        elif report.indexed:
            p.indexed += 1
        else:
            p.already += 1  # identical bytes under another id, or nothing to index

    def _fail(self, name: str, reason: str) -> None:
        p = self.progress
        p.failed += 1
        if len(p.reasons) < MAX_REASONS:
            p.reasons.append((name, reason))
        log.info("backfill in %s: %s failed: %s", self.space, name, reason)

    async def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_report < self.report_every:
            return
        self._last_report = now
        try:
            await self._report(self.progress)
        except Exception as exc:  # a failed progress edit must not stop the run
            log.warning("backfill progress update failed: %s", exc)


class Backfills:
    """The runs in progress of one bot process: at most one per (space, channel)."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], tuple[Backfill, asyncio.Task[Progress]]] = {}

    def running(self, space: str, channel: str) -> Backfill | None:
        entry = self._runs.get((space, channel))
        return entry[0] if entry else None

    def start(self, space: str, channel: str, run: Backfill) -> asyncio.Task[Progress] | None:
        """Start ``run`` in the background; None when this channel already has one."""
        key = (space, channel)
        if key in self._runs:
            return None
        task = asyncio.create_task(run.run(), name=f"pixrag-backfill:{space}:{channel}")
        self._runs[key] = (run, task)
        task.add_done_callback(lambda _: self._runs.pop(key, None))
        return task

    def cancel(self, space: str, channel: str) -> bool:
        run = self.running(space, channel)
        if run is None:
            return False
        run.cancel()
        return True

    async def aclose(self) -> None:
        """Stop every run now (shutdown): cursors stay at each run's last finished page."""
        tasks = [task for _, task in self._runs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
