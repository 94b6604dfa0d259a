"""What every Discord handler needs, built once by the bot and handed down.

Handlers take a :class:`Deps`, never the bot class, so imports point one way:
``app -> commands/events/views -> replies -> render/convert/download -> deps``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import discord

from bot.backfill import Backfills
from bot.discord.shown import ShownMemory
from core.config import Settings
from core.errors import RateLimited
from core.ratelimit import RateLimiter
from core.service import PixRAG

log = logging.getLogger(__name__)

AUTOINDEX_TTL_S = 60.0  # other bot processes may change the channel list: re-read it this often
STREAM_EDIT_INTERVAL_S = 1.5  # Discord rate-limits message edits; one edit per 1.5 s is safe
#: How long a stopping bot lets requests in hand finish (replies sent, uploads indexed and
#: marked) before it cancels them: within the 10 s ``docker stop`` waits before SIGKILL.
DRAIN_S = 5.0


@dataclass
class Deps:
    service: PixRAG
    settings: Settings
    shown: ShownMemory = field(default_factory=ShownMemory)
    stream_interval: float = STREAM_EDIT_INTERVAL_S
    backfills: Backfills = field(default_factory=Backfills)
    limiter: RateLimiter = field(init=False)
    autoindex_limiter: RateLimiter = field(init=False)
    _autoindex: dict[str, tuple[float, set[str]]] = field(default_factory=dict, init=False)
    #: Handler tasks at work (commands, buttons, auto-index), so a stop can let them finish.
    _work: dict[asyncio.Task[object], discord.Interaction | None] = field(
        default_factory=dict, init=False)
    closing: bool = field(default=False, init=False)
    drain_s: float = DRAIN_S

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.discord.rate_per_minute)
        # Per channel: a flood of posts in one channel must not monopolise indexing.
        self.autoindex_limiter = RateLimiter(self.settings.discord.autoindex_per_minute)

    @property
    def rate_per_minute(self) -> int:
        return self.settings.discord.rate_per_minute

    def check_rate(self, interaction: discord.Interaction) -> None:
        """RateLimited (shown to the user) when this user asked too often this minute."""
        self.limiter.check(str(interaction.user.id))

    def autoindex_allowed(self, space: str, channel: str) -> bool:
        """One more auto-indexed message in ``channel`` this minute? (False: skip it.)"""
        try:
            self.autoindex_limiter.check(f"{space}:{channel}")
        except RateLimited:
            return False
        return True

    def track(self, interaction: discord.Interaction | None = None) -> None:
        """Count the running handler (answering ``interaction``, if any) as work in hand
        until it ends (see :meth:`drain`)."""
        task = asyncio.current_task()
        if task is not None and task not in self._work:
            self._work[task] = interaction
            task.add_done_callback(lambda t: self._work.pop(t, None))

    async def drain(self) -> list[discord.Interaction]:
        """Stop taking new work, let the work in hand finish for up to ``drain_s``, then
        cancel the rest; returns the interactions of what was cancelled (still to be told).
        Called before the connection closes: a handler that outlived it would fail on the
        closed session (no reply, no mark, an error in the log)."""
        self.closing = True
        work = {t: i for t, i in self._work.items() if t is not asyncio.current_task()}
        if not work:
            return []
        grace_s = self.drain_s
        log.info("stopping: waiting up to %.0f s for %d request(s) in hand", grace_s, len(work))
        _, late = await asyncio.wait(work, timeout=grace_s)
        if not late:
            return []
        for task in late:
            task.cancel()
        log.warning("stopping: cancelled %d request(s) still running after %.0f s",
                    len(late), grace_s)
        await asyncio.wait(late, timeout=grace_s)
        return [i for t, i in work.items() if t in late and i is not None]

    async def autoindex_channels(self, space: str) -> set[str]:
        cached = self._autoindex.get(space)
        now = time.monotonic()
        if cached is not None and now - cached[0] < AUTOINDEX_TTL_S:
            return cached[1]
        channels = set(await self.service.autoindex_channels(space))
        self._autoindex[space] = (now, channels)
        return channels

    async def set_autoindex(self, space: str, channel: str, on: bool) -> None:
        await self.service.set_autoindex(space, channel, on)
        self._autoindex.pop(space, None)


class HasDeps(Protocol):
    """The client behind an interaction (the bot) carries the handlers' dependencies."""

    deps: Deps
