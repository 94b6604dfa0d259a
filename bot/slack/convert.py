"""Slack payloads -> core values (Scope, Origin, Turn, feedback). Pure functions, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.types import Origin, Turn

PLATFORM = "slack"

# Slack writes mentions as <@U123> or <@U123|name>; they are noise for retrieval.
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
# https://team.slack.com/archives/C0123/p1700000000123456[?thread_ts=...]
_LINK = re.compile(r"https?://[^/\s>|]+/archives/([A-Z0-9]+)/p(\d{7,})")

# Message subtypes that are a person writing (everything else is an edit, a join, a bot...).
USER_SUBTYPES = (None, "file_share", "thread_broadcast")

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff")
_PDF = "application/pdf"
_DOC_TYPES = ("text/plain", "text/markdown", "text/x-markdown", "text/csv",
              "text/tab-separated-values")
_DOC_FILETYPES = {"text", "markdown", "md", "txt", "csv", "tsv"}


def space_for(team_id: str) -> str:
    """One space per workspace: nothing crosses workspaces."""
    return f"slack:{team_id}"


def is_private_channel_id(channel: str) -> bool:
    """DMs (D...) and legacy private channels / group DMs (G...) are private by their id."""
    return channel.startswith(("D", "G"))


def origin_for(
    *,
    channel: str,
    message: str,
    file_id: str = "",
    author: str = "",
    private: bool = False,
    link: str = "",
) -> Origin:
    return Origin(
        platform=PLATFORM,
        channel=channel,
        message=message,
        attachment=file_id,
        author=author,
        private=private,
        link=link,
    )


def strip_mentions(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


def is_image(file: Mapping[str, Any]) -> bool:
    return str(file.get("mimetype", "")).lower() in _IMAGE_TYPES


def is_pdf(file: Mapping[str, Any]) -> bool:
    return str(file.get("mimetype", "")).lower() == _PDF or file.get("filetype") == "pdf"


def is_document(file: Mapping[str, Any]) -> bool:
    mimetype = str(file.get("mimetype", "")).lower()
    return mimetype in _DOC_TYPES or file.get("filetype") in _DOC_FILETYPES


def _usable(file: Mapping[str, Any]) -> bool:
    # Deleted files arrive as tombstones and over-quota files as hidden_by_limit: no bytes.
    return bool(file.get("id")) and file.get("mode") not in ("tombstone", "hidden_by_limit")


def query_files(files: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """Files that can be a query (images and PDFs), in message order."""
    return [f for f in files or () if _usable(f) and (is_image(f) or is_pdf(f))]


def indexable_files(files: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """Files worth indexing: images, PDFs and text documents."""
    return [
        f for f in files or () if _usable(f) and (is_image(f) or is_pdf(f) or is_document(f))
    ]


def file_name(file: Mapping[str, Any]) -> str:
    return str(file.get("name") or file.get("title") or file.get("id") or "file")


def parse_message_link(text: str) -> tuple[str, str] | None:
    """``(channel, ts)`` of a Slack message link (Slack wraps links in ``<...>``), else None."""
    match = _LINK.search(text)
    if not match:
        return None
    digits = match.group(2)
    return match.group(1), f"{digits[:-6]}.{digits[-6:]}"


def history_turns(
    messages: Sequence[Mapping[str, Any]],
    *,
    before_ts: str,
    asker: str,
    bot_user_id: str | None,
    bot_id: str | None = None,
    limit: int = 10,
) -> list[Turn]:
    """Earlier messages of a thread (``conversations.replies``) as conversation context.

    Only the asking user's messages (``user`` turns) and this bot's own replies
    (``assistant`` turns) are turns; other people's and other bots' messages are ``context``,
    which core quotes as untrusted data.
    """
    turns: list[Turn] = []
    for msg in messages:
        if _ts(msg.get("ts")) >= _ts(before_ts):
            continue
        if msg.get("subtype") not in (None, "file_share", "bot_message", "thread_broadcast"):
            continue
        text = strip_mentions(str(msg.get("text", "")))
        if not text:
            continue
        author = msg.get("user")
        is_bot = bool(msg.get("bot_id")) or msg.get("subtype") == "bot_message"
        ours = bool(bot_user_id and author == bot_user_id) or bool(
            bot_id and msg.get("bot_id") == bot_id)
        if ours:
            turns.append(Turn(role="assistant", text=text))
        elif author and author == asker and not is_bot:
            turns.append(Turn(role="user", text=text))
        else:
            turns.append(Turn(role="context", text=text,
                              author="another bot" if is_bot else "another user"))
    return turns[-limit:]


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def command_args(text: str) -> tuple[str, str]:
    """``"forget <link>"`` -> ``("forget", "<link>")``; the sub-command is lower-cased."""
    parts = (text or "").strip().split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""


@dataclass(frozen=True)
class FeedbackRef:
    """What a feedback button carries (see ``render.feedback_value``)."""

    question: str
    source_ids: list[str]


def parse_feedback(value: str) -> FeedbackRef:
    data = json.loads(value)
    return FeedbackRef(question=str(data.get("q", "")), source_ids=[str(s) for s in data["s"]])


def team_of(body: Mapping[str, Any]) -> str:
    """Workspace id of any payload shape (events, commands, interactivity)."""
    team = body.get("team")
    if isinstance(team, Mapping) and team.get("id"):
        return str(team["id"])
    if isinstance(team, str) and team:
        return team
    if body.get("team_id"):
        return str(body["team_id"])
    user = body.get("user")
    if isinstance(user, Mapping) and user.get("team_id"):
        return str(user["team_id"])
    return ""
