"""Slash commands and message context menus. Each one checks, defers, and hands over to a
flow in :mod:`bot.discord.replies`; errors go to :mod:`bot.discord.failure` through the
tree's handler."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import access, convert, messages, replies
from bot.discord import backfill as discord_backfill
from bot.discord.convert import Refused
from bot.discord.deps import Deps
from bot.discord.markdown import code

log = logging.getLogger(__name__)


class PixragCommands(commands.Cog):
    pixrag = app_commands.Group(name="pixrag", description="PixRAG settings and statistics")

    def __init__(self, deps: Deps, tree: app_commands.CommandTree[discord.Client]) -> None:
        self.deps = deps
        self.tree = tree
        self._menus = [
            app_commands.ContextMenu(name=messages.CTX_FIND_SIMILAR, callback=self.find_similar),
            app_commands.ContextMenu(name=messages.CTX_ADD, callback=self.add_message),
        ]

    async def cog_load(self) -> None:
        for menu in self._menus:
            self.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self._menus:
            self.tree.remove_command(menu.name, type=menu.type)

    # -- ask / search / similar

    @app_commands.command(name="ask", description="Ask a question about the indexed images")
    @app_commands.describe(question="What you want to know", image="An image to ask about")
    async def ask(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 1000],
        image: discord.Attachment | None = None,
    ) -> None:
        self.deps.check_rate(interaction)
        if image is not None:
            replies.check_image(self.deps, image)
        await interaction.response.defer(thinking=True)
        await replies.ask(self.deps, interaction, question, image)

    @app_commands.command(name="search", description="Find indexed images, pages and documents")
    @app_commands.describe(query="What to look for")
    async def search(
        self, interaction: discord.Interaction, query: app_commands.Range[str, 1, 500]
    ) -> None:
        self.deps.check_rate(interaction)
        await interaction.response.defer(thinking=True)
        hits = await self.deps.service.search(query, convert.scope_for(interaction))
        await replies.send_results(self.deps, interaction, query, hits)

    @app_commands.command(name="similar", description="Reverse image search from an attachment")
    @app_commands.describe(image="The image to find look-alikes of")
    async def similar(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        self.deps.check_rate(interaction)
        replies.check_image(self.deps, image)
        await interaction.response.defer(thinking=True)
        await replies.similar_to(self.deps, interaction, image)

    async def find_similar(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        self.deps.check_rate(interaction)
        image = replies.query_image(list(message.attachments))
        convert.check_attachments([image], self.deps.settings.discord)
        await interaction.response.defer(thinking=True)
        await replies.similar_to(self.deps, interaction, image)

    # -- index / forget

    @app_commands.command(
        name="index", description="Add images, PDFs or text documents to this server's index"
    )
    @app_commands.describe(
        file1="An image, PDF or text document",
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
        deps = self.deps
        access.require_manager(deps.settings, interaction)
        deps.check_rate(interaction)
        files = [f for f in (file1, file2, file3, file4, file5) if f is not None]
        if not files and not message_link:
            raise Refused(messages.NO_ATTACHMENTS)
        for f in files:
            if not convert.is_indexable(f):
                raise Refused(messages.NOT_INDEXABLE.format(name=code(f.filename)))
        convert.check_attachments(files, deps.settings.discord)
        await interaction.response.defer(ephemeral=True, thinking=True)
        linked = await replies.fetch_linked(interaction, message_link) if message_link else None
        report = await replies.index(deps, interaction, files, linked)
        await interaction.followup.send(replies.report_text(report), ephemeral=True)

    async def add_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        deps = self.deps
        access.require_manager(deps.settings, interaction)
        deps.check_rate(interaction)
        atts = [a for a in message.attachments if convert.is_indexable(a)]
        if not atts:
            raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
        convert.check_attachments(atts, deps.settings.discord)
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await replies.index_message(deps, interaction, message)
        await interaction.followup.send(replies.report_text(report), ephemeral=True)

    @app_commands.command(
        name="forget", description="Remove an item or a message's files from the index"
    )
    @app_commands.describe(ref="An item id (shown under each result) or a message link")
    async def forget(
        self, interaction: discord.Interaction, ref: app_commands.Range[str, 1, 300]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        removed = await replies.forget(self.deps, interaction, ref)
        text = (
            messages.FORGOT.format(count=len(removed))
            if removed
            else messages.NOTHING_TO_FORGET.format(ref=code(ref.strip()))
        )
        await interaction.followup.send(text, ephemeral=True)

    # -- /pixrag autoindex | stats

    @pixrag.command(
        name="autoindex", description="Index images, PDFs and text documents posted in this channel"
    )
    @app_commands.describe(state="on: index new posts here; off: stop")
    @app_commands.guild_only()
    async def autoindex(
        self, interaction: discord.Interaction, state: Literal["on", "off"]
    ) -> None:
        if interaction.guild_id is None:  # guild_only() is not enforced on subcommands
            raise Refused(messages.DM_ONLY_GUILD)
        if not access.is_admin(interaction):
            raise Refused(messages.NOT_ADMIN)
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        # A thread follows its parent channel's setting: switch the parent.
        channel = convert.autoindex_key(interaction.channel) or str(interaction.channel_id)
        on = state == "on"
        # Acknowledge before writing: Discord drops an interaction not answered within 3 s,
        # and the write may wait behind a flood of uploads being committed.
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.deps.set_autoindex(space, channel, on)
        mention = f"<#{channel}>"
        if on:
            private = convert.is_private(interaction.channel)
            text = messages.AUTOINDEX_ON.format(
                channel=mention, privacy=messages.AUTOINDEX_PRIVATE if private else ""
            )
        else:
            text = messages.AUTOINDEX_OFF.format(channel=mention)
        await interaction.followup.send(text, ephemeral=True)

    @pixrag.command(
        name="backfill", description="Index the images, PDFs and text documents already posted"
    )
    @app_commands.describe(channel="The channel (default: this one)", since="e.g. 2024-05-31")
    @app_commands.guild_only()
    async def backfill(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        since: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        await discord_backfill.start(self.deps, interaction, channel, since)

    @pixrag.command(name="stats", description="What is indexed in this server")
    async def stats(self, interaction: discord.Interaction) -> None:
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        stats = await self.deps.service.stats(space)
        channels = sorted(await self.deps.service.autoindex_channels(space))
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(stats.by_kind.items()) if n)
        text = messages.STATS.format(
            items=stats.items,
            kinds=f" ({kinds})" if kinds else "",
            model=stats.model,
            channels=", ".join(f"<#{c}>" for c in channels) or "none",
        )
        await interaction.followup.send(text, ephemeral=True)
