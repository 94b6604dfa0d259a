"""Keyword search over OCR text, page text and chunks: SQLite FTS5 ranked by its ``bm25()``.

Schema: a plain ``docs`` table (one row per passage, indexed by doc id, item id and space) is
the content of an external-content FTS5 table kept in sync by triggers; so upserts and deletes
by id are index lookups, not scans of the full-text table.

Tokenizer ``porter unicode61 remove_diacritics 2``: English stemming ("running" finds "run"),
case and accent folding ("resume" finds "résumé"). unicode61 splits identifiers at punctuation
(``INV-20931`` -> ``inv`` ``20931``; ``ERR_CONNECTION_REFUSED`` -> ``err`` ``connect`` ``refus``;
``0x80070005`` stays one token). Each query word is sent as a quoted FTS5 string, which FTS5
turns into a *phrase* of those tokens, so ``INV-20931`` matches exactly that sequence while
``20931`` alone still finds it. That covers error codes and ids without ``tokenchars`` (which
would stop ``20931`` from matching ``INV-20931``) or a trigram table (twice the index, and
bm25 over trigrams ranks ordinary words poorly).

Scores are ``-bm25`` (higher is better). FTS5 computes bm25 statistics over the whole table, so
documents of other spaces shift scores slightly; they never appear in results.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import StoreError
from core.library.walmode import use_wal

log = logging.getLogger(__name__)

#: Most query words sent to FTS5 (a pasted paragraph must not become a 500-term OR).
MAX_QUERY_TERMS = 32

# Queries match ANY term, so words found in nearly every passage would make almost everything
# a "keyword hit" with a meaningless score, and in a small space (where bm25's IDF is still
# positive for them) outrank the rare word the user cares about. They are dropped unless the
# query has nothing else ("The Who").
_STOPWORDS = """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing don't down during each few for
    from further had has have having he her here hers herself him himself his how i i'm if in
    into is it it's its itself just let's me more most my myself no nor not of off on once only
    or other ought our ours ourselves out over own same she should so some such than that
    that's the their theirs them themselves then there these they this those through to too
    under until up very was we were what what's when where which while who whom why will with
    would you your yours yourself yourselves please"""
STOPWORDS = frozenset(_STOPWORDS.split())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE,
    item_id TEXT NOT NULL,
    space TEXT NOT NULL,
    audience TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_item ON docs(item_id);
CREATE INDEX IF NOT EXISTS docs_space ON docs(space, audience);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(
    text, content='docs', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS docs_ai AFTER INSERT ON docs BEGIN
    INSERT INTO docs_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_ad AFTER DELETE ON docs BEGIN
    INSERT INTO docs_fts(docs_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_au AFTER UPDATE OF text ON docs BEGIN
    INSERT INTO docs_fts(docs_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO docs_fts(rowid, text) VALUES (new.id, new.text);
END;
"""


@dataclass(frozen=True)
class KeywordDoc:
    doc_id: str  # unique passage id, e.g. f"{item_id}#{n}"
    item_id: str
    space: str
    audience: str  # core.types.PUBLIC or a channel id
    text: str


def fts_query(query: str) -> str:
    """Free text -> a safe FTS5 expression: quoted words joined by OR ("" when nothing usable).

    Quoting turns every FTS5 operator (AND/OR/NOT/NEAR, ``:``, ``*``, ``^``, brackets) into a
    literal; words with no letter or digit (emoji, "++") are dropped because an empty phrase
    matches nothing.
    """
    words: list[str] = []
    seen: set[str] = set()
    # NUL ends an FTS5 string early ("unterminated string"): treat it as a word break.
    for raw in query.replace("\x00", " ").split():
        word = raw.strip("\"'`.,;:!?()[]{}<>")
        if not any(ch.isalnum() for ch in word) or word.lower() in seen:
            continue
        seen.add(word.lower())
        words.append(word)
    kept = [w for w in words if w.lower() not in STOPWORDS] or words
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in kept[:MAX_QUERY_TERMS])


