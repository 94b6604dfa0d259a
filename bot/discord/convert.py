"""Discord objects -> core values (Scope, Origin, Upload). Platform objects stop here.

Privacy: a guild channel is private when the @everyone role cannot view it (its own permission
overwrites, else the role's base permissions); public threads follow their parent and are filed
under it; a private thread is private and filed under its *own* id, so members of the parent
channel do not see it. A query inside a thread sees public items, the parent's and the
thread's. DMs are private. When the bot cannot tell (guild or parent not cached) it fails
closed and treats the channel as private, so an item never leaks to a wider audience.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.discord import messages
from bot.discord.markdown import code
from core.config import DiscordSettings
from core.errors import PixragError
from core.media.imageio import TEXT_EXTS
from core.types import Origin, Scope

log = logging.getLogger(__name__)

#: The only URL prefixes attachments are downloaded from (Discord's own CDN). Tests point this
#: at their fake CDN. The trailing slash matters: it stops ``cdn.discordapp.com.evil.example``.
ALLOWED_CDN_PREFIXES: tuple[str, ...] = (
    "https://cdn.discordapp.com/",
    "https://media.discordapp.net/",
)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
#: PDFs and the text documents core reads (notes, Markdown, CSV, logs; Discord also turns a
#: long pasted message into ``message.txt``).
DOC_EXTS = (".pdf", *sorted(TEXT_EXTS))
_DOC_TYPES = ("application/pdf", "text/plain", "text/markdown", "text/x-markdown", "text/csv",
              "text/tab-separated-values")

_LINK = re.compile(
    r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+|@me)/(\d+)/(\d+)/?$"
)


class Refused(PixragError):
    """A request the adapter turns down before calling core (safe to show)."""


@dataclass(frozen=True)
class MessageLink:
    guild: str  # guild id, or "@me" for DMs
    channel: int
    message: int


def space_for(guild_id: int | None, user_id: int) -> str:
    """One space per guild; DMs get one space per user."""
    return f"discord:{guild_id}" if guild_id else f"discord:dm:{user_id}"


def _is_private_thread(channel: object) -> bool:
    return (
        isinstance(channel, discord.Thread)
        and channel.type is discord.ChannelType.private_thread
    )


def channel_key(channel: object) -> str:
    """The channel id items are filed under: a public thread uses its parent (it inherits the
    parent's audience); a private thread its own id (its audience is its members)."""
    if isinstance(channel, discord.Thread) and not _is_private_thread(channel):
        return str(channel.parent_id)
    return str(getattr(channel, "id", "") or "")


def autoindex_key(channel: object) -> str:
    """The channel whose auto-index setting applies: threads follow their parent."""
    if isinstance(channel, discord.Thread):
        return str(channel.parent_id)
    return str(getattr(channel, "id", "") or "")


def is_private(channel: object) -> bool:
    """Whether @everyone cannot view ``channel`` (see the module docstring)."""
    if isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return True
    if isinstance(channel, discord.Thread):
        if channel.type is discord.ChannelType.private_thread:
            return True
        parent = channel.parent
        if parent is None:
            return True
        channel = parent
    if not isinstance(channel, discord.abc.GuildChannel):
        return True  # a partial channel: privacy unknown, fail closed
    guild = channel.guild
    everyone = guild.get_role(guild.id)
    overwrite = channel.overwrites_for(discord.Object(id=guild.id))
    if overwrite.view_channel is not None:
        return not overwrite.view_channel
    if everyone is None:
        return True  # roles not cached: unknown
    return not everyone.permissions.view_channel


def scope_for(interaction: discord.Interaction, *, admin: bool = False) -> Scope:
    """Who asks, and where: in a thread the thread itself plus its parent channel."""
    space = space_for(interaction.guild_id, interaction.user.id)
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return Scope(space, str(channel.id), admin, parent=str(channel.parent_id or ""))
    return Scope(space, str(getattr(channel, "id", "") or interaction.channel_id or ""), admin)


def message_space(message: discord.Message) -> str:
    """The space a message's items belong to (in DMs: the human's, not the bot's)."""
    if message.guild is not None:
        return space_for(message.guild.id, message.author.id)
    recipient = getattr(message.channel, "recipient", None)
    return space_for(None, recipient.id if recipient is not None else message.author.id)


def origin_for(message: discord.Message, attachment: discord.Attachment) -> Origin:
    return Origin(
        platform="discord",
        channel=channel_key(message.channel),
        message=str(message.id),
        attachment=str(attachment.id),
        author=str(message.author.id),
        private=is_private(message.channel),
        link=message.jump_url,
    )


def parse_link(text: str) -> MessageLink:
    match = _LINK.match(text.strip())
    if match is None:
        raise Refused(messages.BAD_LINK)
    return MessageLink(match[1], int(match[2]), int(match[3]))


def is_indexable(attachment: discord.Attachment) -> bool:
    """Images, PDFs and text documents (by content type, else by file name)."""
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/") or ctype in _DOC_TYPES:
        return True
    return attachment.filename.lower().endswith(IMAGE_EXTS + DOC_EXTS)


def is_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    return ctype.startswith("image/") or attachment.filename.lower().endswith(IMAGE_EXTS)


def check_attachments(attachments: Sequence[discord.Attachment], cfg: DiscordSettings) -> None:
    """Count, size and host checks, all from metadata: nothing is downloaded before they pass."""
    if len(attachments) > cfg.max_attachments:
        raise Refused(messages.TOO_MANY.format(limit=cfg.max_attachments, count=len(attachments)))
    limit = cfg.max_attachment_mb * 1024 * 1024
    for att in attachments:
        if att.size > limit:
            raise Refused(
                messages.TOO_LARGE.format(
                    name=code(att.filename), size=att.size / 1024 / 1024,
                    limit=cfg.max_attachment_mb,
                )
            )
        if not att.url.startswith(ALLOWED_CDN_PREFIXES):
            raise Refused(messages.NOT_DISCORD_URL.format(name=code(att.filename)))


def interaction_origin(interaction: discord.Interaction, attachment: discord.Attachment) -> Origin:
    """Origin of a file attached to a slash command (it belongs to no message: no link)."""
    return Origin(
        platform="discord",
        channel=channel_key(interaction.channel) or str(interaction.channel_id or ""),
        message=str(interaction.id),
        attachment=str(attachment.id),
        author=str(interaction.user.id),
        private=is_private(interaction.channel) if interaction.guild_id else True,
    )
