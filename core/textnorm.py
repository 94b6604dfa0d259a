"""Text from users, made safe at the service edge before anything else sees it.

Queries, questions and file names arrive from chat platforms, the command line and the Python
facade. Some of what a ``str`` can hold breaks the components behind the service, and one bad
query must not fail the requests batched with it:

- lone surrogates (``"\\ud800"``: from JSON ``\\u`` escapes or ``surrogateescape`` file names)
  cannot be encoded as UTF-8: the tokenizer, SQLite and HTTP clients raise;
- NUL ends an SQLite FTS5 string early ("unterminated string"), other control characters are
  invisible noise that can hide text from a reader;
- the same word in two Unicode forms (composed "é" vs "e" + combining accent) would not match;
- a megabyte of text costs every model it reaches.
"""

from __future__ import annotations

import unicodedata

MAX_TEXT_CHARS = 4000  # questions and queries
MAX_NAME_CHARS = 255  # file names (the usual file-system limit)
REPLACEMENT = "\ufffd"
_KEEP = frozenset("\t\n\r")  # control characters that carry layout in a question


def _fix_surrogates(text: str) -> str:
    """Valid surrogate pairs joined into their character, lone halves replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass pairs up what can be paired; what cannot decodes as U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _drop_controls(text: str) -> str:
    return "".join(
        ch for ch in text if ch in _KEEP or unicodedata.category(ch) != "Cc"
    )


def normalize_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``text`` safe for every component: lone surrogates replaced, NUL and other control
    characters (except tab and line breaks) removed, Unicode NFC, surrounding white space
    stripped, at most ``max_chars`` characters."""
    # Pre-cut so a megabyte of input costs no more than a few times the cap to clean.
    clean = unicodedata.normalize("NFC", _drop_controls(_fix_surrogates(text[: max_chars * 4])))
    return clean.strip()[:max_chars].rstrip()


def normalize_name(name: str, default: str = "image") -> str:
    """A user-supplied file name for messages and logs: one line, normalised, capped;
    ``default`` when nothing is left."""
    flat = " ".join(normalize_text(name, MAX_NAME_CHARS * 4).split())
    return flat[:MAX_NAME_CHARS] or default
