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
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from core.errors import PixragError, public_message
from core.service import PixRAG
from core.types import Upload

log = logging.getLogger(__name__)

STATE_PREFIX = "backfill:"
LEASE_PREFIX = "backfill-lease:"
LEASE_S = 180.0  # a lease not renewed for this long belongs to a process that is gone
LEASE_RENEW_S = 30.0
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
        self.lease: Lease | None = None  # set by Backfills.start
        self.on_end: Callable[[], None] | None = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def run(self) -> Progress:
        try:
            return await self._run()
        finally:
            await self._end()

    async def _end(self) -> None:
        """Free the channel for the next run: before the final report, so that whoever reads
        "finished" can start again at once."""
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()
        lease, self.lease = self.lease, None
        if lease is not None:
            await lease.release()

    async def _run(self) -> Progress:
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
        await self._end()
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
        except Exception:  # a bug, but one file of thousands must not end the run
            log.exception("backfill in %s: unexpected error on %s", self.space, cand.name)
            self._fail(cand.name, "an unexpected error (it has been logged)")
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
        if self.lease is not None:
            await self.lease.renew()
        now = time.monotonic()
        if now - self._last_report < self.report_every:
            return
        self._last_report = now
        try:
            await self._report(self.progress)
        except Exception as exc:  # a failed progress edit must not stop the run
            log.warning("backfill progress update failed: %s", exc)


class Lease:
    """"This process is backfilling that channel", kept in the catalog so that bot processes
    sharing one catalog do not run the same backfill twice. A run renews it as it goes; one
    not renewed for ``LEASE_S`` (its process died) no longer counts."""

    def __init__(self, service: PixRAG, space: str, channel: str, owner: str) -> None:
        self.service = service
        self.space = space
        self.key = LEASE_PREFIX + channel
        self.owner = owner
        self._renewed = 0.0

    async def held_elsewhere(self) -> bool:
        stored = await self.service.get_state(self.space, self.key)
        try:
            data = json.loads(stored) if stored else {}
            return data.get("owner") != self.owner and time.time() - float(data["at"]) < LEASE_S
        except (ValueError, KeyError, TypeError, AttributeError):
            return False

    async def renew(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._renewed >= LEASE_RENEW_S:
            self._renewed = now
            await self.service.set_state(
                self.space, self.key, json.dumps({"owner": self.owner, "at": time.time()}))

    async def release(self) -> None:
        if not await self.held_elsewhere():
            await self.service.set_state(self.space, self.key, None)


class Backfills:
    """The runs of one bot process: at most one per (space, channel), here or in any other
    process sharing the catalog (see :class:`Lease`)."""

    def __init__(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._runs: dict[tuple[str, str], tuple[Backfill, asyncio.Task[Progress]]] = {}
        self._reserved: dict[tuple[str, str], Lease] = {}

    def running(self, space: str, channel: str) -> Backfill | None:
        entry = self._runs.get((space, channel))
        return entry[0] if entry else None

    async def reserve(self, service: PixRAG, space: str, channel: str) -> bool:
        """Claim ``channel`` for a run; False when a backfill of it is already running.
        Follow with :meth:`start`, or :meth:`release` if the run cannot begin after all."""
        key = (space, channel)
        if key in self._runs or key in self._reserved:
            return False
        lease = Lease(service, space, channel, self.owner)
        self._reserved[key] = lease  # before any await: a second command here sees it
        try:
            if await lease.held_elsewhere():
                del self._reserved[key]
                return False
            await lease.renew(force=True)
        except BaseException:
            self._reserved.pop(key, None)
            raise
        return True

    async def release(self, space: str, channel: str) -> None:
        lease = self._reserved.pop((space, channel), None)
        if lease is not None:
            await lease.release()

    def start(self, space: str, channel: str, run: Backfill) -> asyncio.Task[Progress]:
        """Run ``run`` in the background (after :meth:`reserve`)."""
        key = (space, channel)
        run.lease = self._reserved.pop(key)
        task = asyncio.create_task(run.run(), name=f"pixrag-backfill:{space}:{channel}")
        self._runs[key] = (run, task)

        def ended() -> None:
            self._runs.pop(key, None)

        run.on_end = ended
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
