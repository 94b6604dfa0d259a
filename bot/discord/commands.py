"""Slash commands, message context menus and button actions. Each one converts, calls core once
or twice, and renders; errors go to :mod:`bot.discord.failure` through the tree's handler."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import backfill as discord_backfill
from bot.discord import convert, messages, render, views
from bot.discord.convert import Refused
from core.errors import NotFound, PermissionDenied
from core.types import Answer, Hit, IndexReport, Scope

if TYPE_CHECKING:
    from bot.discord.app import PixragBot

log = logging.getLogger(__name__)

MAX_BUTTON_RESULTS = 5


# ---- permissions -------------------------------------------------------------------------


def is_manager(bot: PixragBot, interaction: discord.Interaction) -> bool:
    """May index and forget anything: the configured role, else Manage Messages. DMs: yes."""
    if interaction.guild_id is None:
        return True  # a DM space belongs to that user
    perms = interaction.permissions
    if perms.administrator:
        return True
    role = bot.settings.discord.manager_role
    if role:
        user = interaction.user
        roles = user.roles if isinstance(user, discord.Member) else []
        return any(r.name == role or str(r.id) == role for r in roles)
    return perms.manage_messages


def require_manager(bot: PixragBot, interaction: discord.Interaction) -> None:
    if not is_manager(bot, interaction):
        role = bot.settings.discord.manager_role
        raise PermissionDenied(
            messages.NOT_MANAGER.format(role=role) if role else messages.NOT_MANAGER_PERMISSION
        )


def is_admin(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild


# ---- replies ------------------------------------------------------------------------------


async def send_results(
    bot: PixragBot, interaction: discord.Interaction, query: str, hits: list[Hit]
) -> None:
    """The gallery reply (after a defer): embeds + thumbnails + buttons."""
    if not hits:
        await interaction.followup.send(messages.NO_RESULTS)
        return
    cfg = bot.settings.discord
    shown = render.gallery(query, hits, cfg.max_thumbnails)
    token = bot.shown.remember(query, shown.ids)
    view = views.result_view(token, similar_seeds(hits[: len(shown.ids)]))
    await interaction.followup.send(
        content=shown.content, embeds=shown.embeds, files=shown.files, view=view
    )


def similar_seeds(hits: list[Hit]) -> list[tuple[int, str]]:
    """(result number, item id) of shown results that have an image to search from."""
    seeds = [(n, h.id) for n, h in enumerate(hits, 1) if h.kind in ("image", "page")]
    return seeds[:MAX_BUTTON_RESULTS]


def report_text(report: IndexReport) -> str:
    lines = [messages.INDEXED.format(indexed=len(report.indexed))]
    lines += [
        messages.INDEX_SKIPPED.format(source=s.source, reason=s.reason) for s in report.skipped
    ]
    lines += [messages.INDEX_FAILED.format(source=f.source, error=f.error) for f in report.failed]
    return render.shorten("\n".join(lines), render.CONTENT_LIMIT)


async def first_image(bot: PixragBot, attachments: list[discord.Attachment]) -> tuple[str, bytes]:
    images = [a for a in attachments if convert.is_image(a)]
    if not images:
        raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
    return images[0].filename, await convert.download(images[0], bot.settings.discord)


def check_image(bot: PixragBot, image: discord.Attachment) -> None:
    if not convert.is_image(image):
        raise Refused(messages.NOT_AN_IMAGE.format(name=image.filename))
    convert.check_attachments([image], bot.settings.discord)


# ---- the commands -------------------------------------------------------------------------


class PixragCommands(commands.Cog):
    pixrag = app_commands.Group(name="pixrag", description="PixRAG settings and statistics")

    def __init__(self, bot: PixragBot) -> None:
        self.bot = bot
        self._menus = [
            app_commands.ContextMenu(name=messages.CTX_FIND_SIMILAR, callback=self.find_similar),
            app_commands.ContextMenu(name=messages.CTX_ADD, callback=self.add_message),
        ]

    async def cog_load(self) -> None:
        for menu in self._menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self._menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    # -- ask / search / similar

    @app_commands.command(name="ask", description="Ask a question about the indexed images")
    @app_commands.describe(question="What you want to know", image="An image to ask about")
    async def ask(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 1000],
        image: discord.Attachment | None = None,
    ) -> None:
        bot = self.bot
        bot.check_rate(interaction)
        if image is not None:
            check_image(bot, image)
        await interaction.response.defer(thinking=True)
        data = await convert.download(image, bot.settings.discord) if image else None
        await stream_answer(
            bot,
            interaction,
            question,
            convert.scope_for(interaction),
            image=data,
            image_name=image.filename if image else "image",
        )

    @app_commands.command(name="search", description="Find indexed images, pages and documents")
    @app_commands.describe(query="What to look for")
    async def search(
        self, interaction: discord.Interaction, query: app_commands.Range[str, 1, 500]
    ) -> None:
        self.bot.check_rate(interaction)
        await interaction.response.defer(thinking=True)
        hits = await self.bot.service.search(query, convert.scope_for(interaction))
        await send_results(self.bot, interaction, query, hits)

    @app_commands.command(name="similar", description="Reverse image search from an attachment")
    @app_commands.describe(image="The image to find look-alikes of")
    async def similar(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        bot = self.bot
        bot.check_rate(interaction)
        check_image(bot, image)
        await interaction.response.defer(thinking=True)
        data = await convert.download(image, bot.settings.discord)
        hits = await bot.service.similar(data, convert.scope_for(interaction), name=image.filename)
        await send_results(bot, interaction, f"similar to {image.filename}", hits)

    async def find_similar(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        bot = self.bot
        bot.check_rate(interaction)
        images = [a for a in message.attachments if convert.is_image(a)]
        if not images:
            raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
        convert.check_attachments(images[:1], bot.settings.discord)
        await interaction.response.defer(thinking=True)
        name, data = await first_image(bot, images)
        hits = await bot.service.similar(data, convert.scope_for(interaction), name=name)
        await send_results(bot, interaction, f"similar to {name}", hits)

    # -- index / forget

    @app_commands.command(name="index", description="Add images or PDFs to this server's index")
    @app_commands.describe(
        file1="An image or PDF",
        file2="Another one",
        file3="Another one",
        file4="Another one",
        file5="Another one",
        message_link="Or: a link to a message whose attachments to index",
    )
    async def index(
        self,
        interaction: discord.Interaction,
        file1: discord.Attachment | None = None,
        file2: discord.Attachment | None = None,
        file3: discord.Attachment | None = None,
        file4: discord.Attachment | None = None,
        file5: discord.Attachment | None = None,
        message_link: str | None = None,
    ) -> None:
        bot = self.bot
        cfg = bot.settings.discord
        require_manager(bot, interaction)
        bot.check_rate(interaction)
        files = [f for f in (file1, file2, file3, file4, file5) if f is not None]
        if not files and not message_link:
            raise Refused(messages.NO_ATTACHMENTS)
        for f in files:
            if not convert.is_indexable(f):
                raise Refused(messages.NOT_AN_IMAGE.format(name=f.filename))
        convert.check_attachments(files, cfg)
        await interaction.response.defer(ephemeral=True, thinking=True)
        uploads = await convert.uploads_from_interaction(interaction, files, cfg)
        if message_link:
            message = await fetch_linked(bot, interaction, message_link)
            atts = [a for a in message.attachments if convert.is_indexable(a)]
            if not atts:
                raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
            uploads += await convert.uploads_from(message, atts, cfg)
        report = await bot.service.index_uploads(uploads, convert.scope_for(interaction).space)
        await interaction.followup.send(report_text(report), ephemeral=True)

    async def add_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        bot = self.bot
        require_manager(bot, interaction)
        bot.check_rate(interaction)
        atts = [a for a in message.attachments if convert.is_indexable(a)]
        if not atts:
            raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
        convert.check_attachments(atts, bot.settings.discord)
        await interaction.response.defer(ephemeral=True, thinking=True)
        uploads = await convert.uploads_from(message, atts, bot.settings.discord)
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        report = await bot.service.index_uploads(uploads, space)
        await interaction.followup.send(report_text(report), ephemeral=True)

    @app_commands.command(
        name="forget", description="Remove an item or a message's files from the index"
    )
    @app_commands.describe(ref="An item id (shown under each result) or a message link")
    async def forget(
        self, interaction: discord.Interaction, ref: app_commands.Range[str, 1, 300]
    ) -> None:
        bot = self.bot
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        ref = ref.strip()
        link = convert.parse_link(ref) if ref.startswith("https://") else None
        await interaction.response.defer(ephemeral=True, thinking=True)
        if not is_manager(bot, interaction):
            await require_author(bot, interaction, space, ref, link)
        try:
            if link is not None:
                removed = await bot.service.forget_origin(space, message=str(link.message))
            else:
                removed = await bot.service.forget(space, ref)
        except NotFound:
            removed = []
        text = (
            messages.FORGOT.format(count=len(removed))
            if removed
            else messages.NOTHING_TO_FORGET.format(ref=render.shorten(ref, 200))
        )
        await interaction.followup.send(text, ephemeral=True)

    # -- /pixrag autoindex | stats

    @pixrag.command(name="autoindex", description="Index images and PDFs posted in this channel")
    @app_commands.describe(state="on: index new posts here; off: stop")
    @app_commands.guild_only()
    async def autoindex(
        self, interaction: discord.Interaction, state: Literal["on", "off"]
    ) -> None:
        if interaction.guild_id is None:  # guild_only() is not enforced on subcommands
            raise Refused(messages.DM_ONLY_GUILD)
        if not is_admin(interaction):
            raise PermissionDenied(messages.NOT_ADMIN)
        scope = convert.scope_for(interaction)
        on = state == "on"
        await self.bot.set_autoindex(scope.space, scope.channel, on)
        mention = f"<#{scope.channel}>"
        if on:
            private = convert.is_private(interaction.channel)
            text = messages.AUTOINDEX_ON.format(
                channel=mention, privacy=messages.AUTOINDEX_PRIVATE if private else ""
            )
        else:
            text = messages.AUTOINDEX_OFF.format(channel=mention)
        await interaction.response.send_message(text, ephemeral=True)

    @pixrag.command(name="backfill", description="Index the images and PDFs already posted")
    @app_commands.describe(channel="The channel (default: this one)", since="e.g. 2024-05-31")
    @app_commands.guild_only()
    async def backfill(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        since: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        await discord_backfill.start(self.bot, interaction, channel, since)

    @pixrag.command(name="stats", description="What is indexed in this server")
    async def stats(self, interaction: discord.Interaction) -> None:
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        stats = await self.bot.service.stats(space)
        channels = sorted(await self.bot.service.autoindex_channels(space))
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(stats.by_kind.items()) if n)
        text = messages.STATS.format(
            items=stats.items,
            kinds=f" ({kinds})" if kinds else "",
            model=stats.model,
            channels=", ".join(f"<#{c}>" for c in channels) or "none",
        )
        await interaction.followup.send(text, ephemeral=True)


# ---- helpers used by commands and buttons ------------------------------------------------


async def stream_answer(
    bot: PixragBot,
    interaction: discord.Interaction,
    question: str,
    scope: Scope,
    *,
    image: bytes | None,
    image_name: str,
) -> None:
    """Edit the deferred reply as the answer grows (throttled), then render the final answer."""
    text = ""
    final: Answer | None = None
    last_edit = time.monotonic()
    stream = bot.service.ask_stream(question, scope, image=image, image_name=image_name)
    async for part in stream:
        if isinstance(part, Answer):
            final = part
            continue
        text += part
        now = time.monotonic()
        if now - last_edit >= bot.stream_interval:
            last_edit = now
            await interaction.edit_original_response(content=render.streaming(question, text))
    if final is None:  # the stream contract says the Answer comes last; treat absence as a bug
        raise RuntimeError("ask_stream ended without an Answer")
    cfg = bot.settings.discord
    pieces = render.answer_pieces(question, final, cfg.max_thumbnails)
    first = pieces[0]
    token = bot.shown.remember(question, first.ids)
    view = views.result_view(token, similar_seeds(final.sources[: len(first.ids)]))
    await interaction.edit_original_response(
        content=first.content, embeds=first.embeds, attachments=first.files, view=view
    )
    for piece in pieces[1:]:
        await interaction.followup.send(piece.content)


async def fetch_linked(
    bot: PixragBot, interaction: discord.Interaction, link_text: str
) -> discord.Message:
    """The message a link points to, only if it is in the same guild (or this DM)."""
    link = convert.parse_link(link_text)
    expected = str(interaction.guild_id) if interaction.guild_id else "@me"
    if link.guild != expected:
        raise Refused(messages.BAD_LINK)
    try:
        channel = bot.get_channel(link.channel) or await bot.fetch_channel(link.channel)
    except discord.HTTPException as exc:
        raise Refused(messages.LINK_NOT_FOUND) from exc
    # The link's guild part is user input: the channel's real guild decides.
    real_guild = getattr(getattr(channel, "guild", None), "id", None)
    if interaction.guild_id is not None and real_guild != interaction.guild_id:
        raise Refused(messages.BAD_LINK)
    if interaction.guild_id is None and channel.id != interaction.channel_id:
        raise Refused(messages.BAD_LINK)
    if not isinstance(channel, discord.abc.Messageable):
        raise Refused(messages.LINK_NOT_FOUND)
    try:
        return await channel.fetch_message(link.message)
    except discord.HTTPException as exc:
        raise Refused(messages.LINK_NOT_FOUND) from exc


async def require_author(
    bot: PixragBot,
    interaction: discord.Interaction,
    space: str,
    ref: str,
    link: convert.MessageLink | None,
) -> None:
    """Non-managers may only forget what came from their own messages."""
    user = str(interaction.user.id)
    if link is not None:
        message = await fetch_linked(bot, interaction, ref)
        author = str(message.author.id)
    else:
        hit = await bot.service.item(space, ref)
        if hit is None:
            raise NotFound(messages.NOTHING_TO_FORGET.format(ref=render.shorten(ref, 200)))
        author = hit.origin.author
    if author != user:
        raise PermissionDenied(messages.NOT_ALLOWED_FORGET)


async def record_feedback(
    bot: PixragBot, interaction: discord.Interaction, verdict: Literal["up", "down"], token: str
) -> None:
    shown = bot.shown.get(token) or views.shown_from_message(interaction.message)
    if shown is None or not shown.ids:
        await interaction.response.send_message(messages.FEEDBACK_EXPIRED, ephemeral=True)
        return
    await interaction.response.send_message(messages.FEEDBACK_THANKS, ephemeral=True)
    await bot.service.record_feedback(
        convert.space_for(interaction.guild_id, interaction.user.id),
        question=shown.question,
        verdict=verdict,
        source_ids=list(shown.ids),
        user=str(interaction.user.id),
        platform="discord",
    )


async def more_like(bot: PixragBot, interaction: discord.Interaction, item_id: str) -> None:
    bot.check_rate(interaction)
    scope = convert.scope_for(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    hit = await bot.service.item(scope.space, item_id)
    path = (hit.blob or hit.thumbnail) if hit is not None else None
    hidden = hit is not None and hit.origin.private and hit.origin.channel != scope.channel
    if hit is None or path is None or hidden:
        raise NotFound(messages.MORE_GONE)
    data = await asyncio.to_thread(Path(path).read_bytes)
    hits = await bot.service.similar(data, scope, name=hit.name or "image")
    hits = [h for h in hits if h.id != item_id]
    await send_results(bot, interaction, f"more like {render.title_of(hit)}", hits)
