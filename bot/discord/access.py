"""Who may do what: managers index and forget anything, admins change auto-indexing."""

from __future__ import annotations

import discord

from bot.discord import messages
from bot.discord.convert import Refused
from core.config import Settings


def is_manager(settings: Settings, interaction: discord.Interaction) -> bool:
    """May index and forget anything: the configured role, else Manage Messages. DMs: yes."""
    if interaction.guild_id is None:
        return True  # a DM space belongs to that user
    perms = interaction.permissions
    if perms.administrator:
        return True
    role = settings.discord.manager_role
    if role:
        user = interaction.user
        roles = user.roles if isinstance(user, discord.Member) else []
        return any(r.name == role or str(r.id) == role for r in roles)
    return perms.manage_messages


def require_manager(settings: Settings, interaction: discord.Interaction) -> None:
    if not is_manager(settings, interaction):
        role = settings.discord.manager_role
        raise Refused(
            messages.NOT_MANAGER.format(role=role) if role else messages.NOT_MANAGER_PERMISSION
        )


def is_admin(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild
