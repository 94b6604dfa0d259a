"""One process-wide budget for uploads in flight: how many files and how many bytes.

Chat adapters take a ticket *before* downloading attachments and hold it until indexing
has finished with the bytes, so a flood of uploads waits here instead of filling memory.
Waiters are served strictly in arrival order (a large request is not starved by a stream
of small ones), except that a user's question (``urgent``: the image of a reverse search or
of a question, someone waiting for the answer) goes ahead of the uploads queued for indexing,
so a flood of uploads delays it by the files in flight only. A request larger than the whole
budget is clamped to it, so it runs alone rather than never.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """What one admitted request holds; released exactly once."""

    files: int
    nbytes: int
    _owner: Admission | None = field(default=None, repr=False)

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._give_back(self.files, self.nbytes)


@dataclass
class _Waiter:
    files: int
    nbytes: int
    future: asyncio.Future[None]
    urgent: bool = False


class Admission:
    """A fair (FIFO) async semaphore over two resources: files and bytes."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        if max_files < 1 or max_bytes < 1:
            raise ValueError("admission budget must allow at least one file and one byte")
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._files = 0
        self._bytes = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def files_in_flight(self) -> int:
        return self._files

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _clamp(self, files: int, nbytes: int) -> tuple[int, int]:
        return max(1, min(files, self.max_files)), max(0, min(nbytes, self.max_bytes))

    def _fits(self, files: int, nbytes: int) -> bool:
        return self._files + files <= self.max_files and self._bytes + nbytes <= self.max_bytes

    async def acquire(self, files: int, nbytes: int, *, urgent: bool = False) -> Ticket:
        """Wait until ``files`` files of ``nbytes`` bytes in total may be in flight.
        ``urgent``: someone waits for the answer; queue ahead of the non-urgent waiters."""
        files, nbytes = self._clamp(files, nbytes)
        ahead = [w for w in self._waiters if w.urgent] if urgent else self._waiters
        if not ahead and self._fits(files, nbytes):
            self._files += files
            self._bytes += nbytes
            return Ticket(files, nbytes, self)
        waiter = _Waiter(files, nbytes, asyncio.get_running_loop().create_future(), urgent)
        if urgent:
            # Behind the other urgent ones (FIFO among questions), ahead of every upload.
            self._waiters.insert(len(ahead), waiter)
        else:
            self._waiters.append(waiter)
        log.debug("admission: waiting for %d file(s), %d byte(s) (%d queued)",
                  files, nbytes, len(self._waiters))
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted just as we were cancelled: hand the budget on.
                self._give_back(files, nbytes)
            else:
                self._waiters.remove(waiter)
                self._wake()  # the head may have changed: others behind it may fit now
            raise
        return Ticket(files, nbytes, self)

    @asynccontextmanager
    async def admit(self, files: int, nbytes: int, *, urgent: bool = False
                    ) -> AsyncIterator[Ticket]:
        """``async with admission.admit(n, size):`` hold the budget for the block."""
        ticket = await self.acquire(files, nbytes, urgent=urgent)
        try:
            yield ticket
        finally:
            ticket.release()

    def _give_back(self, files: int, nbytes: int) -> None:
        self._files -= files
        self._bytes -= nbytes
        self._wake()

    def _wake(self) -> None:
        # Strict FIFO: stop at the first waiter that does not fit, even if later ones would.
        while self._waiters and self._fits(self._waiters[0].files, self._waiters[0].nbytes):
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            self._files += waiter.files
            self._bytes += waiter.nbytes
            waiter.future.set_result(None)
