"""Split text into passages (for embedding and keyword search) and documents into chunks.

Both work on word tokens with their offsets in the original text, so every passage knows the
span it came from. A cut goes at the strongest boundary that keeps the passage at least half
full: paragraph > line > sentence > word; a word is cut only when it alone is too long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Boundary strength after a token (higher = better place to cut).
_INSIDE_WORD, _WORD, _SENTENCE, _LINE, _PARAGRAPH = -1, 0, 1, 2, 3

_TOKEN = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]”’]*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Passage:
    """A piece of text and its ``[start, end)`` character span in the original text.

    Document chunks may carry their section heading in front of ``text``; the span is then
    the body's span, without the repeated heading.
    """

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    after: int  # boundary strength between this token and the next


def _tokens(text: str, max_chars: int) -> list[_Tok]:
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    toks: list[_Tok] = []
    for i, (start, end) in enumerate(spans):
        if i + 1 < len(spans):
            gap = text[end : spans[i + 1][0]]
            newlines = gap.count("\n")
            if newlines >= 2:
                after = _PARAGRAPH
            elif newlines == 1:
                after = _LINE
            elif _SENTENCE_END.search(text[start:end]):
                after = _SENTENCE
            else:
                after = _WORD
        else:
            after = _PARAGRAPH
        # A single token longer than a passage (a URL, base64, a table row without spaces)
        # is the one case where a cut falls inside a word.
        while end - start > max_chars:
            toks.append(_Tok(start, start + max_chars, _INSIDE_WORD))
            start += max_chars
        toks.append(_Tok(start, end, after))
    return toks


def _sep(tok: _Tok, keep_lines: bool) -> str:
    if tok.after == _INSIDE_WORD:
        return ""
    if keep_lines and tok.after == _PARAGRAPH:
        return "\n\n"
    if keep_lines and tok.after == _LINE:
        return "\n"
    return " "


def _render(text: str, toks: list[_Tok], keep_lines: bool) -> str:
    parts: list[str] = []
    for i, tok in enumerate(toks):
        parts.append(text[tok.start : tok.end])
        if i + 1 < len(toks):
            parts.append(_sep(tok, keep_lines))
    return "".join(parts)


def _split(
    text: str, max_chars: int, overlap: int, *, keep_lines: bool, base: int = 0
) -> list[Passage]:
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    if not 0 <= overlap < max_chars:
        raise ValueError("overlap must be >= 0 and < max_chars")
    toks = _tokens(text, max_chars)
    passages: list[Passage] = []
    a = 0
    while a < len(toks):
        # Furthest token that still fits, and the rendered length at each candidate end.
        length = 0
        ends: list[tuple[int, int]] = []  # (token index, length up to and including it)
        b = a
        while b < len(toks):
            add = toks[b].end - toks[b].start
            if b > a:
                add += len(_sep(toks[b - 1], keep_lines))
            if length + add > max_chars and b > a:
                break
            length += add
            ends.append((b, length))
            b += 1
        last = ends[-1][0]
        if last == len(toks) - 1:
            cut = last
        else:
            # The strongest boundary among ends that keep the passage at least half full;
            # the latest one on ties.
            full = [i for i, n in ends if n >= max_chars // 2] or [i for i, _ in ends]
            best = max(toks[i].after for i in full)
            cut = max(i for i in full if toks[i].after == best)
        chosen = toks[a : cut + 1]
        rendered = _render(text, chosen, keep_lines)
        passages.append(Passage(rendered, base + chosen[0].start, base + chosen[-1].end))
        if cut == len(toks) - 1:
            break
        a = _overlap_start(toks, a, cut, overlap, max_chars)
    return passages


def _overlap_start(toks: list[_Tok], a: int, cut: int, overlap: int, max_chars: int) -> int:
    """First token of the next passage: back from ``cut`` by up to ``overlap`` characters,
    starting at a sentence/line boundary inside that window when there is one."""
    nxt = cut + 1
    if overlap <= 0:
        return nxt
    # The overlap must leave room for the next new token, or the passage would repeat itself.
    room = max_chars - (toks[nxt].end - toks[nxt].start) - 2
    limit = toks[cut].end - min(overlap, room)
    candidates = [i for i in range(cut, a, -1) if toks[i].start >= limit]
    if not candidates:
        return nxt
    # candidates run from cut backwards; prefer the earliest one right after a sentence end.
    for i in reversed(candidates):
        if toks[i - 1].after >= _SENTENCE:
            return i
    start = candidates[-1]
    return start if start > a else nxt


def split_passages(text: str, max_chars: int = 800, overlap: int = 100) -> list[Passage]:
    """Passages of at most ``max_chars`` (whitespace normalised to single spaces) with about
    ``overlap`` characters shared by neighbours. Whitespace-only text gives ``[]``."""
    return _split(text, max_chars, overlap, keep_lines=False)


@dataclass(frozen=True)
class _Section:
    heading: str  # "" before the first heading
    start: int  # offset of the heading line (or of the body when there is no heading)
    body_start: int
    end: int


def _sections(text: str) -> list[_Section]:
    """Markdown sections by ATX headings (``#`` .. ``######``), ignoring fenced code."""
    sections: list[_Section] = []
    heading, start, body_start = "", 0, 0
    in_fence = False
    pos = 0
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _HEADING.match(line.rstrip("\r\n"))):
            if text[start:pos].strip():
                sections.append(_Section(heading, start, body_start, pos))
            heading, start, body_start = m.group(2).strip(), pos, pos + len(line)
        pos += len(line)
    if text[start:].strip():
        sections.append(_Section(heading, start, body_start, len(text)))
    return sections


def split_document(text: str, chunk_chars: int = 1200) -> list[Passage]:
    """Chunks of a .txt/.md document, each one retrievable item.

    A markdown heading starts a new chunk (small neighbouring sections share one chunk while
    they fit); a long section is split and its later chunks start with the section's heading
    so they stay findable by it. Line breaks are kept; runs of blank lines become one.
    """
    overlap = min(150, chunk_chars // 8)
    chunks: list[Passage] = []
    pending: Passage | None = None  # whole small sections being packed together
    for sec in _sections(text):
        whole = _split(text[sec.start : sec.end], 10**9, 0, keep_lines=True, base=sec.start)
        if not whole:
            continue
        piece = whole[0]
        if len(piece.text) <= chunk_chars:
            if pending is not None and len(pending.text) + 2 + len(piece.text) <= chunk_chars:
                pending = Passage(pending.text + "\n\n" + piece.text, pending.start, piece.end)
            else:
                if pending is not None:
                    chunks.append(pending)
                pending = piece
            continue
        if pending is not None:
            chunks.append(pending)
            pending = None
        prefix = f"{sec.heading}\n\n" if sec.heading else ""
        heading_line = text[sec.start : sec.body_start].strip()
        budget = max(chunk_chars - len(prefix) - len(heading_line) - 2, chunk_chars // 2)
        body = text[sec.body_start : sec.end]
        step = min(overlap, budget // 4)
        parts = _split(body, budget, step, keep_lines=True, base=sec.body_start)
        for i, part in enumerate(parts):
            if i == 0 and sec.heading:
                # The first chunk starts at the heading line itself.
                chunks.append(Passage(f"{heading_line}\n\n{part.text}", sec.start, part.end))
            else:
                chunks.append(Passage(prefix + part.text, part.start, part.end))
    if pending is not None:
        chunks.append(pending)
    return chunks
