"""What a reply showed (its question and item ids), for the feedback buttons.

A small bounded in-memory map keyed by a token in each button's ``custom_id``; after a restart
the same facts are read back from the message itself (the quoted question, "id ..." footers).
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

import discord

_FOOTER_ID = re.compile(r"^id (\S+)$")
_ESCAPED = re.compile(r"\\([^\w\s])")  # render escapes the quoted question: undo it


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
    question = _ESCAPED.sub(r"\1", first[2:].strip()) if first.startswith("> ") else ""
    if not ids and not question:
        return None
    return Shown(question, tuple(ids))
