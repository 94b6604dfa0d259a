"""Passage splitting and document chunking."""

from __future__ import annotations

import re

import pytest

from core.media.chunking import Passage, split_document, split_passages

PROSE = (
    "Quarterly revenue grew 12% in Europe. Costs were flat.\n\n"
    "The board approved the budget for 2026. Hiring resumes in March!\n"
    "Questions go to finance@example.com.\n\n"
    "Appendix: the invoice INV-20931 is due on March 7.\n"
) * 6


def _norm(text: str) -> str:
    return " ".join(text.split())


def _check_invariants(text: str, passages: list[Passage], max_chars: int) -> None:
    words = text.split()
    for p in passages:
        assert 0 < len(p.text) <= max_chars
        assert p.text == p.text.strip() and p.text
        # The passage is exactly its span, whitespace normalised.
        assert p.text == _norm(text[p.start : p.end])
        # Never cut inside a word: span edges sit on whitespace or the text's ends.
        assert p.start == 0 or text[p.start - 1].isspace()
        assert p.end == len(text) or text[p.end].isspace()
    # Everything is covered, in order, by consecutive passages.
    assert passages[0].start == len(text) - len(text.lstrip())
    assert passages[-1].end == len(text.rstrip())
    for prev, nxt in zip(passages, passages[1:], strict=False):
        assert prev.start < nxt.start <= prev.end + 2 and nxt.end > prev.end
    joined = " ".join(p.text for p in passages).split()
    assert set(joined) == set(words)


@pytest.mark.parametrize(("max_chars", "overlap"), [(80, 0), (120, 30), (300, 100), (800, 100)])
def test_invariants(max_chars: int, overlap: int) -> None:
    _check_invariants(PROSE, split_passages(PROSE, max_chars, overlap), max_chars)


def test_short_text_is_one_normalised_passage() -> None:
    text = "  Hello\t\tworld\r\n\r\n  second   line  "
    assert split_passages(text) == [Passage("Hello world second line", 2, len(text) - 2)]


def test_whitespace_only_and_empty() -> None:
    assert split_passages("") == []
    assert split_passages(" \n\t\n ") == []
    assert split_document("\n\n   \n") == []


def test_prefers_paragraph_then_sentence_boundaries() -> None:
    passages = split_passages(PROSE, 200, 0)
    # Every passage ends at the end of a sentence (all sentences here are short enough).
    assert all(re.search(r"[.!?]$", p.text) for p in passages)
    # And most at a paragraph end: the strongest boundary that keeps passages half full.
    para_ends = {m.start() for m in re.finditer(r"\n\n", PROSE)}
    assert sum(p.end in para_ends for p in passages) >= len(passages) // 2


def test_overlap_repeats_the_tail_of_the_previous_passage() -> None:
    passages = split_passages(PROSE, 150, 60)
    overlaps = [max(0, prev.end - nxt.start) for prev, nxt in zip(passages, passages[1:],
                                                                  strict=False)]
    assert any(o > 0 for o in overlaps)
    assert all(o <= 60 for o in overlaps)
    no_overlap = split_passages(PROSE, 150, 0)
    assert all(nxt.start > prev.end for prev, nxt in zip(no_overlap, no_overlap[1:],
                                                         strict=False))


def test_single_overlong_token_is_cut_and_neighbours_kept() -> None:
    blob = "A" * 250
    text = f"start {blob} end"
    passages = split_passages(text, 100, 20)
    assert all(len(p.text) <= 100 for p in passages)
    assert sum(p.text.count("A") for p in passages) >= 250
    # The long token is cut into max_chars pieces; words around it stay whole.
    assert [(p.start, p.end) for p in passages] == [(0, 5), (6, 106), (106, 206), (206, 260)]
    assert passages[0].text.startswith("start")
    assert passages[-1].text.endswith("end")


def test_long_text_without_any_space() -> None:
    passages = split_passages("x" * 2000, 800, 100)
    assert [(p.start, p.end) for p in passages] == [(0, 800), (800, 1600), (1600, 2000)]


def test_deterministic() -> None:
    assert split_passages(PROSE, 123, 17) == split_passages(PROSE, 123, 17)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        split_passages("abc", 0)
    with pytest.raises(ValueError):
        split_passages("abc", 100, 100)


MARKDOWN = """# Deploy guide

Short intro.

## Install

""" + "Download the package and run the installer with admin rights. " * 40 + """

## Troubleshooting

If the service fails with ERR_CONNECTION_REFUSED, check the firewall.

```bash
# this is a comment, not a heading
systemctl restart pixrag
```

## FAQ

Nothing yet.
"""


def test_document_chunks_start_at_headings_and_repeat_them() -> None:
    chunks = split_document(MARKDOWN, 600)
    assert all(len(c.text) <= 600 for c in chunks)
    assert chunks[0].text.startswith("# Deploy guide") and "Short intro." in chunks[0].text
    install = [c for c in chunks if "Download the package" in c.text]
    assert len(install) >= 3
    assert install[0].text.startswith("## Install\n\nDownload")
    # Later chunks of the section keep its heading at the top so they stay findable by it.
    assert all(c.text.startswith("Install\n\n") for c in install[1:])
    trouble = next(c for c in chunks if "ERR_CONNECTION_REFUSED" in c.text)
    assert trouble.text.startswith("## Troubleshooting")
    # A "#" line inside a code fence is not a heading, and line breaks survive.
    assert "# this is a comment, not a heading\nsystemctl restart pixrag" in trouble.text
    # Small neighbouring sections share a chunk.
    assert "## FAQ" in trouble.text
    # Spans point into the original text.
    for c in chunks:
        assert MARKDOWN[c.start : c.end].strip()
        assert MARKDOWN[c.start : c.end].split()[-1] == c.text.split()[-1]
    assert MARKDOWN.index("## Install") == install[0].start


def test_plain_text_document_without_headings() -> None:
    chunks = split_document(PROSE, 400)
    assert len(chunks) > 1
    assert all(len(c.text) <= 400 for c in chunks)
    # Paragraph breaks are kept for display (documents are shown to users).
    assert any("\n\n" in c.text or "\n" in c.text for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(PROSE.rstrip())


def test_small_document_is_one_chunk() -> None:
    text = "# Notes\n\nBuy milk.\n\n\n\nCall Bob.\n"
    assert split_document(text) == [Passage("# Notes\n\nBuy milk.\n\nCall Bob.", 0,
                                            len(text) - 1)]
