"""Chat messages and files deleted recently, so uploads still in flight for them are dropped.

A message can be deleted while its attachments are being downloaded or indexed: the
platform's delete event then finds nothing in the catalog yet, and the items committed a
moment later would outlive the message. :meth:`PixRAG.forget_origin` records each deletion
here *before* it reads the catalog, and ``index_uploads`` checks its uploads against the
record after committing them, so whichever finishes last removes the items.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from core.types import Origin

#: Long enough for any upload in flight (downloads give up after two minutes, an index run
#: of one message takes seconds); short enough that the record stays small.
KEEP_S = 600.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Deletion:
    space: str
    message: str | None
    attachment: str | None
    channel: str | None
    keep: frozenset[str]

    def covers(self, space: str, origin: Origin) -> bool:
        """Does this deletion take an item of ``space`` from ``origin`` along (the same
        rule as the catalog query forget_origin runs)?"""
        return (
            space == self.space
            and (self.message is None or origin.message == self.message)
            and (self.attachment is None or origin.attachment == self.attachment)
            and (self.channel is None or origin.channel == self.channel)
            and origin.attachment not in self.keep
        )


class RecentDeletions:
    """A bounded, time-limited record of platform deletions (one process's memory)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: deque[tuple[float, Deletion]] = deque()

    def record(self, space: str, *, message: str | None, attachment: str | None,
               channel: str | None, keep: Collection[str] = ()) -> None:
        self._prune()
        self._entries.append((self._clock(), Deletion(space, message, attachment, channel,
                                                      frozenset(keep))))
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popleft()

    def covers(self, space: str, origin: Origin) -> bool:
        """Was a message or file this item comes from deleted lately? Local files (no
        message and no attachment) never are."""
        if not origin.message and not origin.attachment:
            return False
        self._prune()
        return any(d.covers(space, origin) for _, d in self._entries)

    def _prune(self) -> None:
        cutoff = self._clock() - KEEP_S
        while self._entries and self._entries[0][0] < cutoff:
            self._entries.popleft()
