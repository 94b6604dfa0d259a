"""``/pixrag backfill [channel] [since]``: index the images and PDFs a channel already holds.

The channel's history is read page by page, oldest first from the stored cursor, then the
history of its threads (active, archived public, archived private when the bot may see them).
Each attachment is downloaded like a live one (:func:`bot.discord.download.download`: streamed,
cut off past its announced size) and becomes the same Upload (same Origin, same
private-channel rule). discord.py waits out HTTP 429
answers itself (``retry_after``) and paces requests per rate-limit bucket.

Progress is one message in the backfilled channel, edited in place, with a Cancel button; the
interaction itself only gets a private "started" note (interaction tokens expire after 15
minutes, a backfill can take longer).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import discord

from bot.backfill import Backfill, Candidate, Cursors, Page, Progress, Walker
from bot.discord import access, convert, download, failure, messages, render
from bot.discord.convert import Refused
from bot.discord.deps import Deps, HasDeps
from bot.discord.markdown import shorten
from core.types import Upload

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Discord's maximum per history request
MAX_REASONS_SHOWN = 10


def parse_since(text: str | None) -> datetime | None:
    """``2024-05-01`` (or a full ISO date-time) -> an aware datetime; None for no limit."""
    if not text or not text.strip():
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise Refused(messages.BACKFILL_BAD_SINCE.format(since=text.strip()[:40])) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def target_channel(
    interaction: discord.Interaction, channel: discord.TextChannel | None
) -> discord.TextChannel:
    """The channel to backfill: the one given, else where the command ran (a thread: its
    parent, whose threads are walked too)."""
    target: object = channel or interaction.channel
    if isinstance(target, discord.Thread):
        target = target.parent
    if not isinstance(target, discord.TextChannel):
        raise Refused(messages.BACKFILL_NOT_TEXT)
    return target


async def start(
    deps: Deps,
    interaction: discord.Interaction,
    channel: discord.TextChannel | None,
    since: str | None,
) -> None:
    """Check, announce, and run the backfill in the background (one per channel at a time)."""
    if interaction.guild_id is None:
        raise Refused(messages.DM_ONLY_GUILD)
    access.require_manager(deps.settings, interaction)
    target = target_channel(interaction, channel)
    since_at = parse_since(since)
    space = convert.space_for(interaction.guild_id, interaction.user.id)
    key = str(target.id)
    # Acknowledge before the claim (a catalog read and write): Discord drops an interaction
    # not answered within 3 s, and the write may wait behind a flood of uploads.
    await interaction.response.defer(ephemeral=True, thinking=True)
    if not await deps.backfills.reserve(deps.service, space, key):
        raise Refused(messages.BACKFILL_RUNNING.format(channel=target.mention))
    try:
        await interaction.followup.send(
            messages.BACKFILL_STARTED.format(channel=target.mention), ephemeral=True)
        status = await target.send(
            messages.BACKFILL_STARTING.format(channel=target.mention),
            view=cancel_view(target.id),
            allowed_mentions=discord.AllowedMentions.none(),
        )
    except discord.HTTPException as exc:
        await deps.backfills.release(space, key)
        log.info("cannot post backfill progress in %s: %s", target.id, exc)
        await interaction.followup.send(
            messages.BACKFILL_CANNOT_POST.format(channel=target.mention), ephemeral=True)
        return
    except BaseException:
        await deps.backfills.release(space, key)
        raise

    async def report(p: Progress) -> None:
        final = p.finished or p.cancelled or p.error is not None
        text = progress_text(p, target.mention)
        try:
            if final:
                await status.edit(content=text, view=None)  # no Cancel on a finished run
            else:
                await status.edit(content=text)  # the Cancel button stays as it is
        except discord.HTTPException as exc:
            log.warning("backfill progress edit in %s failed: %s", target.id, exc)

    run = Backfill(deps.service, space, walker(deps, target, since_at), report)
    deps.backfills.start(space, key, run)
    log.info("backfill of %s in %s started by %s (since %s)", target.id, space,
             interaction.user.id, since_at)


def progress_text(p: Progress, channel: str) -> str:
    done = p.indexed + p.already
    counts = (messages.BACKFILL_COUNTS if p.estimate else messages.BACKFILL_COUNTS_SO_FAR).format(
        done=done, total=p.total, failed=p.failed)
    already = messages.BACKFILL_ALREADY.format(n=p.already) if p.already else ""
    if p.finished:
        head = messages.BACKFILL_FINISHED.format(channel=channel, done=done, failed=p.failed)
    elif p.cancelled:
        head = messages.BACKFILL_CANCELLED.format(channel=channel, counts=counts)
    elif p.error is not None:
        head = messages.BACKFILL_STOPPED.format(channel=channel, counts=counts, error=p.error)
    else:
        return messages.BACKFILL_PROGRESS.format(channel=channel, counts=counts) + already
    lines = [head + already]
    for name, reason in p.reasons[:MAX_REASONS_SHOWN]:
        lines.append(messages.BACKFILL_REASON.format(name=name, reason=reason))
    if p.failed > min(len(p.reasons), MAX_REASONS_SHOWN):
        lines.append(messages.BACKFILL_MORE.format(n=p.failed - MAX_REASONS_SHOWN))
    return shorten("\n".join(lines), render.CONTENT_LIMIT)


# ---- walking the history --------------------------------------------------------------------


def _snowflake(when: datetime | None) -> int:
    return discord.utils.time_snowflake(when, high=True) if when else 0


def _resume_point(saved: str | None, since_id: int) -> tuple[int, int]:
    """(first, after): where the stored walk of a stream began and got to. A run for an
    earlier ``since`` than the stored walk covered starts again from it (files already
    indexed are skipped by id, before download)."""
    if saved:
        try:
            data = json.loads(saved)
            first, after = int(data["since"]), int(data["after"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable backfill cursor: %r", saved[:100])
        else:
            if since_id >= first:
                return first, max(after, since_id)
    return since_id, since_id


def walker(deps: Deps, channel: discord.TextChannel, since: datetime | None) -> Walker:
    since_id = _snowflake(since)

    async def walk(cursors: Cursors) -> AsyncIterator[Page]:
        # The estimate of the total: how far through (first message read .. last message)
        # the pages are, by the timestamps in the message ids.
        last = channel.last_message_id
        end = discord.utils.snowflake_time(last) if last else datetime.now(UTC)
        async for page in _stream(deps, channel, since_id, cursors, end):
            yield page
        for thread in await _threads(channel):
            async for page in _stream(deps, thread, since_id, cursors, None):
                yield page

    return walk


async def _stream(
    deps: Deps,
    ch: discord.TextChannel | discord.Thread,
    since_id: int,
    cursors: Cursors,
    end: datetime | None,
) -> AsyncIterator[Page]:
    first, after = _resume_point(await cursors.get(str(ch.id)), since_id)
    begin: datetime | None = None
    while True:
        try:
            batch = [m async for m in ch.history(
                limit=PAGE_SIZE, after=discord.Object(id=after), oldest_first=True)]
        except discord.Forbidden as exc:
            raise Refused(messages.BACKFILL_FORBIDDEN.format(channel=ch.mention)) from exc
        except discord.HTTPException as exc:
            log.warning("history of %s failed: %s", ch.id, exc)
            raise Refused(messages.BACKFILL_HISTORY_FAILED.format(channel=ch.mention)) from exc
        if not batch:
            return
        after = max(m.id for m in batch)
        position = None
        if end is not None:
            begin = begin or discord.utils.snowflake_time(min(m.id for m in batch))
            seconds = (end - begin).total_seconds()
            reached = discord.utils.snowflake_time(after)
            position = min(1.0, (reached - begin).total_seconds() / seconds) if seconds else 1.0
        yield Page(
            stream=str(ch.id),
            cursor=json.dumps({"since": first, "after": after}),
            candidates=[c for m in batch for c in candidates(deps, m)],
            position=position,
        )
        if len(batch) < PAGE_SIZE:
            return


def candidates(deps: Deps, message: discord.Message) -> list[Candidate]:
    """The files of ``message`` that live auto-indexing would take (people's, not bots')."""
    if message.author.bot:
        return []
    return [
        Candidate(str(att.id), att.filename, partial(_fetch, deps, message, att))
        for att in message.attachments
        if convert.is_indexable(att)
    ]


async def _fetch(deps: Deps, message: discord.Message, att: discord.Attachment) -> Upload:
    # One file at a time per run (the runner indexes each before fetching the next), so a
    # backfill holds at most one download's bytes; the size cap applies while streaming.
    data = await download.download(att, deps.settings.discord)
    return Upload(att.filename, data, message.jump_url, convert.origin_for(message, att))


async def _threads(channel: discord.TextChannel) -> list[discord.Thread]:
    """Active and archived threads of ``channel``, oldest first."""
    found: dict[int, discord.Thread] = {}
    try:
        for t in await channel.guild.active_threads():
            if t.parent_id == channel.id:
                found[t.id] = t
        async for t in channel.archived_threads(limit=None):
            found.setdefault(t.id, t)
    except discord.HTTPException as exc:
        log.warning("listing threads of %s failed: %s", channel.id, exc)
        raise Refused(messages.BACKFILL_HISTORY_FAILED.format(channel=channel.mention)) from exc
    try:
        async for t in channel.archived_threads(private=True, limit=None):
            found.setdefault(t.id, t)
    except discord.Forbidden:  # needs Manage Threads: without it those stay unindexed
        log.info("no access to archived private threads of %s", channel.id)
    return [found[k] for k in sorted(found)]


# ---- the Cancel button ----------------------------------------------------------------------


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pxr:bf:cancel:(?P<channel>\d+)",
):
    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id
        super().__init__(discord.ui.Button(
            label=messages.BACKFILL_CANCEL, style=discord.ButtonStyle.danger,
            custom_id=f"pxr:bf:cancel:{channel_id}"))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["channel"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await cancel(cast(HasDeps, interaction.client).deps, interaction, self.channel_id)
        except Exception as exc:  # one handler for commands and buttons alike
            await failure.handle(interaction, exc)


def cancel_view(channel_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(channel_id))
    return view


async def cancel(deps: Deps, interaction: discord.Interaction, channel_id: int) -> None:
    access.require_manager(deps.settings, interaction)
    space = convert.space_for(interaction.guild_id, interaction.user.id)
    mention = f"<#{channel_id}>"
    if deps.backfills.cancel(space, str(channel_id)):
        log.info("backfill of %s in %s cancelled by %s", channel_id, space, interaction.user.id)
        text = messages.BACKFILL_CANCELLING.format(channel=mention)
    else:
        text = messages.BACKFILL_NOT_RUNNING.format(channel=mention)
    await interaction.response.send_message(text, ephemeral=True)
