"""The item catalog in PostgreSQL: the server-mode twin of :class:`core.library.catalog.Catalog`.

Same methods, arguments, return values and write-order role (the item row is the commit
marker, written last and deleted first). Several hosts share one database:

- items are keyed by their id (which already carries the space) and written with
  ``INSERT ... ON CONFLICT (id) DO UPDATE``, so two hosts indexing the same file at once
  end with one row, the last writer's; rows of one batch are written in id order so two
  overlapping batches cannot deadlock;
- the schema is created and migrated by :meth:`PgDatabase.migrate` (versioned, under an
  advisory lock: safe when several hosts start together);
- every statement has a server-side timeout; errors are StoreError / StoreUnavailable with
  the database named and the password left out.

Differences from SQLite, all invisible through this interface: NUL characters are dropped
from text (PostgreSQL text cannot hold them); ``spaces()`` sorts by code point (``COLLATE
"C"``), like SQLite; rows with the same ``created`` come back in id order.
All methods block: call them from an executor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from core.library.catalog import STATE_TABLES, ItemRow
from core.library.pg_database import PgDatabase, _clean, open_migrated

_STATE_COLUMNS = {
    "files": ["space", "file_sha", "source", "items", "done"],
    "prefs": ["space", "key", "value"],
    "captions": ["sha", "model", "text", "created"],
    "feedback": ["space", "platform", '"user"', "question", "verdict", "sources", "created"],
    "enrich": ["item_id", "space", "attempts", "lease", "error", "created"],
}
_STATE_KEYS = {"files": ["space", "file_sha"], "prefs": ["space", "key"],
               "captions": ["sha", "model"], "feedback": ["id"], "enrich": ["item_id"]}

_COLUMNS = [
    "id", "space", "kind", "source", "name", "page", "file_sha", "image_sha", "text", "phash",
    "audience", "platform", "channel", "message", "attachment", "author", "link", "private",
    "created", "stage",
]
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM items"  # noqa: S608 - constant column list

#: Ordered schema migrations; never edit a released one, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS items (
        id text PRIMARY KEY,
        space text NOT NULL,
        kind text NOT NULL,
        source text NOT NULL,
        name text NOT NULL,
        page integer,
        file_sha text NOT NULL,
        image_sha text,
        text text NOT NULL DEFAULT '',
        phash text NOT NULL DEFAULT '',
        audience text NOT NULL DEFAULT '*',
        platform text NOT NULL DEFAULT 'local',
        channel text NOT NULL DEFAULT '',
        message text NOT NULL DEFAULT '',
        attachment text NOT NULL DEFAULT '',
        author text NOT NULL DEFAULT '',
        link text NOT NULL DEFAULT '',
        private boolean NOT NULL DEFAULT false,
        created double precision NOT NULL
    );
    CREATE INDEX IF NOT EXISTS items_space ON items (space, kind);
    CREATE INDEX IF NOT EXISTS items_source ON items (space, source);
    CREATE INDEX IF NOT EXISTS items_file ON items (space, file_sha);
    CREATE INDEX IF NOT EXISTS items_message ON items (space, message);
    CREATE INDEX IF NOT EXISTS items_image ON items (image_sha);
    CREATE INDEX IF NOT EXISTS items_file_sha ON items (file_sha);
    CREATE TABLE IF NOT EXISTS files (
        space text NOT NULL, file_sha text NOT NULL, source text NOT NULL,
        items integer NOT NULL, done double precision NOT NULL,
        PRIMARY KEY (space, file_sha)
    );
    CREATE TABLE IF NOT EXISTS prefs (
        space text NOT NULL, key text NOT NULL, value text NOT NULL, PRIMARY KEY (space, key)
    );
    CREATE TABLE IF NOT EXISTS captions (
        sha text NOT NULL, model text NOT NULL, text text NOT NULL,
        created double precision NOT NULL, PRIMARY KEY (sha, model)
    );
    CREATE TABLE IF NOT EXISTS feedback (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        space text NOT NULL, platform text NOT NULL, "user" text NOT NULL,
        question text NOT NULL, verdict text NOT NULL, sources json NOT NULL,
        created double precision NOT NULL
    );
    CREATE INDEX IF NOT EXISTS feedback_space ON feedback (space, id);
    """,
    # 2: two-phase ingestion (stage + durable queue), library records, attachment lookups.
    """
    ALTER TABLE items ADD COLUMN IF NOT EXISTS stage integer NOT NULL DEFAULT 2;
    CREATE INDEX IF NOT EXISTS items_attachment ON items (space, attachment);
    CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE IF NOT EXISTS enrich (
        item_id text PRIMARY KEY, space text NOT NULL, attempts integer NOT NULL DEFAULT 0,
        lease double precision NOT NULL DEFAULT 0, error text NOT NULL DEFAULT '',
        created double precision NOT NULL
    );
    CREATE INDEX IF NOT EXISTS enrich_space ON enrich (space);
    """,
    """
    CREATE TABLE IF NOT EXISTS forgotten (
        item_id text PRIMARY KEY, space text NOT NULL, created double precision NOT NULL,
        shas text NOT NULL DEFAULT ''
    );
    """,
]