class KeywordIndex:
    """Passages in a file-backed SQLite database shared by threads (one lock) and processes
    (WAL mode, busy timeout)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode; transactions are explicit BEGIN/COMMIT below.
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                check_same_thread=False,
                isolation_level=None,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            use_wal(self._db, busy_timeout_s)
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"keyword index {self.path} could not be opened: {exc}") from exc

    @contextmanager
    def _conn(self, what: str) -> Iterator[sqlite3.Connection]:
        """The writer connection, one transaction: ANY exception rolls it back."""
        with self._lock:
            if self._db is None:
                raise StoreError(f"keyword index {self.path} is closed")
            try:
                yield self._db
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"keyword index {self.path}: {what} failed: {exc}") from exc
                raise

    def _reader(self) -> sqlite3.Connection:
        """This thread's own read connection: searches never wait for the writer (WAL)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._db is None:
                raise StoreError(f"keyword index {self.path} is closed")
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                 check_same_thread=False, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            db.execute("PRAGMA query_only = 1")
            self._local.db = db
            with self._lock:
                self._readers.append(db)
        return db

    def _read(self, what: str, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"keyword index {self.path}: {what} failed: {exc}") from exc

    def add(self, docs: Sequence[KeywordDoc]) -> None:
        """Insert or replace passages by ``doc_id`` (re-adding the same doc changes nothing)."""
        if not docs:
            return
        rows = [(d.doc_id, d.item_id, d.space, d.audience, d.text) for d in docs]
        with self._conn("add") as db:
            db.execute("BEGIN IMMEDIATE")
            # The WHERE skips identical rows so the FTS index is not rewritten for no change.
            db.executemany(
                """INSERT INTO docs(doc_id, item_id, space, audience, text)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(doc_id) DO UPDATE SET
                       item_id = excluded.item_id, space = excluded.space,
                       audience = excluded.audience, text = excluded.text
                   WHERE docs.text IS NOT excluded.text OR docs.item_id IS NOT excluded.item_id
                      OR docs.space IS NOT excluded.space
                      OR docs.audience IS NOT excluded.audience""",
                rows,
            )
            db.execute("COMMIT")

    def search(
        self,
        space: str,
        query: str,
        limit: int,
        audiences: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """``[(item_id, score)]`` best first, one per item (its best passage), only from
        ``space`` and, unless ``audiences`` is None, only those audiences."""
        expr = fts_query(query)
        if not expr or limit <= 0 or (audiences is not None and not audiences):
            return []
        params: list[object] = [expr, space]
        audience_sql = ""
        if audiences is not None:
            audience_sql = f" AND d.audience IN ({','.join('?' * len(audiences))})"
            params.extend(audiences)
        params.append(limit)
        # MATERIALIZED: bm25() only works while FTS5 drives the scan, not inside an aggregate
        # the planner flattened the subquery into. CROSS JOIN keeps the full-text match as
        # the outer loop: otherwise the space filter makes SQLite run the match once per
        # passage of the space (1.9 s instead of milliseconds for 2,000 passages).
        sql = f"""
            WITH hits AS MATERIALIZED (
                SELECT d.item_id AS item_id, bm25(docs_fts) AS rank
                FROM docs_fts CROSS JOIN docs d ON d.id = docs_fts.rowid
                WHERE docs_fts MATCH ? AND d.space = ?{audience_sql}
            )
            SELECT item_id, MIN(rank) AS best FROM hits
            GROUP BY item_id ORDER BY best, item_id LIMIT ?"""  # noqa: S608 - only placeholders
        rows = self._read("search", sql, params)
        return [(item_id, -float(best)) for item_id, best in rows]

    def delete_items(self, item_ids: Sequence[str]) -> None:
        """Remove every passage of these items (unknown ids are ignored)."""
        if not item_ids:
            return
        with self._conn("delete") as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM docs WHERE item_id = ?", [(i,) for i in item_ids])
            db.execute("COMMIT")

    def count(self, space: str | None = None) -> int:
        """Number of passages (in ``space``, or in all spaces)."""
        if space is None:
            rows = self._read("count", "SELECT COUNT(*) FROM docs")
        else:
            rows = self._read("count", "SELECT COUNT(*) FROM docs WHERE space = ?", (space,))
        return int(rows[0][0])

    def docs(self, *, after: int = 0, limit: int = -1) -> list[tuple[int, KeywordDoc]]:
        """Passages in storage order with their row numbers, those after row ``after``, at most
        ``limit`` (for copying an index elsewhere a page at a time)."""
        return [(r[0], KeywordDoc(*r[1:])) for r in self._read(
            "list", "SELECT id, doc_id, item_id, space, audience, text FROM docs WHERE id > ? "
            "ORDER BY id LIMIT ?", (after, limit))]

    def item_ids(self) -> set[str]:
        """Every item that has at least one passage."""
        return {r[0] for r in self._read("list", "SELECT DISTINCT item_id FROM docs")}

    def close(self) -> None:
        with self._lock:
            for db in [self._db, *self._readers]:
                if db is not None:
                    try:
                        db.close()
                    except sqlite3.Error as exc:
                        log.debug("closing the keyword index: %s", exc)
            self._db = None
            self._readers.clear()
