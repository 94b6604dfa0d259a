"""What every Discord handler needs, built once by the bot and handed down.

Handlers take a :class:`Deps`, never the bot class, so imports point one way:
``app -> commands/events/views -> replies -> render/convert/download -> deps``.
"""

from __future__ import annotations

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
