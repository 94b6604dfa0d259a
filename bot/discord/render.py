"""Core results -> Discord content, embeds and files, within Discord's limits.

Everything that came from outside (file names, OCR/page text, questions, model answers) goes
through :mod:`bot.discord.markdown` first: it is shown, never interpreted.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import discord

from bot.discord import messages
from bot.discord.markdown import escape_within, neutralise
from core.types import Answer, Hit

CONTENT_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_TITLE_LIMIT = 256
MAX_EMBEDS = 10  # also the most files one message may carry
# Several embeds share a 6000-character budget per message: keep each one small.
_SNIPPET = 200
_TITLE = 200
MAX_EXTRA_MESSAGES = 3  # an answer longer than this many messages is truncated
EMBED_COLOR = discord.Colour(0x5865F2)


@dataclass
class Rendered:
    """One message: text, embeds and the thumbnails they show (fresh File objects)."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[discord.File] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # item ids shown, in order


def split_text(text: str, limit: int = CONTENT_LIMIT) -> list[str]:
    """Split at paragraph, line or word boundaries into pieces of at most ``limit`` chars."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit  # one very long word: hard cut
            if text[cut - 1] == "\\":  # never split an escape from what it escapes
                cut -= 1
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


def title_of(hit: Hit) -> str:
    name = hit.name or PurePosixPath(hit.source).name or hit.source or hit.id
    if hit.page is not None:
        name = f"{name} (page {hit.page})"
    return name


def _link(hit: Hit) -> str | None:
    link = hit.origin.link or (hit.source if hit.source.startswith("https://") else "")
    return link if link.startswith("https://") else None


def hit_embed(
    n: int, hit: Hit, *, thumb: str | None, big: bool, cited: bool = True
) -> discord.Embed:
    lines = [messages.SCORE.format(score=hit.score)]
    if hit.signals:
        lines[0] += " · " + ", ".join(sorted(hit.signals))
    if not cited:
        lines[0] += f" · {messages.ALSO_RETRIEVED}"
    if hit.text:
        lines.append(escape_within(" ".join(hit.text.split()), _SNIPPET))
    embed = discord.Embed(
        title=f"[{n}] " + escape_within(title_of(hit), _TITLE),
        url=_link(hit),
        description="\n".join(lines),
        colour=EMBED_COLOR,
    )
    if thumb is not None:
        if big:
            embed.set_image(url=f"attachment://{thumb}")
        else:
            embed.set_thumbnail(url=f"attachment://{thumb}")
    embed.set_footer(text=f"id {hit.id}")
    return embed


def _has_thumbnail(hit: Hit) -> bool:
    return bool(hit.thumbnail) and os.path.isfile(hit.thumbnail or "")


def sources(
    hits: list[Hit], max_thumbnails: int, *, big: bool, cited: set[int] | None = None
) -> Rendered:
    """Embeds for up to 10 hits; the first ``max_thumbnails`` with a thumbnail get one."""
    out = Rendered()
    for n, hit in enumerate(hits[:MAX_EMBEDS], 1):
        thumb = None
        if len(out.files) < max_thumbnails and _has_thumbnail(hit):
            thumb = f"thumb-{n}.jpg"
            # Bytes, not a path: an open file would leak if the reply is never sent.
            data = Path(str(hit.thumbnail)).read_bytes()  # a small JPEG
            out.files.append(discord.File(io.BytesIO(data), filename=thumb))
        is_cited = cited is None or n in cited
        out.embeds.append(hit_embed(n, hit, thumb=thumb, big=big, cited=is_cited))
        out.ids.append(hit.id)
    return out


def gallery(query: str, hits: list[Hit], max_thumbnails: int) -> Rendered:
    """Search / similar results: a header line and one embed (with image) per match."""
    out = sources(hits, max_thumbnails, big=True)
    out.content = _quoted(query).rstrip("\n")
    return out


def answer_pieces(question: str, answer: Answer, max_thumbnails: int) -> list[Rendered]:
    """The final answer: first message has text + source embeds + thumbnails; overflow follows."""
    body = neutralise(answer.text.strip())  # model text may quote sources: links defused
    if answer.status == "no_sources":
        body = body or messages.NO_SOURCES_ANSWER
    elif answer.status == "unavailable":
        body = f"{messages.ANSWER_UNAVAILABLE}\n\n{body}".strip()
    header = _quoted(question)
    chunks = split_text(header + body) or [header.strip() or messages.NO_SOURCES_ANSWER]
    if len(chunks) > 1 + MAX_EXTRA_MESSAGES:
        chunks = chunks[: 1 + MAX_EXTRA_MESSAGES]
        last = chunks[-1]
        chunks[-1] = (
            last[: CONTENT_LIMIT - len(messages.ANSWER_TRUNCATED)] + messages.ANSWER_TRUNCATED
        )
    first = sources(answer.sources, max_thumbnails, big=False, cited=set(answer.citations) or None)
    first.content = chunks[0]
    return [first] + [Rendered(content=c) for c in chunks[1:]]


def streaming(question: str, text: str) -> str:
    """The reply while the answer is still being written (always within the content limit)."""
    body = _quoted(question) + neutralise(text.strip())
    if len(body) > CONTENT_LIMIT - 2:
        # Show the most recent part: that is what the reader is following.
        body = "…" + body[-(CONTENT_LIMIT - 3) :]
    return body + " ▌"


def _quoted(question: str) -> str:
    """The question as the reply's first line (a quote), shown literally."""
    return "> " + escape_within(" ".join(question.split()), 300) + "\n" if question else ""