def _row(r: Sequence[Any]) -> ItemRow:
    values = dict(zip(_COLUMNS, r, strict=True))
    values["private"] = bool(values["private"])
    return ItemRow(**values)


class PgCatalog:
    """Catalog rows in PostgreSQL. Pass a URL (the catalog owns its pool) or a shared
    :class:`PgDatabase` (its owner closes it)."""

    def __init__(self, url: str | PgDatabase, *, statement_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, pool_size: int = 4) -> None:
        self._db, self._owns_db = open_migrated(
            url, "catalog", MIGRATIONS, statement_timeout_s=statement_timeout_s,
            connect_timeout_s=connect_timeout_s, pool_size=pool_size)

    #: Only a file can be found empty; a database reports its own damage.
    was_empty_file = False

    @property
    def url(self) -> str:
        """The database, password removed."""
        return self._db.url

    @property
    def location(self) -> str:
        return self._db.url

    @property
    def database(self) -> PgDatabase:
        """The connection pool, to share with the keyword index."""
        return self._db

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    # items -------------------------------------------------------------------------------
    def add(self, rows: Iterable[ItemRow], *, enrich: Iterable[str] = ()) -> None:
        """Insert or replace rows (the commit marker) and queue ``enrich`` ids for the second
        ingestion phase, in one transaction."""
        # Last row per id wins (as INSERT OR REPLACE does); id order avoids deadlocks between
        # hosts writing overlapping batches.
        latest = {r.id: r for r in rows}
        queue = sorted(set(enrich))
        if not latest and not queue:
            return
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
        now = time.time()
        with self._db.connection("catalog add") as conn, conn.transaction(), \
                conn.cursor() as cur:
            if latest:
                cur.executemany(
                    f"INSERT INTO items ({cols}) VALUES ({marks}) "  # noqa: S608
                    f"ON CONFLICT (id) DO UPDATE SET {updates}",
                    [_clean([getattr(r, c) for c in _COLUMNS])
                     for _, r in sorted(latest.items())])
            if latest:  # indexed again after an interrupted forget: live again
                cur.execute("DELETE FROM forgotten WHERE item_id = ANY(%s)", [sorted(latest)])
            if queue:
                cur.executemany(
                    "INSERT INTO enrich (item_id, space, created) VALUES (%s, %s, %s) "
                    "ON CONFLICT (item_id) DO UPDATE SET attempts = 0, lease = 0, error = ''",
                    [(i, latest[i].space if i in latest else "", now) for i in queue])

    def get(self, space: str, ids: Sequence[str]) -> dict[str, ItemRow]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        rows = self._db.fetch("catalog get", f"{_SELECT} WHERE space = %s AND id = ANY(%s)",
                              [space, ids])
        found = {r.id: r for r in map(_row, rows)}
        # The order of ``ids`` (SQLite returns rows in the order they are asked for, in
        # chunks; callers only look ids up, but a stable order keeps outputs identical).
        return {i: found[i] for i in ids if i in found}

    def existing(self, space: str, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return set()
        rows = self._db.fetch("catalog lookup",
                              "SELECT id FROM items WHERE space = %s AND id = ANY(%s)",
                              [space, ids])
        return {r[0] for r in rows}

    def find(self, space: str, *, source: str | None = None, message: str | None = None,
             attachment: str | None = None, file_sha: str | None = None,
             channel: str | None = None) -> list[ItemRow]:
        conds, params = ["space = %s"], [space]
        for col, val in (("source", source), ("message", message), ("channel", channel),
                         ("attachment", attachment), ("file_sha", file_sha)):
            if val is not None:
                conds.append(f"{col} = %s")
                params.append(val)
        sql = f"{_SELECT} WHERE {' AND '.join(conds)} ORDER BY created, id"
        return [_row(r) for r in self._db.fetch("catalog find", sql, params)]

    def find_by_source_prefix(self, space: str, prefix: str) -> list[ItemRow]:
        # starts_with: no LIKE pattern, so "%" and "_" in a path are plain characters.
        return [_row(r) for r in self._db.fetch(
            "catalog find", f"{_SELECT} WHERE space = %s AND starts_with(source, %s) "
            "ORDER BY created, id", [space, prefix])]

    def all(self, space: str | None = None) -> list[ItemRow]:
        if space is None:
            rows = self._db.fetch("catalog list", f"{_SELECT} ORDER BY created, id")
        else:
            rows = self._db.fetch("catalog list",
                                  f"{_SELECT} WHERE space = %s ORDER BY created, id", [space])
        return [_row(r) for r in rows]

    def phashes(self, space: str, audiences: Sequence[str] | None) -> list[tuple[str, str]]:
        sql = "SELECT id, phash FROM items WHERE space = %s AND phash != ''"
        params: list[Any] = [space]
        if audiences is not None:
            sql += " AND audience = ANY(%s)"
            params.append(list(audiences))
        return [(r[0], r[1]) for r in self._db.fetch("catalog phashes", sql, params)]

    def delete(self, space: str, ids: Sequence[str]) -> None:
        """Remove rows and record them as forgotten (until :meth:`clear_forgotten`), in one
        transaction."""
        ids = sorted(set(ids))
        if ids:
            with self._db.connection("catalog delete") as conn, conn.transaction():
                gone = sorted(conn.execute(
                    "DELETE FROM items WHERE space = %s AND id = ANY(%s) "
                    "RETURNING id, file_sha, image_sha", [space, ids]).fetchall())
                conn.execute("DELETE FROM enrich WHERE item_id = ANY(%s)", [ids])
                now = time.time()
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO forgotten (item_id, space, created, shas) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (item_id) DO NOTHING",
                        [(i, space, now, " ".join(sha for sha in (f, m) if sha))
                         for i, f, m in gone])

    def forgotten(self) -> dict[str, str]:
        """Items whose removal is not finished (see :meth:`delete`): id -> space."""
        return {r[0]: r[1] for r in self._db.fetch(
            "catalog list", "SELECT item_id, space FROM forgotten")}

    def forgotten_shas(self, ids: Sequence[str]) -> set[str]:
        """The originals' digests of these forgotten items."""
        rows = self._db.fetch("catalog list", "SELECT shas FROM forgotten "
                              "WHERE item_id = ANY(%s)", [list(ids)])
        return {sha for (shas,) in rows for sha in shas.split()}

    def clear_forgotten(self, ids: Sequence[str]) -> None:
        """Their removal is finished: nothing of them is left to drop."""
        ids = sorted(set(ids))
        if ids:
            with self._db.connection("catalog forgotten") as conn, conn.transaction():
                conn.execute("DELETE FROM forgotten WHERE item_id = ANY(%s)", [ids])

    def live_ids(self, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return set()
        return {r[0] for r in self._db.fetch(
            "catalog lookup", "SELECT id FROM items WHERE id = ANY(%s)", [ids])}

    def ids(self) -> set[str]:
        return {r[0] for r in self._db.fetch("catalog list", "SELECT id FROM items")}

    def attachments(self, space: str, attachment_ids: Sequence[str]) -> set[str]:
        ids = [a for a in dict.fromkeys(attachment_ids) if a]
        if not ids:
            return set()
        return {r[0] for r in self._db.fetch(
            "catalog lookup", "SELECT DISTINCT attachment FROM items "
            "WHERE space = %s AND attachment = ANY(%s)", [space, ids])}

    def shas(self) -> set[str]:
        out: set[str] = set()
        for f, i in self._db.fetch("catalog list", "SELECT file_sha, image_sha FROM items"):
            out.add(f)
            if i:
                out.add(i)
        return out

    def files(self) -> list[tuple[str, str, str, int]]:
        return [(s, f, src, int(n)) for s, f, src, n in self._db.fetch(
            "catalog files", "SELECT space, file_sha, source, items FROM files")]

    # the second ingestion phase -----------------------------------------------------------
    def claim_enrich(self, limit: int, lease_s: float, max_attempts: int) -> list[ItemRow]:
        """Lease queued items to this worker; SKIP LOCKED lets several hosts share the queue
        without taking the same item. Leases are in the server's time: hosts whose clocks
        disagree must not take each other's fresh leases for expired ones."""
        with self._db.connection("queue claim") as conn, conn.transaction():
            ids = [r[0] for r in conn.execute(
                "SELECT item_id FROM enrich WHERE lease < EXTRACT(EPOCH FROM clock_timestamp()) "
                "AND attempts < %s "
                "ORDER BY created, item_id LIMIT %s FOR UPDATE SKIP LOCKED",
                [max_attempts, limit]).fetchall()]
            if not ids:
                return []
            conn.execute("UPDATE enrich SET lease = EXTRACT(EPOCH FROM clock_timestamp()) + %s, "
                         "attempts = attempts + 1 "
                         "WHERE item_id = ANY(%s)", [lease_s, ids])
            rows = conn.execute(f"{_SELECT} WHERE id = ANY(%s)", [ids]).fetchall()
            found = {r[0] for r in rows}
            gone = [i for i in ids if i not in found]
            if gone:
                conn.execute("DELETE FROM enrich WHERE item_id = ANY(%s)", [gone])
        return [_row(r) for r in rows]

    def finish_enrich(self, rows: Sequence[ItemRow]) -> None:
        if not rows:
            return
        with self._db.connection("queue finish") as conn, conn.transaction(), \
                conn.cursor() as cur:
            cur.executemany("UPDATE items SET text = %s, stage = %s WHERE id = %s AND space = %s",
                            [_clean([r.text, r.stage, r.id, r.space])
                             for r in sorted(rows, key=lambda r: r.id)])
            cur.execute("DELETE FROM enrich WHERE item_id = ANY(%s)", [[r.id for r in rows]])

    def renew_enrich(self, ids: Sequence[str], lease_s: float) -> None:
        """Extend the lease on ``ids``: the worker is still at them."""
        self._db.run("queue renew", "UPDATE enrich SET lease = "
                     "EXTRACT(EPOCH FROM clock_timestamp()) + %s "
                     "WHERE item_id = ANY(%s)", [lease_s, list(ids)])

    def release_enrich(self, ids: Sequence[str]) -> None:
        """Give ``ids`` back unfinished (the worker is stopping): free for the next worker
        at once, and the interrupted attempt does not count."""
        self._db.run("queue release", "UPDATE enrich SET lease = 0, "
                     "attempts = GREATEST(attempts - 1, 0) WHERE item_id = ANY(%s)", [list(ids)])

    def reclaim_leases(self) -> int:
        """Free every lease at once; how many there were. Only for a process that knows no
        other one can be working on the queue (their holders were killed)."""
        with self._db.connection("queue reclaim") as conn, conn.transaction():
            return conn.execute("UPDATE enrich SET lease = 0 WHERE lease > 0").rowcount

    def fail_enrich(self, item_id: str, error: str) -> None:
        self._db.run("queue failure", "UPDATE enrich SET error = %s, lease = 0 "
                     "WHERE item_id = %s", [error, item_id])

    def pending(self, space: str | None = None) -> int:
        if space is None:
            return int(self._db.fetch("queue count", "SELECT COUNT(*) FROM enrich")[0][0])
        return int(self._db.fetch("queue count", "SELECT COUNT(*) FROM enrich WHERE space = %s",
                                  [space])[0][0])

    def pending_ids(self, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return set()
        return {r[0] for r in self._db.fetch(
            "queue lookup", "SELECT item_id FROM enrich WHERE item_id = ANY(%s)", [ids])}

    def queued_ids(self) -> list[str]:
        """Every item waiting for text, any space, oldest first."""
        return [r[0] for r in self._db.fetch(
            "queue list", "SELECT item_id FROM enrich ORDER BY created, item_id")]

    def enrich_failures(self, max_attempts: int) -> list[tuple[str, str]]:
        return [(i, e) for i, e in self._db.fetch(
            "queue lookup", "SELECT item_id, error FROM enrich WHERE attempts >= %s",
            [max_attempts])]

    def uncaptioned(self, space: str, model: str) -> list[str]:
        return [r[0] for r in self._db.fetch(
            "caption lookup",
            "SELECT id FROM items i WHERE space = %s AND stage = 2 "
            "AND COALESCE(image_sha, '') <> '' AND NOT EXISTS (SELECT 1 FROM captions c "
            "WHERE c.sha = i.image_sha AND c.model = %s) ORDER BY id", [space, model])]

    def requeue(self, space: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        now = time.time()
        with self._db.connection("queue add") as conn, conn.transaction(), \
                conn.cursor() as cur:
            cur.executemany("INSERT INTO enrich (item_id, space, created) VALUES (%s, %s, %s) "
                            "ON CONFLICT (item_id) DO NOTHING",
                            [(i, space, now) for i in sorted(ids)])

    # meta and whole-catalog copies ----------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._db.fetch("catalog meta", "SELECT value FROM meta WHERE key = %s", [key])
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.run("catalog meta", "DELETE FROM meta WHERE key = %s", [key])
        else:
            self._db.run("catalog meta", "INSERT INTO meta (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value])

    def dump(self, table: str) -> list[dict[str, Any]]:
        if table not in STATE_TABLES:
            raise ValueError(table)
        cols = _STATE_COLUMNS[table]
        rows = self._db.fetch("catalog dump", f"SELECT {', '.join(cols)} FROM {table}")  # noqa: S608
        out = [dict(zip([c.strip('"') for c in cols], r, strict=True)) for r in rows]
        if table == "feedback":
            for r in out:
                r["sources"] = json.dumps(r["sources"]) if not isinstance(r["sources"], str) \
                    else r["sources"]
        return out

    def restore(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Rows from any catalog's ``dump`` (SQLite or PostgreSQL); idempotent."""
        if table not in STATE_TABLES or not rows:
            return
        keys = _STATE_KEYS[table]
        if table == "feedback":  # identity ids differ between databases: match on content
            existing = {(r["space"], r["user"], r["question"], r["created"])
                        for r in self.dump("feedback")}
            for r in rows:
                if (r["space"], r["user"], r["question"], r["created"]) in existing:
                    continue
                self._db.run("catalog restore",
                             'INSERT INTO feedback (space, platform, "user", question, verdict, '
                             "sources, created) VALUES (%s, %s, %s, %s, %s, %s::json, %s)",
                             [r["space"], r["platform"], r["user"], r["question"], r["verdict"],
                              r["sources"], r["created"]])
            return
        cols = [c.strip('"') for c in _STATE_COLUMNS[table]]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys) or \
            f"{keys[0]} = excluded.{keys[0]}"
        self._db.run_many(
            "catalog restore",
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}",
            [[r[c] for c in cols] for r in rows])

    def sha_in_use(self, sha: str) -> bool:
        rows = self._db.fetch(
            "catalog lookup",
            "SELECT 1 FROM items WHERE image_sha = %s OR file_sha = %s LIMIT 1", [sha, sha])
        return bool(rows)

    def counts(self, space: str) -> dict[str, int]:
        return {k: int(n) for k, n in self._db.fetch(
            "catalog counts",
            "SELECT kind, COUNT(*) FROM items WHERE space = %s GROUP BY kind "
            "ORDER BY kind COLLATE \"C\"", [space])}

    def spaces(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._db.fetch(
            "catalog spaces",
            "SELECT space, COUNT(*) FROM items GROUP BY space ORDER BY space COLLATE \"C\"")}

    # files (a whole file fully indexed: lets re-runs skip it cheaply) ----------------------
    def file_done(self, space: str, file_sha: str) -> str | None:
        rows = self._db.fetch("catalog files",
                              "SELECT source FROM files WHERE space = %s AND file_sha = %s",
                              [space, file_sha])
        return rows[0][0] if rows else None

    def mark_file(self, space: str, file_sha: str, source: str, items: int) -> None:
        self._db.run(
            "catalog files",
            "INSERT INTO files (space, file_sha, source, items, done) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (space, file_sha) DO UPDATE SET source = excluded.source, "
            "items = excluded.items, done = excluded.done",
            [space, file_sha, source, items, time.time()])

    def unmark_files(self, space: str, file_shas: Iterable[str]) -> None:
        shas = sorted(set(file_shas))
        if shas:
            self._db.run("catalog files",
                         "DELETE FROM files WHERE space = %s AND file_sha = ANY(%s)",
                         [space, shas])

    def clear_files(self) -> None:
        self._db.run("catalog files", "DELETE FROM files")

    # prefs --------------------------------------------------------------------------------
    def get_pref(self, space: str, key: str) -> str | None:
        rows = self._db.fetch("catalog prefs",
                              "SELECT value FROM prefs WHERE space = %s AND key = %s",
                              [space, key])
        return rows[0][0] if rows else None

    def set_pref(self, space: str, key: str, value: str | None) -> None:
        if value is None:
            self._db.run("catalog prefs", "DELETE FROM prefs WHERE space = %s AND key = %s",
                         [space, key])
        else:
            self._db.run(
                "catalog prefs",
                "INSERT INTO prefs (space, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                [space, key, value])

    def prefs_like(self, space: str, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._db.fetch(
            "catalog prefs",
            "SELECT key, value FROM prefs WHERE space = %s AND starts_with(key, %s) "
            "ORDER BY key COLLATE \"C\"", [space, prefix])}

    # captions (cached by content hash: a model is never billed twice for the same bytes) ---
    def caption(self, sha: str, model: str) -> str | None:
        rows = self._db.fetch("catalog captions",
                              "SELECT text FROM captions WHERE sha = %s AND model = %s",
                              [sha, model])
        return rows[0][0] if rows else None

    def put_caption(self, sha: str, model: str, text: str) -> None:
        self._db.run(
            "catalog captions",
            "INSERT INTO captions (sha, model, text, created) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (sha, model) DO UPDATE SET text = excluded.text, "
            "created = excluded.created",
            [sha, model, text, time.time()])

    # feedback -------------------------------------------------------------------------------
    def add_feedback(self, space: str, platform: str, user: str, question: str, verdict: str,
                     sources: Sequence[dict[str, Any]]) -> None:
        self._db.run(
            "catalog feedback",
            'INSERT INTO feedback (space, platform, "user", question, verdict, sources, created) '
            "VALUES (%s, %s, %s, %s, %s, %s::json, %s)",
            [space, platform, user, question, verdict, json.dumps(list(sources)), time.time()])

    def feedback(self, space: str | None = None) -> list[dict[str, Any]]:
        # sources::text and json.loads: exactly what was stored, key order included.
        sql = ('SELECT space, platform, "user", question, verdict, sources::text, created '
               "FROM feedback")
        params: list[Any] = []
        if space is not None:
            sql += " WHERE space = %s"
            params.append(space)
        out = []
        for s, p, u, q, v, src, c in self._db.fetch("catalog feedback", sql + " ORDER BY id",
                                                    params):
            out.append({"space": s, "platform": p, "user": u, "question": q, "verdict": v,
                        "sources": json.loads(src), "created": c})
        return out
