"""KeywordIndex: real SQLite FTS5 in a temp folder."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import StoreError
from core.library.keyword import KeywordDoc, KeywordIndex, fts_query
from core.types import PUBLIC

FILLER = [
    "Team lunch is on Friday at noon in the big meeting room.",
    "The quarterly report shows revenue growth in all regions.",
    "Please remember to submit your timesheet before the weekend.",
    "Our office will be closed for the public holiday next week.",
    "The new coffee machine on the third floor is working again.",
    "Slides for the product launch are in the shared drive.",
]


def _docs(space: str, texts: list[str], audience: str = PUBLIC, prefix: str = "f") -> list[
        KeywordDoc]:
    return [KeywordDoc(f"{prefix}{i}#0", f"{prefix}{i}", space, audience, t)
            for i, t in enumerate(texts)]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[KeywordIndex]:
    idx = KeywordIndex(tmp_path / "kw" / "keyword.db")
    yield idx
    idx.close()


def test_rare_term_ranks_first_and_one_entry_per_item(index: KeywordIndex) -> None:
    index.add(_docs("s", FILLER))
    index.add([
        KeywordDoc("inv#0", "inv", "s", PUBLIC, "Invoice INV-20931 for consulting services."),
        KeywordDoc("inv#1", "inv", "s", PUBLIC, "Payment terms: the invoice is due on March 7."),
        KeywordDoc("other#0", "other", "s", PUBLIC, "An invoice template for the team."),
    ])
    hits = index.search("s", "when is the invoice INV-20931 due?", 10)
    ids = [i for i, _ in hits]
    assert ids[0] == "inv"
    assert ids.count("inv") == 1 and "other" in ids
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert [i for i, _ in index.search("s", "quarterly revenue", 3)] == ["f1"]


def test_stemming_case_and_accents(index: KeywordIndex) -> None:
    index.add(_docs("s", FILLER))
    index.add([KeywordDoc("cv#0", "cv", "s", PUBLIC, "Updated RÉSUMÉ: running marathons")])
    assert index.search("s", "resume", 5)[0][0] == "cv"
    assert index.search("s", "runs", 5)[0][0] == "cv"


def test_identifiers_match(index: KeywordIndex) -> None:
    index.add(_docs("s", FILLER))
    index.add([
        KeywordDoc("term#0", "term", "s", PUBLIC,
                   "curl: (7) Failed to connect: ERR_CONNECTION_REFUSED"),
        KeywordDoc("win#0", "win", "s", PUBLIC, "Windows Update failed with error 0x80070005"),
        KeywordDoc("inv#0", "inv", "s", PUBLIC, "Invoice INV-20931 due March 7"),
        KeywordDoc("inv2#0", "inv2", "s", PUBLIC, "Invoice INV-55555 and order 20931"),
    ])
    assert index.search("s", "ERR_CONNECTION_REFUSED", 5)[0][0] == "term"
    assert [i for i, _ in index.search("s", "0x80070005", 5)] == ["win"]
    # The exact identifier (a phrase) outranks a doc that only shares one of its parts.
    hits = index.search("s", "INV-20931", 5)
    assert [i for i, _ in hits][:1] == ["inv"]
    # Part of an identifier still finds it.
    assert "inv" in [i for i, _ in index.search("s", "20931", 5)]


def test_spaces_are_isolated(index: KeywordIndex) -> None:
    index.add(_docs("discord:1", FILLER, prefix="a"))
    index.add([KeywordDoc("secret#0", "secret", "discord:2", PUBLIC, "launch codes 1234")])
    assert index.search("discord:1", "launch codes", 10) != []  # "launch" is in FILLER
    assert "secret" not in [i for i, _ in index.search("discord:1", "launch codes 1234", 10)]
    assert index.search("discord:1", "1234", 10) == []
    assert [i for i, _ in index.search("discord:2", "codes", 10)] == ["secret"]
    assert index.count("discord:1") == len(FILLER) and index.count("discord:2") == 1
    assert index.count() == len(FILLER) + 1


def test_audience_filter(index: KeywordIndex) -> None:
    index.add([
        KeywordDoc("pub#0", "pub", "s", PUBLIC, "roadmap for everyone"),
        KeywordDoc("c1#0", "c1", "s", "chan-1", "roadmap private to channel one"),
        KeywordDoc("c2#0", "c2", "s", "chan-2", "roadmap private to channel two"),
    ])
    def ids(aud: list[str] | None) -> set[str]:
        return {i for i, _ in index.search("s", "roadmap", 10, aud)}
    assert ids([PUBLIC]) == {"pub"}
    assert ids([PUBLIC, "chan-1"]) == {"pub", "c1"}
    assert ids(None) == {"pub", "c1", "c2"}
    assert ids([]) == set()


def test_add_is_idempotent_upsert(index: KeywordIndex, tmp_path: Path) -> None:
    docs = _docs("s", FILLER)
    index.add(docs)
    index.add(docs)
    assert index.count() == len(FILLER)
    # Changing the text replaces the passage in the full-text index too.
    index.add([KeywordDoc("f0#0", "f0", "s", PUBLIC, "Team dinner moved to Thursday")])
    assert index.count() == len(FILLER)
    assert index.search("s", "lunch", 10) == []
    assert index.search("s", "dinner", 10)[0][0] == "f0"
    # The FTS index agrees with its content table.
    db = sqlite3.connect(index.path)
    db.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES ('integrity-check', 1)")
    db.close()


def test_delete_items(index: KeywordIndex) -> None:
    index.add(_docs("s", FILLER))
    index.add([KeywordDoc("x#0", "x", "s", PUBLIC, "zebra one"),
               KeywordDoc("x#1", "x", "s", PUBLIC, "zebra two")])
    index.delete_items(["x", "does-not-exist"])
    assert index.search("s", "zebra", 5) == []
    assert index.count() == len(FILLER)
    index.delete_items([])


NASTY = ['C++', "don't", "a:b", '"unbalanced', "AND", "NOT", "NEAR", "OR", "foo AND NOT bar",
         "NEAR(a b)", "(", ")", "*", "^start", "col:value", "-minus", "+plus", "😀🚀", "🙂 lunch",
         "'", '""', "\\", "a' OR '1'='1", "%", "_", "{x}", "[y]", "lunch*", "ü", "日本語のテキスト",
         "x" * 3000, "word " * 500, "   ", "", "\x00", "the", "What is it?", "zebra\x00lunch",
         "ze\x00bra", "\x00zebra"]


@pytest.mark.parametrize("query", NASTY)
def test_nasty_queries_do_not_raise(index: KeywordIndex, query: str) -> None:
    index.add(_docs("s", FILLER))
    hits = index.search("s", query, 5)
    assert isinstance(hits, list)
    assert all(isinstance(i, str) and isinstance(s, float) for i, s in hits)


def test_nul_byte_is_a_word_break(index: KeywordIndex) -> None:
    assert fts_query("zebra\x00lunch") == '"zebra" OR "lunch"'
    index.add(_docs("s", FILLER))
    hits = index.search("s", "coffee\x00machine", 5)
    assert [i for i, _ in hits] == ["f4"]


def test_query_building() -> None:
    assert fts_query("the INV-20931 invoice") == '"INV-20931" OR "invoice"'
    assert fts_query("The Who") == '"The" OR "Who"'  # nothing left without stopwords: keep all
    assert fts_query('say "hi" 😀') == '"say" OR "hi"'
    assert fts_query('a"b') == '"a""b"'
    assert fts_query("🙂 ++ --") == ""
    assert fts_query("Lunch lunch LUNCH") == '"Lunch"'
    assert fts_query("🙂 lunch") == '"lunch"'
    assert fts_query("AND OR NOT") != ""


def test_shared_file_between_connections_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    a, b = KeywordIndex(path), KeywordIndex(path)
    try:
        errors: list[BaseException] = []

        def writer(idx: KeywordIndex, tag: str) -> None:
            try:
                for n in range(20):
                    doc = KeywordDoc(f"{tag}{n}#0", f"{tag}{n}", "s", PUBLIC, f"note {tag} {n}")
                    idx.add([doc])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(idx, tag))
                   for idx, tag in ((a, "a"), (b, "b"), (a, "c"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert a.count() == b.count() == 60
        assert len(b.search("s", "note", 100)) == 60
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        a.close()
        b.close()


def test_closed_index_raises_store_error(tmp_path: Path) -> None:
    idx = KeywordIndex(tmp_path / "k.db")
    idx.close()
    idx.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        idx.search("s", "x", 1)


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="could not be opened"):
        KeywordIndex(blocker / "k.db")
