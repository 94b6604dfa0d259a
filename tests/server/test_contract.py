"""The SAME assertions against each embedded store and its server-mode twin: SQLite Catalog vs
PgCatalog, FTS5 KeywordIndex vs PgKeywordIndex, local BlobStore vs S3BlobStore."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.library.blobs import BlobStore
from core.library.catalog import Catalog, ItemRow
from core.library.keyword import KeywordDoc, KeywordIndex
from core.library.pg_catalog import PgCatalog
from core.library.pg_keyword import PgKeywordIndex
from core.library.s3_blobs import S3BlobStore
from core.types import PUBLIC


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        cat: Any = Catalog(tmp_path / "catalog.db")
    else:
        cat = PgCatalog(request.getfixturevalue("pg_url"))
    yield cat
    cat.close()


@pytest.fixture(params=["sqlite", "postgres"])
def keyword(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        idx: Any = KeywordIndex(tmp_path / "kw" / "keyword.db")
    else:
        idx = PgKeywordIndex(request.getfixturevalue("pg_url"))
    yield idx
    idx.close()


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "local":
        yield BlobStore(tmp_path / "blobs")
        return
    store = S3BlobStore(request.getfixturevalue("s3_url"), tmp_path / "cache",
                        endpoint_url=request.getfixturevalue("s3_endpoint"))
    yield store
    store.close()


def row(i: int, space: str = "s", **kw: Any) -> ItemRow:
    values: dict[str, Any] = dict(
        id=f"{space}:item{i}", space=space, kind="image", source=f"/data/img{i}.png",
        name=f"img{i}.png", page=None, file_sha=f"{i:064x}", image_sha=f"{i:064x}",
        text=f"text {i}", phash=f"{i:016x}", created=1000.0 + i)
    values.update(kw)
    return ItemRow(**values)


# catalog ------------------------------------------------------------------------------------
def test_catalog_items_roundtrip(catalog: Any) -> None:
    rows = [row(1), row(2, kind="page", page=3, private=True, audience="chan-1",
                        platform="discord", channel="c", message="m", attachment="a",
                        author="u", link="https://x/y", text="déjà vu ✓")]
    catalog.add(rows)
    got = catalog.get("s", ["s:item2", "s:item1", "s:item1", "nope"])
    assert set(got) == {"s:item1", "s:item2"}
    assert got["s:item2"] == rows[1] and got["s:item1"] == rows[0]
    assert isinstance(got["s:item2"].private, bool) and got["s:item2"].page == 3
    assert catalog.get("other", ["s:item1"]) == {}
    assert catalog.get("s", []) == {}
    assert catalog.existing("s", ["s:item1", "x"]) == {"s:item1"}
    assert catalog.existing("s", []) == set()


def test_catalog_add_replaces_and_is_idempotent(catalog: Any) -> None:
    catalog.add([row(1), row(2)])
    catalog.add([row(1, text="new text", phash="")])
    catalog.add([])
    assert catalog.get("s", ["s:item1"])["s:item1"].text == "new text"
    assert len(catalog.all("s")) == 2
    # Within one batch the last row for an id wins.
    catalog.add([row(3, text="first"), row(3, text="second")])
    assert catalog.get("s", ["s:item3"])["s:item3"].text == "second"


def test_catalog_find_and_prefix(catalog: Any) -> None:
    catalog.add([row(1, message="m1", channel="c1", attachment="a1"),
                 row(2, message="m1", channel="c2", source="/data/sub/x_%.png"),
                 row(3, space="t", message="m1")])
    assert {r.id for r in catalog.find("s", message="m1")} == {"s:item1", "s:item2"}
    assert [r.id for r in catalog.find("s", message="m1", channel="c2")] == ["s:item2"]
    assert [r.id for r in catalog.find("s", attachment="a1")] == ["s:item1"]
    assert [r.id for r in catalog.find("s", file_sha=f"{2:064x}")] == ["s:item2"]
    assert [r.id for r in catalog.find("s", source="/data/img1.png")] == ["s:item1"]
    assert catalog.find("s", source="/nope") == []
    assert len(catalog.find("s")) == 2
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/sub/")] == ["s:item2"]
    # LIKE wildcards in a prefix are plain characters.
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/sub/x_%")] == ["s:item2"]
    assert catalog.find_by_source_prefix("s", "/data/sub/x__") == []
    assert catalog.find_by_source_prefix("s", "/data/%") == []
    assert {r.id for r in catalog.find_by_source_prefix("s", "/data/")} == {"s:item1",
                                                                             "s:item2"}


def test_catalog_prefix_is_case_sensitive_and_literal(catalog: Any) -> None:
    # Paths differ by case on Linux: forgetting /data/Pics/ must leave /data/pics/ alone.
    catalog.add([row(1, source="/data/Pics/a.png"), row(2, source="/data/pics/b.png"),
                 row(3, source="/data/back\\slash/c.png"), row(4, source="/data/backXslash/d")])
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/Pics/")] == ["s:item1"]
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/pics/")] == ["s:item2"]
    assert catalog.find_by_source_prefix("s", "/DATA/") == []
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/back\\slash/")] == \
        ["s:item3"]
    assert [r.id for r in catalog.find_by_source_prefix("s", "/data/back\\")] == ["s:item3"]


def test_catalog_all_counts_spaces(catalog: Any) -> None:
    catalog.add([row(3), row(1), row(2, kind="page", page=1), row(9, space="a"),
                 row(8, space="Z")])
    assert [r.id for r in catalog.all("s")] == ["s:item1", "s:item2", "s:item3"]  # by created
    assert [r.id for r in catalog.all()] == ["s:item1", "s:item2", "s:item3", "Z:item8",
                                             "a:item9"]
    assert catalog.all("empty") == []
    assert catalog.counts("s") == {"image": 2, "page": 1}
    assert catalog.counts("empty") == {}
    assert catalog.spaces() == {"Z": 1, "a": 1, "s": 3}  # code-point order
    assert list(catalog.spaces()) == ["Z", "a", "s"]


def test_catalog_phashes_delete_and_sha_in_use(catalog: Any) -> None:
    catalog.add([row(1), row(2, audience="chan-1"), row(3, phash=""),
                 row(4, space="t", image_sha="f" * 64, file_sha="e" * 64)])
    assert sorted(catalog.phashes("s", None)) == [("s:item1", f"{1:016x}"),
                                                  ("s:item2", f"{2:016x}")]
    assert catalog.phashes("s", [PUBLIC]) == [("s:item1", f"{1:016x}")]
    assert catalog.phashes("s", []) == []
    assert catalog.sha_in_use("f" * 64) and catalog.sha_in_use("e" * 64)
    assert catalog.sha_in_use(f"{1:064x}") and not catalog.sha_in_use("d" * 64)
    catalog.delete("t", ["s:item1"])  # wrong space: nothing happens
    assert catalog.existing("s", ["s:item1"]) == {"s:item1"}
    catalog.delete("s", ["s:item1", "s:item2", "missing"])
    catalog.delete("s", [])
    assert [r.id for r in catalog.all("s")] == ["s:item3"]
    assert not catalog.sha_in_use(f"{1:064x}")


def test_catalog_files(catalog: Any) -> None:
    assert catalog.file_done("s", "a" * 64) is None
    catalog.mark_file("s", "a" * 64, "/x.pdf", 3)
    catalog.mark_file("s", "a" * 64, "/y.pdf", 4)  # replaces
    catalog.mark_file("s", "b" * 64, "/z.pdf", 1)
    assert catalog.file_done("s", "a" * 64) == "/y.pdf"
    assert catalog.file_done("t", "a" * 64) is None
    catalog.unmark_files("s", ["a" * 64, "a" * 64, "c" * 64])
    catalog.unmark_files("s", [])
    assert catalog.file_done("s", "a" * 64) is None
    assert catalog.file_done("s", "b" * 64) == "/z.pdf"
    catalog.clear_files()
    assert catalog.file_done("s", "b" * 64) is None


def test_catalog_prefs(catalog: Any) -> None:
    assert catalog.get_pref("s", "k") is None
    catalog.set_pref("s", "k", "v1")
    catalog.set_pref("s", "k", "v2")
    catalog.set_pref("s", "channel:1:off", "1")
    catalog.set_pref("s", "channel:2:off", "1")
    catalog.set_pref("s", "channel_x", "1")
    catalog.set_pref("t", "channel:3:off", "1")
    assert catalog.get_pref("s", "k") == "v2" and catalog.get_pref("t", "k") is None
    assert catalog.prefs_like("s", "channel:") == {"channel:1:off": "1", "channel:2:off": "1"}
    assert catalog.prefs_like("s", "CHANNEL:") == {}  # case-sensitive
    assert catalog.prefs_like("s", "channel%") == {}  # no wildcards
    catalog.set_pref("s", "k", None)
    catalog.set_pref("s", "never-set", None)
    assert catalog.get_pref("s", "k") is None


def test_catalog_captions_and_feedback(catalog: Any) -> None:
    assert catalog.caption("a" * 64, "m") is None
    catalog.put_caption("a" * 64, "m", "a cat")
    catalog.put_caption("a" * 64, "m", "a cat on a mat")
    catalog.put_caption("a" * 64, "m2", "other")
    assert catalog.caption("a" * 64, "m") == "a cat on a mat"
    assert catalog.caption("a" * 64, "m2") == "other"
    sources = [{"id": "x", "score": 0.5, "b": [1, 2], "a": None}]
    catalog.add_feedback("s", "discord", "u1", "what?", "up", sources)
    catalog.add_feedback("t", "slack", "u2", "why?", "down", [])
    catalog.add_feedback("s", "discord", "u3", "how?", "down", [])
    rows = catalog.feedback("s")
    assert [(r["user"], r["verdict"]) for r in rows] == [("u1", "up"), ("u3", "down")]
    assert rows[0]["sources"] == sources and list(rows[0]["sources"][0]) == ["id", "score",
                                                                             "b", "a"]
    assert set(rows[0]) == {"space", "platform", "user", "question", "verdict", "sources",
                            "created"}
    assert isinstance(rows[0]["created"], float)
    assert [r["space"] for r in catalog.feedback()] == ["s", "t", "s"]


def _copy_feedback(source: Any, target: Any) -> list[tuple[str, str]]:
    """What ``pixrag migrate`` does with feedback, twice (a re-run); the target's feedback
    as (user, question)."""
    for _ in range(2):
        target.restore("feedback", source.dump("feedback"))
    return [(r["user"], r["question"]) for r in target.feedback()]


def test_feedback_copied_into_a_used_catalog_keeps_its_own_once(catalog: Any,
                                                               tmp_path: Path) -> None:
    # migrate into a target that already holds feedback, run twice: nothing replaced (the
    # ids of two databases collide), nothing doubled.
    source = Catalog(tmp_path / "source.db")
    try:
        source.add_feedback("s", "slack", "u1", "from the source?", "up", [{"id": "x"}])
        catalog.add_feedback("s", "discord", "u2", "the target's own?", "down", [])
        assert sorted(_copy_feedback(source, catalog)) == [("u1", "from the source?"),
                                                           ("u2", "the target's own?")]
    finally:
        source.close()


def test_feedback_copied_from_postgres_to_sqlite_once(pg_url: str, tmp_path: Path) -> None:
    source, target = PgCatalog(pg_url), Catalog(tmp_path / "target.db")
    try:
        source.add_feedback("s", "slack", "u1", "what?", "up", [{"id": "x"}])
        assert _copy_feedback(source, target) == [("u1", "what?")]
        assert target.feedback()[0]["sources"] == [{"id": "x"}]
    finally:
        source.close()
        target.close()


# keyword ------------------------------------------------------------------------------------
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


def test_catalog_uncaptioned_and_requeue(catalog: Any) -> None:
    catalog.add([row(1), row(2), row(3, stage=1), row(4, image_sha=None), row(5, space="t")],
                enrich=["s:item3"])
    catalog.put_caption(f"{2:064x}", "m", "a chart")
    # item2 has a caption by m, item3 has not been through phase 2 yet, item4 has no image,
    # item5 is another space.
    assert catalog.uncaptioned("s", "m") == ["s:item1"]
    assert catalog.uncaptioned("s", "other-model") == ["s:item1", "s:item2"]
    catalog.requeue("s", ["s:item1"])
    catalog.requeue("s", ["s:item1", "s:item3"])  # idempotent; queued ones stay as they are
    catalog.requeue("s", [])
    assert catalog.pending("s") == 2 and catalog.pending("t") == 0
    assert catalog.pending_ids(["s:item1", "s:item2", "s:item3"]) == {"s:item1", "s:item3"}
    assert catalog.queued_ids() == ["s:item3", "s:item1"]  # every space, oldest first
    claimed = catalog.claim_enrich(10, 60.0, 3)
    assert sorted(r.id for r in claimed) == ["s:item1", "s:item3"]
    assert [r.text for r in claimed if r.id == "s:item1"] == ["text 1"]  # kept: OCR not redone

    # Leased: nobody else takes them; renewed: still not; given back: at once, and the
    # interrupted attempt does not count against the item's three.
    assert catalog.claim_enrich(10, 60.0, 3) == []
    catalog.renew_enrich(["s:item1", "s:item3"], 60.0)
    assert catalog.claim_enrich(10, 60.0, 3) == []
    catalog.release_enrich(["s:item1"])
    assert [r.id for r in catalog.claim_enrich(10, 60.0, 1)] == ["s:item1"]  # attempts 0 -> 1
    catalog.release_enrich(["s:item1", "s:item3"])
    catalog.release_enrich(["s:item1"])  # never below zero attempts
    assert catalog.claim_enrich(10, 60.0, 0) == []
    assert sorted(r.id for r in catalog.claim_enrich(10, 60.0, 1)) == ["s:item1", "s:item3"]


def test_keyword_rare_term_first_one_entry_per_item(keyword: Any) -> None:
    keyword.add(_docs("s", FILLER))
    keyword.add([
        KeywordDoc("inv#0", "inv", "s", PUBLIC, "Invoice INV-20931 for consulting services."),
        KeywordDoc("inv#1", "inv", "s", PUBLIC, "Payment terms: the invoice is due on March 7."),
        KeywordDoc("other#0", "other", "s", PUBLIC, "An invoice template for the team."),
    ])
    hits = keyword.search("s", "when is the invoice INV-20931 due?", 10)
    ids = [i for i, _ in hits]
    assert ids[0] == "inv"
    assert ids.count("inv") == 1 and "other" in ids
    scores = [s for _, s in hits]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert [i for i, _ in keyword.search("s", "quarterly revenue", 3)] == ["f1"]
    assert len(keyword.search("s", "the invoice", 1)) == 1
    assert keyword.search("s", "invoice", 0) == []


def test_keyword_stemming_case_accents(keyword: Any) -> None:
    keyword.add(_docs("s", FILLER))
    keyword.add([KeywordDoc("cv#0", "cv", "s", PUBLIC, "Updated RÉSUMÉ: running marathons")])
    assert keyword.search("s", "resume", 5)[0][0] == "cv"
    assert keyword.search("s", "Résumé", 5)[0][0] == "cv"
    assert keyword.search("s", "runs", 5)[0][0] == "cv"
    assert keyword.search("s", "MARATHON", 5)[0][0] == "cv"


def test_keyword_identifiers(keyword: Any) -> None:
    keyword.add(_docs("s", FILLER))
    keyword.add([
        KeywordDoc("term#0", "term", "s", PUBLIC,
                   "curl: (7) Failed to connect: ERR_CONNECTION_REFUSED"),
        KeywordDoc("win#0", "win", "s", PUBLIC, "Windows Update failed with error 0x80070005"),
        KeywordDoc("inv#0", "inv", "s", PUBLIC, "Invoice INV-20931 due March 7"),
        KeywordDoc("inv2#0", "inv2", "s", PUBLIC, "Invoice INV-55555 and order 20931"),
        KeywordDoc("file#0", "file", "s", PUBLIC, "see report.pdf and mail ops@example.com"),
    ])
    assert keyword.search("s", "ERR_CONNECTION_REFUSED", 5)[0][0] == "term"
    assert [i for i, _ in keyword.search("s", "0x80070005", 5)] == ["win"]
    assert [i for i, _ in keyword.search("s", "INV-20931", 5)][:1] == ["inv"]
    assert "inv2" not in [i for i, _ in keyword.search("s", "INV-20931", 5)]
    assert {i for i, _ in keyword.search("s", "20931", 5)} == {"inv", "inv2"}
    # Parts of file names and addresses are words of their own.
    assert [i for i, _ in keyword.search("s", "pdf", 5)] == ["file"]
    assert [i for i, _ in keyword.search("s", "example", 5)] == ["file"]
    assert [i for i, _ in keyword.search("s", "report.pdf", 5)] == ["file"]


def test_keyword_stopwords_only_query_still_searches(keyword: Any) -> None:
    keyword.add(_docs("s", FILLER))
    keyword.add([KeywordDoc("band#0", "band", "s", PUBLIC, "The Who live at Leeds")])
    assert "band" in [i for i, _ in keyword.search("s", "The Who", 10)]
    assert keyword.search("s", "the leeds", 10)[0][0] == "band"


def test_keyword_spaces_isolated(keyword: Any) -> None:
    keyword.add(_docs("discord:1", FILLER, prefix="a"))
    keyword.add([KeywordDoc("secret#0", "secret", "discord:2", PUBLIC, "launch codes 1234")])
    assert keyword.search("discord:1", "launch codes", 10) != []
    assert "secret" not in [i for i, _ in keyword.search("discord:1", "launch codes 1234", 10)]
    assert keyword.search("discord:1", "1234", 10) == []
    assert [i for i, _ in keyword.search("discord:2", "codes", 10)] == ["secret"]
    assert keyword.count("discord:1") == len(FILLER) and keyword.count("discord:2") == 1
    assert keyword.count() == len(FILLER) + 1 and keyword.count("nope") == 0


def test_keyword_audience_filter(keyword: Any) -> None:
    keyword.add([
        KeywordDoc("pub#0", "pub", "s", PUBLIC, "roadmap for everyone"),
        KeywordDoc("c1#0", "c1", "s", "chan-1", "roadmap private to channel one"),
        KeywordDoc("c2#0", "c2", "s", "chan-2", "roadmap private to channel two"),
    ])

    def ids(aud: list[str] | None) -> set[str]:
        return {i for i, _ in keyword.search("s", "roadmap", 10, aud)}
    assert ids([PUBLIC]) == {"pub"}
    assert ids([PUBLIC, "chan-1"]) == {"pub", "c1"}
    assert ids(None) == {"pub", "c1", "c2"}
    assert ids([]) == set()


def test_keyword_upsert_and_delete(keyword: Any) -> None:
    docs = _docs("s", FILLER)
    keyword.add(docs)
    keyword.add(docs)
    keyword.add([])
    assert keyword.count() == len(FILLER)
    keyword.add([KeywordDoc("f0#0", "f0", "s", PUBLIC, "Team dinner moved to Thursday")])
    assert keyword.count() == len(FILLER)
    assert keyword.search("s", "lunch", 10) == []
    assert keyword.search("s", "dinner", 10)[0][0] == "f0"
    # Moving a passage to another space moves it in search too.
    keyword.add([KeywordDoc("f0#0", "f0", "t", PUBLIC, "Team dinner moved to Thursday")])
    assert keyword.search("s", "dinner", 10) == [] and keyword.count("t") == 1
    keyword.add([KeywordDoc("x#0", "x", "s", PUBLIC, "zebra one"),
                 KeywordDoc("x#1", "x", "s", PUBLIC, "zebra two")])
    keyword.delete_items(["x", "does-not-exist"])
    keyword.delete_items([])
    assert keyword.search("s", "zebra", 5) == []
    assert keyword.count() == len(FILLER)


NASTY = ['C++', "don't", "a:b", '"unbalanced', "AND", "NOT", "NEAR", "OR", "foo AND NOT bar",
         "NEAR(a b)", "(", ")", "*", "^start", "col:value", "-minus", "+plus", "😀🚀", "🙂 lunch",
         "'", '""', "\\", "a' OR '1'='1", "%", "_", "{x}", "[y]", "lunch*", "ü", "日本語のテキスト",
         "x" * 3000, "word " * 500, "   ", "", "\x00", "lunch\x00", "the", "What is it?",
         "a & b | !c <-> d", "lunch:*", "'lunch' & 'room'", "$$", "E'\\x'", "1 <2> 3"]


@pytest.mark.parametrize("query", NASTY)
def test_keyword_nasty_queries(keyword: Any, query: str, request: pytest.FixtureRequest) -> None:
    keyword.add(_docs("s", FILLER))
    hits = keyword.search("s", query, 5)
    assert isinstance(hits, list)
    assert all(isinstance(i, str) and isinstance(s, float) for i, s in hits)


def test_keyword_operators_are_words(keyword: Any) -> None:
    keyword.add(_docs("s", FILLER))
    # "&", "|", "!" and ":*" mean nothing: "lunch" is an ordinary word, "room" too.
    assert keyword.search("s", "!lunch", 5)[0][0] == "f0"
    assert keyword.search("s", "lunch & nothing", 5)[0][0] == "f0"
    assert keyword.search("s", "lunc:*", 5) == []  # no prefix search


# blobs --------------------------------------------------------------------------------------
def test_blobs_put_path_has_delete(blobs: Any) -> None:
    data = b"\x89PNG fake bytes"
    sha = blobs.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = blobs.path(sha)
    assert isinstance(path, Path) and path.name == sha and path.parent.name == sha[2:4]
    assert path.read_bytes() == data and blobs.has(sha)
    assert blobs.put(data) == sha
    other = blobs.put(b"other")
    assert other != sha and blobs.has(other)
    blobs.delete(sha)
    assert not blobs.has(sha) and blobs.has(other)
    assert not path.exists()
    blobs.delete(sha)  # missing is fine
    assert not blobs.has("0" * 64)


@pytest.mark.parametrize("bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64])
def test_blobs_invalid_sha(blobs: Any, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        blobs.path(bad)
    with pytest.raises(ValueError, match="sha256"):
        blobs.has(bad)


def test_blobs_thumbnails(blobs: Any) -> None:
    path = blobs.put_thumbnail("discord:123:abc.p1", b"jpeg1")
    assert path == blobs.thumbnail_path("discord:123:abc.p1")
    assert ":" not in path.name and path.suffix == ".jpg"
    assert path.read_bytes() == b"jpeg1"
    assert blobs.put_thumbnail("discord:123:abc.p1", b"jpeg2") == path
    assert path.read_bytes() == b"jpeg2"
    blobs.delete_thumbnail("discord:123:abc.p1")
    assert not path.exists()
    blobs.delete_thumbnail("discord:123:abc.p1")  # missing is fine


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a..b", ".hidden", "x" * 201, "a b"])
def test_blobs_invalid_thumbnail_key(blobs: Any, bad: str) -> None:
    with pytest.raises(ValueError, match="thumbnail key"):
        blobs.thumbnail_path(bad)
    with pytest.raises(ValueError, match="thumbnail key"):
        blobs.put_thumbnail(bad, b"x")
