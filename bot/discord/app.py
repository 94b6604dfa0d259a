"""The Discord bot: one ``Bot`` subclass wired with its dependencies, and the entry points.

Command sync is deliberate (``pixrag discord --sync`` or ``[discord] sync = true``), done in
``setup_hook`` before the gateway connects, never in ``on_ready`` and never by default.

Imports point one way: this module wires ``commands``, ``events`` and ``views`` (buttons),
which use the flows in ``replies``; none of them imports this module.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import backfill, failure, messages, replies, views
from bot.discord.commands import PixragCommands
from bot.discord.deps import Deps
from bot.discord.events import IndexEvents
from bot.startup import TRANSIENT, PlatformUnreachable, Retry, unreachable, with_retries
from core.config import Secrets, Settings
from core.errors import ConfigError
from core.service import PixRAG

log = logging.getLogger(__name__)


def intents_for(settings: Settings) -> discord.Intents:
    intents = discord.Intents.default()  # guilds (channel privacy), messages, no members
    # Privileged: without it guild messages arrive without attachments, so auto-index is blind.
    intents.message_content = settings.discord.message_content
    return intents


class PixragTree(app_commands.CommandTree[discord.Client]):
    """Counts every slash command and context menu as work in hand (see ``Deps.drain``)."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        deps: Deps = interaction.client.deps  # type: ignore[attr-defined]
        if deps.closing:
            raise failure.Stopping()  # the failure handler asks to try again in a minute
        deps.track(interaction)
        return True


class PixragBot(commands.Bot):
    def __init__(self, service: PixRAG, settings: Settings, *, sync: bool = False) -> None:
        # The bot never joins voice: the "PyNaCl / davey is not installed" start-up notices
        # are noise for operators.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,  # no text commands: slash commands only
            intents=intents_for(settings),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=PixragTree,
        )
        self.deps = Deps(service, settings)
        self.sync_commands = sync

    # What handlers and tests reach through the bot; the state itself lives in ``deps``.
    @property
    def service(self) -> PixRAG:
        return self.deps.service

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def rate_per_minute(self) -> int:  # read by the error handler for its message
        return self.deps.rate_per_minute

    @property
    def stream_interval(self) -> float:
        return self.deps.stream_interval

    @stream_interval.setter
    def stream_interval(self, value: float) -> None:
        self.deps.stream_interval = value

    async def setup_hook(self) -> None:
        await self.add_cog(PixragCommands(self.deps, self.tree))
        await self.add_cog(IndexEvents(self.deps, self))
        self.add_dynamic_items(views.FeedbackButton, views.MoreButton, backfill.CancelButton)
        self.tree.error(failure.handle)
        if self.sync_commands:
            await self.sync_tree()

    async def sync_tree(self) -> None:
        guild_id = self.settings.discord.sync_guild
        if guild_id:
            guild = discord.Object(id=int(guild_id))
            self.tree.copy_global_to(guild=guild)
            try:
                synced = await self.tree.sync(guild=guild)
            except (discord.Forbidden, discord.NotFound) as exc:
                # Not "HTTP 403 to the login; try again later": trying again will not help.
                raise ConfigError(
                    "discord.sync_guild (or PIXRAG_DISCORD__SYNC_GUILD)",
                    f"Discord refused the commands for server {guild_id} ({exc.status} "
                    f"{exc.text or 'Missing Access'}): is the bot in that server, invited "
                    "with the applications.commands scope? (see docs/DISCORD.md)") from exc
            log.info("synced %d command(s) to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global command(s) (may take up to an hour to appear)", len(synced))

    async def close(self) -> None:
        # Requests in hand first, while the connection can still carry their replies; who
        # was cut off (a stuck answer) is told so rather than left "thinking…".
        for interaction in await self.deps.drain():
            await failure.send_ephemeral(interaction, messages.STOPPING)
        await self.deps.backfills.aclose()  # each run's cursor stays at its last finished page
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

    # views.ButtonHost: button clicks land here and go to their flows.
    async def on_feedback(
        self, interaction: discord.Interaction, verdict: Literal["up", "down"], token: str
    ) -> None:
        self.deps.track(interaction)
        await replies.record_feedback(self.deps, interaction, verdict, token)

    async def on_more_like(self, interaction: discord.Interaction, item_id: str) -> None:
        self.deps.track(interaction)
        await replies.more_like(self.deps, interaction, item_id)


def build_bot(service: PixRAG, settings: Settings, *, sync: bool = False) -> PixragBot:
    return PixragBot(service, settings, sync=sync)


async def probe_discord(retry: Retry) -> None:
    """Is Discord's API reachable at all? (Any HTTP answer counts; tokens are checked by the
    login.) Bounded retries, then PlatformUnreachable: discord.py itself would fail the
    login with a raw connection error, or retry the gateway forever."""

    async def once() -> None:
        timeout = aiohttp.ClientTimeout(total=retry.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{discord.http.Route.BASE}/gateway") as resp,
        ):
            await resp.read()

    await with_retries("Discord", once, retry)


async def run_discord(
    service: PixRAG,
    settings: Settings,
    secrets: Secrets,
    *,
    sync: bool | None = None,
    retry: Retry | None = None,
) -> None:
    """Run the bot until cancelled or closed. The token comes from ``DISCORD_TOKEN``."""
    token = secrets.get("DISCORD_TOKEN")
    if not token:
        raise ConfigError(
            "DISCORD_TOKEN",
            "not set: copy the bot token from the Discord Developer Portal (Bot page) and "
            "export DISCORD_TOKEN=... (see docs/DISCORD.md)",
        )
    retry = retry or Retry()
    await probe_discord(retry)
    do_sync = settings.discord.sync if sync is None else sync
    async with build_bot(service, settings, sync=do_sync) as bot:
        try:
            await bot.login(token)
        except discord.LoginFailure as exc:
            raise ConfigError("DISCORD_TOKEN", "Discord rejected this token; reset it") from exc
        except discord.HTTPException as exc:
            raise PlatformUnreachable(
                f"Discord answered HTTP {exc.status} to the login; try again later"
            ) from exc
        except TRANSIENT as exc:  # the network dropped between the probe and the login
            raise unreachable("Discord", exc) from exc
        try:
            # Connected once, discord.py reconnects by itself (with back-off) after drops.
            await bot.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired as exc:
            raise ConfigError(
                "discord.message_content",
                "the Message Content intent is not enabled for this bot: enable it in the "
                "Developer Portal (Bot -> Privileged Gateway Intents) or set "
                "[discord] message_content = false (auto-index then cannot see attachments)",
            ) from exc
