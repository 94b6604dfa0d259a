"""Keyword search in PostgreSQL: the server-mode twin of :class:`core.library.keyword.KeywordIndex`.

Same methods and meaning: passages upserted by ``doc_id``, searched within one space (and
audiences), one result per item (its best passage), scores higher-is-better, ranked by BM25
with the parameters SQLite FTS5 uses (k1 = 1.2, b = 0.75), so both backends order results
alike (``benchmarks/keyword_backends.py`` measures it on ``eval/``).

Tokens. A passage is stored as written (``text``) and as ``terms``: accents removed (NFKD,
combining marks dropped) and every character that is not a letter or digit turned into a
space. That is what SQLite's ``unicode61 remove_diacritics 2`` tokenizer does, and it keeps
PostgreSQL's own parser from reading ``INV-20931`` as ``inv`` and the number ``-20931`` or
``report.pdf`` as one file-name token. ``tsv`` is a generated ``tsvector`` over ``terms``
with a GIN index, built with the ``pixrag_english`` configuration: PostgreSQL's English
Snowball stemmer ("running" finds "run", like FTS5's porter) *without* its stop-word list,
because, as in FTS5, every word is indexed and the query side decides what to drop.

Queries. The words are exactly those :func:`core.library.keyword.fts_query` keeps (stop words
dropped unless nothing else is left, at most 32, punctuation-only words ignored). Each word becomes
a ``phraseto_tsquery`` of its normalised form and the phrases are OR-ed with ``||``: user text
never reaches ``to_tsquery`` syntax, ``INV-20931`` matches exactly the phrase ``inv 20931``
and ``20931`` alone still finds it.

Ranking. The GIN index finds the matching passages of the space; for those, the positions of
the query's lexemes come back and BM25 is computed here: a phrase's frequency is the number of
places where all its lexemes follow each other, its document frequency the number of passages
of the space that contain it. Unlike FTS5 (whole-table statistics) the statistics are those
of the space, so one tenant's documents never shift another's scores. When a query matches
more than :data:`MAX_CANDIDATES` passages (a very common word in a very large space), only
the best that many by ``ts_rank_cd`` are scored.

All methods block: call them from an executor.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from core.library.keyword import KeywordDoc, fts_query
from core.library.pg_database import PgDatabase, open_migrated

log = logging.getLogger(__name__)

#: Passages scored per query at most (pre-selected by ts_rank_cd beyond that).
MAX_CANDIDATES = 10_000
#: BM25 parameters, those of SQLite FTS5's bm25().
K1 = 1.2
B = 0.75

CONFIG = "pixrag_english"

MIGRATIONS: list[str] = [
    f"""
    CREATE TEXT SEARCH DICTIONARY {CONFIG}_stem (TEMPLATE = snowball, Language = english);
    CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = english);
    ALTER TEXT SEARCH CONFIGURATION {CONFIG}
        ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
        WITH {CONFIG}_stem;
    CREATE TABLE IF NOT EXISTS keyword_docs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc_id text NOT NULL UNIQUE,
        item_id text NOT NULL,
        space text NOT NULL,
        audience text NOT NULL,
        text text NOT NULL,
        terms text NOT NULL,
        len integer NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('{CONFIG}'::regconfig, terms)) STORED
    );
    CREATE INDEX IF NOT EXISTS keyword_docs_item ON keyword_docs (item_id);
    CREATE INDEX IF NOT EXISTS keyword_docs_space ON keyword_docs (space, audience) INCLUDE (len);
    CREATE INDEX IF NOT EXISTS keyword_docs_tsv ON keyword_docs USING gin (tsv);
    """,
]

# Query fragments: only placeholders and the constant configuration name.
_PHRASE_SQL = f"phraseto_tsquery('{CONFIG}', %s)"
_DF_SQL = f"(SELECT count(*) FROM keyword_docs WHERE space = %s AND tsv @@ {_PHRASE_SQL})"  # noqa: S608
_STATS_SQL = "SELECT count(*), coalesce(sum(len), 0)"
_LEXEMES_SQL = f"""SELECT t.i, u.lexeme, u.positions
    FROM unnest(%s::text[]) WITH ORDINALITY AS t(w, i),
         unnest(to_tsvector('{CONFIG}', t.w)) AS u"""  # noqa: S608

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Accents off, everything but letters and digits to single spaces (unicode61's rules)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_WORD.sub(" ", bare).strip()


def query_words(query: str) -> list[str]:
    """The words :func:`fts_query` keeps, in order (it quotes each and joins them with OR;
    a word never contains whitespace, so splitting on `` OR `` is exact)."""
    expr = fts_query(query)
    if not expr:
        return []
    return [part[1:-1].replace('""', '"') for part in expr.split(" OR ")]


@dataclass(frozen=True)
class _Phrase:
    text: str  # the normalised word, as given to phraseto_tsquery
    lexemes: tuple[tuple[int, str], ...]  # (offset from the first token, lexeme)


def _phrase_tf(phrase: _Phrase, positions: dict[str, frozenset[int]]) -> int:
    off0, lex0 = phrase.lexemes[0]
    if len(phrase.lexemes) == 1:  # most query words: one lexeme, tf = its positions
        return len(positions.get(lex0, ()))
    return sum(
        1 for p in positions.get(lex0, ())
        if all(p - off0 + off in positions.get(lex, ()) for off, lex in phrase.lexemes[1:]))


_Doc = tuple[str, int, str, dict[str, frozenset[int]]]  # item id, length, audience, positions


def _candidates_sql(tsquery: str, tail: str) -> str:
    """Matching passages of a space (``tail``: more conditions and an order), then the
    positions of the query's lexemes in each. Every position in ``tsv`` has the default
    weight D; marking the query's lexemes A and keeping only A is a C-level scan of each
    vector, 2-3 times faster than unnesting whole vectors and filtering the rows."""
    return f"""WITH q AS (SELECT {tsquery} AS q),
        cand AS (
            SELECT d.id, d.item_id, d.len, d.audience, d.tsv FROM keyword_docs d, q
            WHERE d.space = %s AND d.tsv @@ q.q{tail} LIMIT %s)
        SELECT c.id, c.item_id, c.len, c.audience, u.lexeme, u.positions
        FROM cand c, unnest(ts_filter(setweight(c.tsv, 'A', %s::text[]), '{{a}}')) AS u"""  # noqa: S608


def _group(rows: Sequence[tuple[Any, ...]]) -> dict[int, _Doc]:
    docs: dict[int, _Doc] = {}
    for doc, item_id, length, audience, lexeme, positions in rows:
        entry = docs.setdefault(doc, (item_id, int(length), audience, {}))
        entry[3][lexeme] = frozenset(positions or ())
    return docs


class PgKeywordIndex:
    """Passages in PostgreSQL, shared by threads (a pool) and hosts. Pass a URL (the index
    owns its pool) or a shared :class:`PgDatabase` (its owner closes it)."""

    def __init__(self, url: str | PgDatabase, *, statement_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, pool_size: int = 4) -> None:
        self._db, self._owns_db = open_migrated(
            url, "keyword", MIGRATIONS, statement_timeout_s=statement_timeout_s,
            connect_timeout_s=connect_timeout_s, pool_size=pool_size)

    @property
    def url(self) -> str:
        """The database, password removed."""
        return self._db.url

    def add(self, docs: Sequence[KeywordDoc]) -> None:
        """Insert or replace passages by ``doc_id`` (re-adding the same doc changes nothing)."""
        latest = {d.doc_id: d for d in docs}
        if not latest:
            return
        rows = []
        for doc_id, d in sorted(latest.items()):  # id order: no deadlock between hosts
            terms = normalise(d.text.replace("\x00", " "))
            rows.append((doc_id, d.item_id, d.space, d.audience, d.text, terms,
                         len(terms.split())))
        # The WHERE skips identical rows so the GIN index is not rewritten for no change.
        self._db.run_many(
            "keyword add",
            """INSERT INTO keyword_docs (doc_id, item_id, space, audience, text, terms, len)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (doc_id) DO UPDATE SET
                   item_id = excluded.item_id, space = excluded.space,
                   audience = excluded.audience, text = excluded.text,
                   terms = excluded.terms, len = excluded.len
               WHERE keyword_docs.text IS DISTINCT FROM excluded.text
                  OR keyword_docs.item_id IS DISTINCT FROM excluded.item_id
                  OR keyword_docs.space IS DISTINCT FROM excluded.space
                  OR keyword_docs.audience IS DISTINCT FROM excluded.audience""",
            rows)

    def search(
        self,
        space: str,
        query: str,
        limit: int,
        audiences: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """``[(item_id, score)]`` best first, one per item (its best passage), only from
        ``space`` and, unless ``audiences`` is None, only those audiences."""
        if limit <= 0 or (audiences is not None and not audiences):
            return []
        words = [w for w in (normalise(w.replace("\x00", " ")) for w in query_words(query)) if w]
        if not words:
            return []
        with self._db.connection("keyword search") as conn:
            phrases = self._phrases(conn, words)
            if not phrases:
                return []
            texts = [p.text for p in phrases]
            tsquery = " || ".join([_PHRASE_SQL] * len(phrases))
            lexemes = sorted({lex for p in phrases for _, lex in p.lexemes})
            stats = conn.execute(_STATS_SQL + " FROM keyword_docs WHERE space = %s",  # noqa: S608
                                 [space]).fetchone()
            assert stats is not None
            n_docs, total_len = int(stats[0]), int(stats[1])
            # Common case: every matching passage of the space comes back (whatever its
            # audience, as FTS5's statistics see them all), and the document frequencies are
            # counted here from the positions.
            rows = conn.execute(_candidates_sql(tsquery, ""),
                                [*texts, space, MAX_CANDIDATES + 1, lexemes]).fetchall()
            docs = _group(rows)
            dfs: list[int] | None = None
            if len(docs) > MAX_CANDIDATES:
                # Too many: the best by ts_rank_cd in the wanted audiences, the frequencies
                # counted by the server (GIN index).
                dfs_sql = ", ".join([_DF_SQL] * len(phrases))
                row = conn.execute(f"SELECT {dfs_sql}",  # noqa: S608 - only placeholders
                                   [v for t in texts for v in (space, t)]).fetchone()
                assert row is not None
                dfs = [int(x) for x in row]
                params: list[object] = [*texts, space]
                tail = ""
                if audiences is not None:
                    tail, params = " AND d.audience = ANY(%s)", [*params, list(audiences)]
                tail += " ORDER BY ts_rank_cd(d.tsv, q.q) DESC"
                rows = conn.execute(_candidates_sql(tsquery, tail),
                                    [*params, MAX_CANDIDATES, lexemes]).fetchall()
                docs = _group(rows)
        if dfs is None:
            dfs = [sum(1 for d in docs.values() if _phrase_tf(p, d[3])) for p in phrases]
        if audiences is not None:
            wanted = set(audiences)
            docs = {k: d for k, d in docs.items() if d[2] in wanted}
        if not docs:
            return []
        avgdl = total_len / n_docs if n_docs else 1.0
        idfs = []
        for df in dfs:
            idf = math.log((n_docs - df + 0.5) / (df + 0.5))
            idfs.append(idf if idf > 0 else 1e-6)  # FTS5's floor: a match is never worth 0
        best: dict[str, float] = {}
        for item_id, length, _audience, positions in docs.values():
            norm = K1 * (1 - B + B * length / (avgdl or 1.0))
            score = 0.0
            for phrase, idf in zip(phrases, idfs, strict=True):
                tf = _phrase_tf(phrase, positions)
                if tf:
                    score += idf * tf * (K1 + 1) / (tf + norm)
            if item_id not in best or score > best[item_id]:
                best[item_id] = score
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(item_id, float(score)) for item_id, score in ranked[:limit]]

    @staticmethod
    def _phrases(conn: psycopg.Connection[Any], words: list[str]) -> list[_Phrase]:
        """Each word's lexemes in order, as PostgreSQL's parser and stemmer see them."""
        rows = conn.execute(_LEXEMES_SQL, [words]).fetchall()
        tokens: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for i, lexeme, positions in rows:
            tokens[int(i)].extend((int(p), lexeme) for p in positions or ())
        # Words with the same stem ("runs running") stay separate phrases, as in FTS5's bm25.
        phrases = []
        for i, word in enumerate(words, start=1):
            toks = sorted(tokens.get(i, []))
            if toks:
                first = toks[0][0]
                phrases.append(_Phrase(word, tuple((p - first, lex) for p, lex in toks)))
        return phrases

    def delete_items(self, item_ids: Sequence[str]) -> None:
        """Remove every passage of these items (unknown ids are ignored)."""
        ids = sorted(set(item_ids))
        if ids:
            self._db.run("keyword delete", "DELETE FROM keyword_docs WHERE item_id = ANY(%s)",
                         [ids])

    def count(self, space: str | None = None) -> int:
        """Number of passages (in ``space``, or in all spaces)."""
        if space is None:
            rows = self._db.fetch("keyword count", "SELECT count(*) FROM keyword_docs")
        else:
            rows = self._db.fetch("keyword count",
                                  "SELECT count(*) FROM keyword_docs WHERE space = %s", [space])
        return int(rows[0][0])

    def item_ids(self) -> set[str]:
        """Every item that has at least one passage."""
        return {r[0] for r in self._db.fetch("keyword list",
                                             "SELECT DISTINCT item_id FROM keyword_docs")}

    def docs(self, *, after: int = 0, limit: int = -1) -> list[tuple[int, KeywordDoc]]:
        """Passages in storage order with their row numbers (see the SQLite index)."""
        return [(r[0], KeywordDoc(*r[1:])) for r in self._db.fetch(
            "keyword list", "SELECT id, doc_id, item_id, space, audience, text FROM keyword_docs "
            "WHERE id > %s ORDER BY id LIMIT %s", [after, None if limit < 0 else limit])]

    def close(self) -> None:
        if self._owns_db:
            self._db.close()
