"""The Discord bot: one ``Bot`` subclass wired with its dependencies, and the entry points.

Command sync is deliberate (``pixrag discord --sync`` or ``[discord] sync = true``), done in
``setup_hook`` before the gateway connects, never in ``on_ready`` and never by default.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import discord
from discord.ext import commands

from bot.backfill import Backfills
from bot.discord import backfill, failure, views
from bot.discord import commands as pixrag_commands
from bot.discord.events import IndexEvents
from core.config import Secrets, Settings
from core.errors import ConfigError
from core.ratelimit import RateLimiter
from core.service import PixRAG

log = logging.getLogger(__name__)

AUTOINDEX_TTL_S = 60.0  # other bot processes may change the channel list: re-read it this often
STREAM_EDIT_INTERVAL_S = 1.5  # Discord rate-limits message edits; one edit per 1.5 s is safe


def intents_for(settings: Settings) -> discord.Intents:
    intents = discord.Intents.default()  # guilds (channel privacy), messages, no members
    # Privileged: without it guild messages arrive without attachments, so auto-index is blind.
    intents.message_content = settings.discord.message_content
    return intents


class PixragBot(commands.Bot):
    def __init__(self, service: PixRAG, settings: Settings, *, sync: bool = False) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # no text commands: slash commands only
            intents=intents_for(settings),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.service = service
        self.settings = settings
        self.sync_commands = sync
        self.rate_per_minute = settings.discord.rate_per_minute
        self.limiter = RateLimiter(settings.discord.rate_per_minute)
        self.shown = views.ShownMemory()
        self.stream_interval = STREAM_EDIT_INTERVAL_S
        self._autoindex: dict[str, tuple[float, set[str]]] = {}
        self.backfills = Backfills()

    async def setup_hook(self) -> None:
        await self.add_cog(pixrag_commands.PixragCommands(self))
        await self.add_cog(IndexEvents(self))
        self.add_dynamic_items(views.FeedbackButton, views.MoreButton, backfill.CancelButton)
        self.tree.error(failure.handle)
        if self.sync_commands:
            await self.sync_tree()

    async def sync_tree(self) -> None:
        guild_id = self.settings.discord.sync_guild
        if guild_id:
            guild = discord.Object(id=int(guild_id))
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global command(s) (may take up to an hour to appear)", len(synced))

    async def close(self) -> None:
        await self.backfills.aclose()  # each run's cursor stays at its last finished page
        await super().close()

    async def on_ready(self) -> None:
        log.info(
            "Discord bot ready as %s (%s) in %d guild(s)",
            self.user,
            getattr(self.user, "id", "?"),
            len(self.guilds),
        )

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # Gateway listeners (auto-index, deletes, edits): no user to answer, so log the
        # event with what it was about (message, channel and guild ids are in the reprs).
        log.exception("unexpected error in %s (args=%r)", event_method, args)

    def check_rate(self, interaction: discord.Interaction) -> None:
        self.limiter.check(str(interaction.user.id))

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

    async def on_feedback(
        self, interaction: discord.Interaction, verdict: Literal["up", "down"], token: str
    ) -> None:
        await pixrag_commands.record_feedback(self, interaction, verdict, token)

    async def on_more_like(self, interaction: discord.Interaction, item_id: str) -> None:
        await pixrag_commands.more_like(self, interaction, item_id)


def build_bot(service: PixRAG, settings: Settings, *, sync: bool = False) -> PixragBot:
    return PixragBot(service, settings, sync=sync)


async def run_discord(
    service: PixRAG, settings: Settings, secrets: Secrets, *, sync: bool | None = None
) -> None:
    """Run the bot until cancelled or closed. The token comes from ``DISCORD_TOKEN``."""
    token = secrets.get("DISCORD_TOKEN")
    if not token:
        raise ConfigError(
            "DISCORD_TOKEN",
            "not set: copy the bot token from the Discord Developer Portal (Bot page) and "
            "export DISCORD_TOKEN=... (see docs/DISCORD.md)",
        )
    do_sync = settings.discord.sync if sync is None else sync
    async with build_bot(service, settings, sync=do_sync) as bot:
        try:
            await bot.start(token)
        except discord.LoginFailure as exc:
            raise ConfigError("DISCORD_TOKEN", "Discord rejected this token; reset it") from exc
        except discord.PrivilegedIntentsRequired as exc:
            raise ConfigError(
                "discord.message_content",
                "the Message Content intent is not enabled for this bot: enable it in the "
                "Developer Portal (Bot -> Privileged Gateway Intents) or set "
                "[discord] message_content = false (auto-index then cannot see attachments)",
            ) from exc
