"""Buttons on results: Helpful / Not helpful feedback and "More like this".

They are ``DynamicItem``s: the bot re-creates them from the ``custom_id`` of any message, so
they keep working after a restart. Feedback needs the question and the item ids that were
shown: they live in a small bounded in-memory map keyed by a token in the ``custom_id``; after
a restart they are read back from the message itself (the quoted question, "id ..." footers).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import discord

from bot.discord import failure, messages

if TYPE_CHECKING:
    from bot.discord.app import PixragBot

log = logging.getLogger(__name__)

CUSTOM_ID_LIMIT = 100
_FOOTER_ID = re.compile(r"^id (\S+)$")


@dataclass(frozen=True)
class Shown:
    question: str
    ids: tuple[str, ...]


class ShownMemory:
    """Bounded token -> what a reply showed (oldest entries forgotten first)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: OrderedDict[str, Shown] = OrderedDict()

    def remember(self, question: str, ids: list[str]) -> str:
        token = secrets.token_hex(6)
        self._items[token] = Shown(question, tuple(ids))
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return token

    def get(self, token: str) -> Shown | None:
        return self._items.get(token)


def shown_from_message(message: discord.Message | None) -> Shown | None:
    """Recover question and item ids from a rendered reply (after a restart)."""
    if message is None:
        return None
    ids = []
    for embed in message.embeds:
        match = _FOOTER_ID.match(embed.footer.text or "") if embed.footer else None
        if match:
            ids.append(match[1])
    first = (message.content or "").split("\n", 1)[0]
    question = first[2:].strip() if first.startswith("> ") else ""
    if not ids and not question:
        return None
    return Shown(question, tuple(ids))


def _bot(interaction: discord.Interaction) -> PixragBot:
    return cast("PixragBot", interaction.client)


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
            await _bot(interaction).on_feedback(interaction, self.verdict, self.token)
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
            await _bot(interaction).on_more_like(interaction, self.item_id)
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
