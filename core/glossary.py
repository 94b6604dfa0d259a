"""Plain-language meanings for the abbreviations and error messages that screenshots show.

A slide says "NPS fell to 31", a terminal says "EADDRINUSE :::3000"; people ask "did customers'
likelihood to recommend us drop?" and "why can't the server start on that port?". The small
local sentence model that matches them knows few abbreviations and no error meanings, so the
item's text gets a second, annotated version: each known abbreviation followed by its long form
and meaning (first occurrence only), each line with a known error signature followed by what
it usually means. That version is embedded as extra passages of the item (ids ``<item>#g<n>``,
see ``core.types.glossary_passage_id``): the plain text still matches exact questions, the
annotated one matches paraphrases. It is not keyword-indexed (the words are not on screen).
A question's abbreviations are explained the same way (not its error words: a question is
already in plain words), so "NPS" in a question meets "net promoter score" in a passage.

The terms themselves live in ``core.glossary_terms`` (data only); a team adds its own jargon
with ``[text] glossary_file`` (``read_glossary_file``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# An abbreviation is a whole word: not inside a longer word, path or identifier.
_EDGE_BEFORE = r"(?<![A-Za-z0-9_\-/.])"
_EDGE_AFTER = r"(?![A-Za-z0-9_\-/])"


@dataclass(frozen=True)
class Glossary:
    acronyms: dict[str, str]
    signatures: tuple[tuple[re.Pattern[str], str], ...]
    #: long form (lower case) -> (abbreviation, meaning): "Net Promoter Score by Quarter" is
    #: written out, but the question says "likelihood to recommend".
    long_forms: dict[str, tuple[str, str]]
    _pattern: re.Pattern[str]

    @classmethod
    def build(cls, acronyms: dict[str, str],
              signatures: list[tuple[str, str]]) -> Glossary:
        long_forms: dict[str, tuple[str, str]] = {}
        for abbr, value in acronyms.items():
            long, sep, meaning = value.partition(", ")
            # Only clean entries: several words, one sense ("a; or b" entries are ambiguous).
            if sep and len(long.split()) >= 2 and not re.search(r";| or |/|\(", value):
                long_forms.setdefault(long.lower(), (abbr, meaning))
        # One pass over the original line, so no inserted words are matched again. Longest
        # first: "CI/CD" before "CI", "employee net promoter score" before its tail. Group 1
        # is a long form (any case), group 2 an abbreviation (exact); "(?!)" never matches.
        phrases = "|".join(re.escape(p).replace(r"\ ", r"\s+")
                           for p in sorted(long_forms, key=len, reverse=True)) or "(?!)"
        keys = "|".join(re.escape(k) for k in sorted(acronyms, key=len, reverse=True)) or "(?!)"
        pattern = re.compile(rf"(?i:(?<!\w)({phrases})(?!\w))|{_EDGE_BEFORE}({keys}){_EDGE_AFTER}")
        return cls(dict(acronyms),
                   tuple((re.compile(p, re.IGNORECASE), m) for p, m in signatures),
                   long_forms, pattern)

    def annotate(self, text: str, *, errors: bool = True) -> str:
        """``text`` with meanings added, or "" when it holds no known term. ``errors=False``:
        abbreviations only, not what error lines mean."""
        seen: set[str] = set()
        seen_meanings: set[str] = set()
        added = False
        out: list[str] = []

        def expand(match: re.Match[str]) -> str:
            written, phrase, abbr = match.group(0), match.group(1), match.group(2)
            if phrase is not None:
                abbr, meaning = self.long_forms[" ".join(phrase.lower().split())]
                note = f"{abbr}, {meaning}"
            else:
                note = self.acronyms[abbr]
            if abbr in seen:
                return written
            seen.add(abbr)  # the long form and the abbreviation are explained once
            return f"{written} ({note})"

        for line in text.split("\n"):
            notes = [m for p, m in self.signatures
                     if errors and m not in seen_meanings and p.search(line)]
            new = self._pattern.sub(expand, line)
            if notes:
                seen_meanings.update(notes)
                new = f"{new} ({'; '.join(notes)})"
            added = added or new != line
            out.append(new)
        return "\n".join(out) if added else ""


def load_glossary(extra: str = "") -> Glossary:
    """The shipped terms, plus a team's own from ``extra`` (``[text] glossary_file``), which
    win over shipped ones of the same name. A bad file is a ``ConfigError`` naming the entry.
    Cached per file version: an edited file is read again by the next service opened."""
    try:
        st = Path(extra).expanduser().stat() if extra else None
    except OSError:
        st = None  # read_glossary_file reports it
    return _load_glossary(extra, (st.st_mtime_ns, st.st_size) if st else None)


@lru_cache(maxsize=4)
def _load_glossary(extra: str, version: tuple[int, int] | None) -> Glossary:
    from core.glossary_terms import ACRONYMS, SIGNATURES

    acronyms, signatures = dict(ACRONYMS), list(SIGNATURES)
    if extra:
        own_acronyms, own_signatures = read_glossary_file(Path(extra).expanduser())
        acronyms.update(own_acronyms)
        patterns = {p for p, _ in own_signatures}
        signatures = own_signatures + [(p, m) for p, m in signatures if p not in patterns]
    return Glossary.build(acronyms, signatures)


def default_glossary() -> Glossary:
    return load_glossary("")


def read_glossary_file(path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``[abbreviations]`` (exact, case-sensitive words -> "long form, meaning") and
    ``[errors]`` (regular expressions, case-insensitive -> what the error means), TOML."""
    import tomllib

    from core.errors import ConfigError

    key = "text.glossary_file"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"abbreviations", "errors"})
    if unknown:
        raise ConfigError(key, f"{path}: unknown table(s) {', '.join(unknown)}; "
                               "expected [abbreviations] and [errors]")
    tables: list[list[tuple[str, str]]] = []
    for table in ("abbreviations", "errors"):
        entries = doc.get(table, {})
        if not isinstance(entries, dict):
            raise ConfigError(key, f"{path}: [{table}] must be a table of \"term\" = \"meaning\"")
        pairs = []
        for term, meaning in entries.items():
            if not isinstance(meaning, str) or not meaning.strip() or not term.strip():
                raise ConfigError(key, f"{path}: [{table}] {term!r} needs a non-empty text")
            pairs.append((term.strip(), " ".join(meaning.split())))
        tables.append(pairs)
    for pattern, _ in tables[1]:
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(key, f"{path}: [errors] {pattern!r} is not a valid regular "
                                   f"expression: {exc}") from exc
    return dict(tables[0]), tables[1]


def annotated_passages(glossary: Glossary, item: str, text: str, max_chars: int
                       ) -> list[tuple[str, str]]:
    """The glossary passages of an item whose text is ``text`` (none when nothing is known)."""
    from core.media.chunking import split_passages
    from core.types import glossary_passage_id

    annotated = glossary.annotate(text)
    return [(glossary_passage_id(item, i), p.text)
            for i, p in enumerate(split_passages(annotated, max_chars=max_chars))]
