"""Gateway events: auto-indexing new posts, and keeping the index in step with deletes/edits.

Raw events are used for deletes and edits so messages that are not in the cache (older ones,
or after a restart) are handled too.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import discord
from discord.ext import commands

from bot.discord import convert, download
from bot.discord.deps import Deps
from core.errors import NotFound, PixragError

log = logging.getLogger(__name__)

INDEXED_REACTION = "\N{WHITE HEAVY CHECK MARK}"


def raw_space(bot: discord.Client, guild_id: int | None, channel_id: int) -> str | None:
    """Space of a raw event; for DMs it needs the cached DM channel (else None)."""
    if guild_id is not None:
        return convert.space_for(guild_id, 0)
    channel = bot.get_channel(channel_id)
    recipient = getattr(channel, "recipient", None)
    return convert.space_for(None, recipient.id) if recipient is not None else None


class IndexEvents(commands.Cog):
    def __init__(self, deps: Deps, bot: discord.Client) -> None:
        self.deps = deps
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or not message.attachments:
            return
        if self.deps.closing:
            return  # stopping: a backfill after the restart picks the post up
        self.deps.track()
        space = convert.message_space(message)
        channel = convert.autoindex_key(message.channel)
        if channel not in await self.deps.autoindex_channels(space):
            return
        cfg = self.deps.settings.discord
        limit = cfg.max_attachment_mb * 1024 * 1024
        wanted = [a for a in message.attachments if convert.is_indexable(a)]
        # Nobody asked for a reply here: skip what breaks the limits instead of refusing.
        atts = [
            a for a in wanted if a.size <= limit and a.url.startswith(convert.ALLOWED_CDN_PREFIXES)
        ][: cfg.max_attachments]
        if len(atts) < len(wanted):
            log.info(
                "auto-index of message %s: skipped %d attachment(s) over the limits",
                message.id,
                len(wanted) - len(atts),
            )
        if not atts:
            return
        if not self.deps.autoindex_allowed(space, channel):
            # No reaction tells the poster it was not indexed; /index can still add it.
            log.warning(
                "auto-index of message %s skipped: more than %d messages a minute in channel %s",
                message.id, cfg.autoindex_per_minute, channel,
            )
            return
        admission = self.deps.service.admission
        try:
            async with download.message_uploads(admission, message, atts, cfg) as uploads:
                report = await self.deps.service.index_uploads(uploads, space)
        except PixragError as exc:
            log.warning("auto-index of message %s in %s failed: %s", message.id, space, exc)
            return
        log.info(
            "auto-indexed message %s in %s: %d item(s), %d skipped, %d failed",
            message.id,
            space,
            len(report.indexed),
            len(report.skipped),
            len(report.failed),
        )
        if report.indexed:
            # The poster's only sign that the files are now searchable.
            try:
                await message.add_reaction(INDEXED_REACTION)
            except discord.HTTPException as exc:  # no Add Reactions permission: fine
                log.info("could not react to message %s: %s", message.id, exc)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        space = raw_space(self.bot, payload.guild_id, payload.channel_id)
        if space is None:
            return
        await self._forget(space, payload.message_id, None)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        space = raw_space(self.bot, payload.guild_id, payload.channel_id)
        if space is None:
            return
        for message_id in payload.message_ids:
            await self._forget(space, message_id, None)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if "attachments" not in payload.data:
            return  # an embed-only update, not an edit of the attachment list
        space = raw_space(self.bot, payload.guild_id, payload.channel_id)
        if space is None:
            return
        now = {str(a["id"]) for a in payload.data["attachments"]}
        before = payload.cached_message
        if before is not None:
            for att in before.attachments:
                if str(att.id) not in now:
                    await self._forget(space, payload.message_id, att.id)
            return
        # Not cached (an older message, or after a restart): the old attachment list is
        # unknown, but the index knows what it holds from the message. An edit can only take
        # attachments away, so drop the items of those no longer attached and keep the rest
        # as they are: downloading them again could fail or hit a limit and lose them.
        await self._forget(space, payload.message_id, None, keep=now)

    async def _forget(
        self, space: str, message_id: int, attachment_id: int | None, *,
        keep: Collection[str] = (),
    ) -> list[str]:
        try:
            removed = await self.deps.service.forget_origin(
                space,
                message=str(message_id),
                attachment=str(attachment_id) if attachment_id is not None else None,
                keep_attachments=keep,
            )
        except NotFound:
            return []
        if removed:
            log.info(
                "message %s changed: removed %d item(s) from %s", message_id, len(removed), space
            )
        return removed
