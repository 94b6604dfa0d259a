"""The adapter's one error handler (slash commands, context menus and buttons).

What a user sees is :func:`core.errors.public_message`: a user error's own message, an
operational error's fixed sentence (the detail, with library text and paths, goes to the log
only), or, for anything else (a bug), a short apology; never a traceback. The adapter's own
refusals are written in Discord markdown already; core's messages name user input (file
names), so they are escaped.
"""

from __future__ import annotations

import contextlib
import logging

import discord
from discord import app_commands

from bot.discord import messages
from bot.discord.convert import Refused
from bot.discord.markdown import escape
from core.errors import OperationalError, RateLimited, public_message

log = logging.getLogger(__name__)


class Stopping(app_commands.CheckFailure):
    """A command that arrived while the bot is stopping (it would not be answered)."""


def _unwrap(error: BaseException) -> BaseException:
    while isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        cause = error.__cause__ or getattr(error, "original", None)
        if cause is None or cause is error:
            break
        error = cause
    return error


def _describe(interaction: discord.Interaction) -> str:
    command = interaction.command.qualified_name if interaction.command else None
    custom_id = (interaction.data or {}).get("custom_id") if interaction.data else None
    return (
        f"command={command or custom_id!s} guild={interaction.guild_id} "
        f"channel={interaction.channel_id} user={interaction.user.id}"
    )


def user_message(error: BaseException, interaction: discord.Interaction) -> str | None:
    """What to tell the user, or None when ``error`` is a bug."""
    if isinstance(error, RateLimited):
        limit = getattr(interaction.client, "rate_per_minute", 0)
        return messages.rate_limited(limit, error.retry_after) if limit else str(error)
    if isinstance(error, Refused):
        return str(error)
    text = public_message(error)
    if text is not None:
        return escape(text)
    if isinstance(error, Stopping):
        return messages.STOPPING
    if isinstance(error, app_commands.NoPrivateMessage):
        return messages.DM_ONLY_GUILD
    if isinstance(error, app_commands.CheckFailure):
        return messages.NOT_ALLOWED_HERE
    return None


async def handle(interaction: discord.Interaction, error: BaseException) -> None:
    error = _unwrap(error)
    text = user_message(error, interaction)
    if text is None:
        log.error("unexpected error handling %s", _describe(interaction), exc_info=error)
        text = messages.APOLOGY
    elif isinstance(error, OperationalError):
        # The detail (library text, paths) is for the operator only.
        log.error("%s handling %s: %s", type(error).__name__, _describe(interaction), error)
    else:
        log.info("refused %s: %s", _describe(interaction), text)
    await send_ephemeral(interaction, text)


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Reply privately, whatever state the interaction is in."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        # A public "thinking…" reply (or a half-streamed answer) would show the error to
        # everyone, and the first followup would replace it: remove it, then reply privately.
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            with contextlib.suppress(discord.NotFound):
                await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:  # the interaction expired or vanished: nothing to do
        log.warning("could not send error reply (%s): %s", _describe(interaction), exc)
