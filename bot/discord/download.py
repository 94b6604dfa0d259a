"""Attachments -> bytes, inside the process-wide upload budget, size enforced while reading.

Order matters: metadata checks (count, size, host) first, then a ticket from
``service.admission`` covering every file of the request, then the downloads, streamed and
cut off past the announced size; the ticket is held until the caller is done with the bytes
(indexing), so a flood of uploads waits for room instead of filling memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
import discord

from bot.discord import convert, messages
from bot.discord.convert import Refused
from bot.discord.markdown import code
from core.admission import Admission
from core.config import DiscordSettings
from core.types import Upload

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=30)
_CHUNK = 256 * 1024
MB = 1024 * 1024


def _cap(attachment: discord.Attachment, cfg: DiscordSettings) -> int:
    """The most bytes this attachment may have: what Discord announced, within the limit."""
    limit = int(cfg.max_attachment_mb * MB)
    return min(attachment.size, limit) if attachment.size > 0 else limit


async def download(attachment: discord.Attachment, cfg: DiscordSettings) -> bytes:
    """One attachment's bytes from Discord's CDN, streamed; Refused past its announced size.

    (``Attachment.read()`` would read everything before any check could run.)"""
    convert.check_attachments([attachment], cfg)
    cap = _cap(attachment, cfg)
    name = code(attachment.filename)
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            # No redirects: the URL was checked against the CDN prefixes, a hop is not.
            session.get(attachment.url, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                log.warning("attachment %s: HTTP %s from the CDN", attachment.id, resp.status)
                raise Refused(messages.DOWNLOAD_FAILED.format(name=name))
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                buf += chunk
                if len(buf) > cap:
                    log.warning("attachment %s: more than the %d bytes announced",
                                attachment.id, cap)
                    raise Refused(messages.LARGER_THAN_SAID.format(
                        name=name, limit=cfg.max_attachment_mb))
            return bytes(buf)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("download of attachment %s failed: %r", attachment.id, exc)
        raise Refused(messages.DOWNLOAD_FAILED.format(name=name)) from exc


@asynccontextmanager
async def admitted(
    admission: Admission, attachments: Sequence[discord.Attachment], cfg: DiscordSettings,
    *, query: bool = False,
) -> AsyncIterator[list[bytes]]:
    """``async with admitted(...) as datas``: every attachment's bytes, in order, held inside
    one admission ticket until the block ends. ``query``: the image of a question someone
    waits for, served ahead of queued uploads."""
    convert.check_attachments(attachments, cfg)
    total = sum(_cap(a, cfg) for a in attachments)
    async with admission.admit(max(1, len(attachments)), total, urgent=query):
        yield [await download(a, cfg) for a in attachments]


@asynccontextmanager
async def message_uploads(
    admission: Admission,
    message: discord.Message,
    attachments: Sequence[discord.Attachment],
    cfg: DiscordSettings,
) -> AsyncIterator[list[Upload]]:
    """A message's attachments as core uploads, inside one admission ticket."""
    async with admitted(admission, attachments, cfg) as datas:
        yield [
            Upload(a.filename, d, message.jump_url, convert.origin_for(message, a))
            for a, d in zip(attachments, datas, strict=True)
        ]


@asynccontextmanager
async def interaction_uploads(
    admission: Admission,
    interaction: discord.Interaction,
    attachments: Sequence[discord.Attachment],
    cfg: DiscordSettings,
) -> AsyncIterator[list[Upload]]:
    """Files attached to a slash command as core uploads, inside one admission ticket."""
    async with admitted(admission, attachments, cfg) as datas:
        yield [
            Upload(a.filename, d, a.filename, convert.interaction_origin(interaction, a))
            for a, d in zip(attachments, datas, strict=True)
        ]
