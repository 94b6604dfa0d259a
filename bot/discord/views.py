"""Buttons on results: Helpful / Not helpful feedback and "More like this".

They are ``DynamicItem``s: the bot re-creates them from the ``custom_id`` of any message, so
they keep working after a restart. A click is handed to the client (the bot), which
implements :class:`ButtonHost`; this module does not import the bot or the reply flows, so
imports keep one direction (the flows import this module to build their views).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal, Protocol, cast

import discord

from bot.discord import failure, messages

log = logging.getLogger(__name__)

CUSTOM_ID_LIMIT = 100


class ButtonHost(Protocol):
    """What the client behind a button click must offer."""

    async def on_feedback(
        self, interaction: discord.Interaction, verdict: Literal["up", "down"], token: str
    ) -> None: ...

    async def on_more_like(self, interaction: discord.Interaction, item_id: str) -> None: ...


def _host(interaction: discord.Interaction) -> ButtonHost:
    return cast(ButtonHost, interaction.client)


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pxr:fb:(?P<verdict>up|down):(?P<token>[0-9a-f]{1,32})",
):
    def __init__(self, verdict: Literal["up", "down"], token: str) -> None:
        self.verdict: Literal["up", "down"] = verdict
        self.token = token
        label = messages.HELPFUL if verdict == "up" else messages.NOT_HELPFUL
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="👍" if verdict == "up" else "👎",
                style=discord.ButtonStyle.secondary,
                custom_id=f"pxr:fb:{verdict}:{token}",
                row=0,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FeedbackButton:
        return cls(cast(Literal["up", "down"], match["verdict"]), match["token"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await _host(interaction).on_feedback(interaction, self.verdict, self.token)
        except Exception as exc:  # one handler for commands and buttons alike
            await failure.handle(interaction, exc)


class MoreButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pxr:more:(?P<item>[^:]+)",
):
    def __init__(self, item_id: str, n: int = 1) -> None:
        self.item_id = item_id
        super().__init__(
            discord.ui.Button(
                label=messages.MORE_LIKE.format(n=n),
                style=discord.ButtonStyle.primary,
                custom_id=f"pxr:more:{item_id}",
                row=1 + (n - 1) // 5,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> MoreButton:
        label = getattr(item, "label", "") or ""
        digits = re.findall(r"\d+", label)
        return cls(match["item"], int(digits[-1]) if digits else 1)

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await _host(interaction).on_more_like(interaction, self.item_id)
        except Exception as exc:
            await failure.handle(interaction, exc)


def result_view(token: str, seeds: list[tuple[int, str]]) -> discord.ui.View:
    """Feedback buttons, plus "More like #n" for each (n, item id) seed (at most 20)."""
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton("up", token))
    view.add_item(FeedbackButton("down", token))
    for n, item_id in seeds[:20]:
        if len(f"pxr:more:{item_id}") <= CUSTOM_ID_LIMIT and ":" not in item_id:
            view.add_item(MoreButton(item_id, n))
    return view
