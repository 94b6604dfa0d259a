"""The item catalog: one row per retrievable item, plus small per-space state (SQLite).

An item's catalog row is written LAST, after its blobs and vectors: it is the commit marker.
A crash before it leaves only orphan vectors that the re-run overwrites (same ids), and search
drops vector hits with no catalog row, so a half-written item is never shown. Forgetting deletes
the row FIRST for the same reason. The ordering itself lives in :mod:`core.library`.

One writer connection (behind a lock) and one read connection per reader thread: in WAL mode
readers never wait for the writer, so searches do not queue behind indexing. WAL also lets
several processes on one host share the file. All methods block: call them from an executor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core.errors import StoreError
from core.library.folderlock import FolderUse
from core.library.walmode import use_wal

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    space TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    page INTEGER,
    file_sha TEXT NOT NULL,      -- bytes of the indexed file (PDF, image, document)
    image_sha TEXT,              -- bytes of the image shown/sent (original image, rendered page)
    text TEXT NOT NULL DEFAULT '',
    phash TEXT NOT NULL DEFAULT '',
    audience TEXT NOT NULL DEFAULT '*',
    platform TEXT NOT NULL DEFAULT 'local',
    channel TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    attachment TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    link TEXT NOT NULL DEFAULT '',
    private INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    stage INTEGER NOT NULL DEFAULT 2   -- 1: findable (CLIP, near-dup), 2: text enriched too
);
CREATE INDEX IF NOT EXISTS items_space ON items(space, kind);
CREATE INDEX IF NOT EXISTS items_source ON items(space, source);
CREATE INDEX IF NOT EXISTS items_file ON items(space, file_sha);
CREATE INDEX IF NOT EXISTS items_message ON items(space, message);
CREATE INDEX IF NOT EXISTS items_attachment ON items(space, attachment);
CREATE INDEX IF NOT EXISTS items_image ON items(image_sha);
CREATE TABLE IF NOT EXISTS files (
    space TEXT NOT NULL, file_sha TEXT NOT NULL, source TEXT NOT NULL, items INTEGER NOT NULL,
    done REAL NOT NULL, PRIMARY KEY (space, file_sha)
);
CREATE TABLE IF NOT EXISTS prefs (
    space TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (space, key)
);
CREATE TABLE IF NOT EXISTS captions (
    sha TEXT NOT NULL, model TEXT NOT NULL, text TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (sha, model)
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, space TEXT NOT NULL, platform TEXT NOT NULL,
    user TEXT NOT NULL, question TEXT NOT NULL, verdict TEXT NOT NULL, sources TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The durable queue of the second ingestion phase (OCR, captions, text vectors, keywords).
CREATE TABLE IF NOT EXISTS enrich (
    item_id TEXT PRIMARY KEY, space TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    lease REAL NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS enrich_space ON enrich(space);
-- Items whose removal began (their row is gone) and is not finished yet: vectors, keyword
-- rows or blobs may remain, and `pixrag check --repair` must drop them, never rebuild a row
-- from them.
CREATE TABLE IF NOT EXISTS forgotten (
    item_id TEXT PRIMARY KEY, space TEXT NOT NULL, created REAL NOT NULL,
    shas TEXT NOT NULL DEFAULT ''  -- its originals' digests, space-separated
);
"""

#: The small tables ``pixrag migrate`` copies besides the items.
STATE_TABLES = ("files", "prefs", "captions", "feedback", "enrich")

# Columns added after the first release, with their definitions (ALTER TABLE ... ADD COLUMN).
_ADDED_COLUMNS = {"stage": "INTEGER NOT NULL DEFAULT 2"}


@dataclass(frozen=True)
class ItemRow:
    id: str
    space: str
    kind: str
    source: str
    name: str
    page: int | None
    file_sha: str
    image_sha: str | None
    text: str = ""
    phash: str = ""
    audience: str = "*"
    platform: str = "local"
    channel: str = ""
    message: str = ""
    attachment: str = ""
    author: str = ""
    link: str = ""
    private: bool = False
    created: float = 0.0
    stage: int = 2


COLUMNS = [f.name for f in fields(ItemRow)]
_COLS = ",".join(COLUMNS)


def row_from_values(values: Sequence[Any]) -> ItemRow:
    d = dict(zip(COLUMNS, values, strict=True))
    d["private"] = bool(d["private"])
    return ItemRow(**d)


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=timeout_s,
                         isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Create the schema, or bring an older one up to date, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            have = {r[1] for r in db.execute("PRAGMA table_info(items)")}
            # Statement by statement: executescript() would COMMIT the transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if have:  # an older catalog: add what it lacks
                for col, definition in _ADDED_COLUMNS.items():
                    if col not in have:
                        db.execute(f"ALTER TABLE items ADD COLUMN {col} {definition}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _create(path: Path, timeout_s: float) -> None:
    """Create a new catalog file complete (schema, WAL mode) under another name and link it
    into place. SQLite creates a file empty and writes it at the first commit: another
    process opening the data folder at that moment (two commands started together) took the
    empty file for a catalog that lost its data and asked for a repair on every run."""
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}-{threading.get_ident()}")
    try:
        db = _connect(tmp, timeout_s)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            _migrate(db)
        finally:
            db.close()  # the last connection: the WAL is checkpointed into the file
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.debug("another process created %s first", path)
        except OSError as exc:  # no hard links here (some network or FUSE file systems)
            log.debug("creating %s in place: %s", path, exc)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{suffix}")


class Catalog:
    def __init__(self, path: Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._timeout = timeout_s
        self._use: FolderUse | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._use = FolderUse(self.path.parent)
            #: A catalog file that exists but is empty lost its data (a crash during a copy, a
            #: truncation): the library compares it with the vectors and says so. A new
            #: catalog is never seen empty (see _create), so this is never a process that is
            #: creating it at this moment.
            self.was_empty_file = self.path.exists() and self.path.stat().st_size == 0
            if not self.path.exists():
                _create(self.path, timeout_s)
            self._db = _connect(self.path, timeout_s)
            use_wal(self._db, timeout_s)
            self._db.execute("PRAGMA synchronous=NORMAL")
            _migrate(self._db)
        except (OSError, sqlite3.Error) as exc:
            if self._use is not None:
                self._use.release()
            raise StoreError(f"cannot open the catalog {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    # connections ------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise StoreError(f"the catalog {self.path} is closed")
            db = _connect(self.path, self._timeout)
            db.execute("PRAGMA query_only = 1")
            self._local.db = db
            with self._lock:
                self._readers.append(db)
        return db

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read, on this thread's own connection."""
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"catalog {self.path}: {exc}") from exc

    def _exec_in(self, sql: str, keys: Sequence[str],
                 before: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read whose ``{marks}`` is an ``IN`` list of ``keys``, 500 at a time (SQLite's
        limit on parameters is low on some builds)."""
        keys = list(dict.fromkeys(keys))
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            out += self._exec(sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk])
        return out

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. ANY exception rolls it back (a half-open transaction would
        make every later write fail with "cannot start a transaction within a transaction")."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the catalog {self.path} is closed")
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"catalog {self.path}: {exc}") from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for db in [self._db, *self._readers]:
                try:
                    db.close()
                except sqlite3.Error as exc:  # closing must not mask the error that ended a run
                    log.debug("closing the catalog: %s", exc)
            self._readers.clear()
            if self._use is not None:
                self._use.release()

    # items -------------------------------------------------------------------------------
    def add(self, rows: Iterable[ItemRow], *, enrich: Iterable[str] = ()) -> None:
        """Insert or replace rows (the commit marker) and queue ``enrich`` item ids for the
        second ingestion phase, in one transaction."""
        rows = list(rows)
        enrich = list(enrich)
        if not rows and not enrich:
            return
        marks = ",".join("?" * len(COLUMNS))
        now = time.time()
        by_id = {r.id: r.space for r in rows}
        with self._write() as db:
            db.executemany(f"INSERT OR REPLACE INTO items ({_COLS}) VALUES ({marks})",  # noqa: S608
                           [tuple(getattr(r, c) for c in COLUMNS) for r in rows])
            # Indexed again after a forget that was interrupted: the item is live again.
            db.executemany("DELETE FROM forgotten WHERE item_id=?", [(r.id,) for r in rows])
            db.executemany(
                "INSERT INTO enrich (item_id, space, created) VALUES (?,?,?) "
                "ON CONFLICT(item_id) DO UPDATE SET attempts=0, lease=0, error=''",
                [(i, by_id.get(i, ""), now) for i in enrich])

    def get(self, space: str, ids: Sequence[str]) -> dict[str, ItemRow]:
        # "+space": look ids up by primary key, not by scanning the space's index.
        rows = self._exec_in(f"SELECT {_COLS} FROM items WHERE +space=? AND id IN ({{marks}})",  # noqa: S608
                             ids, [space])
        return {r.id: r for r in map(row_from_values, rows)}

    def existing(self, space: str, ids: Sequence[str]) -> set[str]:
        return set(self.get(space, ids))

    def find(self, space: str, *, source: str | None = None, message: str | None = None,
             attachment: str | None = None, file_sha: str | None = None,
             channel: str | None = None) -> list[ItemRow]:
        conds, params = ["space=?"], [space]
        for col, val in (("source", source), ("message", message), ("channel", channel),
                         ("attachment", attachment), ("file_sha", file_sha)):
            if val is not None:
                conds.append(f"{col}=?")
                params.append(val)
        sql = f"SELECT {_COLS} FROM items WHERE {' AND '.join(conds)}"  # noqa: S608
        return [row_from_values(r) for r in self._exec(sql, params)]

    def find_by_source_prefix(self, space: str, prefix: str) -> list[ItemRow]:
        # A plain comparison, not LIKE: SQLite's LIKE ignores ASCII case, and paths do not
        # ("/data/Pics/" must not take "/data/pics/" along), nor are "%" and "_" wildcards.
        sql = (f"SELECT {_COLS} FROM items "  # noqa: S608
               "WHERE space=? AND substr(source, 1, ?)=?")
        return [row_from_values(r) for r in self._exec(sql, [space, len(prefix), prefix])]

    def attachments(self, space: str, attachment_ids: Sequence[str]) -> set[str]:
        """Which of these chat attachment/file ids already have items in ``space``."""
        return {r[0] for r in self._exec_in(
            "SELECT DISTINCT attachment FROM items WHERE space=? AND attachment IN ({marks})",
            [a for a in attachment_ids if a], [space])}

    def all(self, space: str | None = None) -> list[ItemRow]:
        sql = f"SELECT {_COLS} FROM items"  # noqa: S608
        if space is None:
            return [row_from_values(r) for r in self._exec(sql + " ORDER BY created")]
        return [row_from_values(r)
                for r in self._exec(sql + " WHERE space=? ORDER BY created", [space])]

    def live_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these item ids (of any space) have a catalog row."""
        return {r[0] for r in self._exec_in("SELECT id FROM items WHERE id IN ({marks})", ids)}

    def ids(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT id FROM items")}

    def phashes(self, space: str, audiences: Sequence[str] | None) -> list[tuple[str, str]]:
        sql = "SELECT id, phash FROM items WHERE space=? AND phash != ''"
        params: list[Any] = [space]
        if audiences is not None:
            sql += f" AND audience IN ({','.join('?' * len(audiences))})"
            params += list(audiences)
        return [(r[0], r[1]) for r in self._exec(sql, params)]

    def delete(self, space: str, ids: Sequence[str]) -> None:
        """Remove rows and record them as forgotten (until :meth:`clear_forgotten`), in one
        transaction."""
        ids = list(ids)
        now = time.time()
        with self._write() as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                q = ",".join("?" * len(chunk))
                gone = [(i, " ".join(sha for sha in (f, m) if sha)) for i, f, m in db.execute(
                    f"SELECT id, file_sha, image_sha FROM items "  # noqa: S608
                    f"WHERE +space=? AND id IN ({q})", [space, *chunk])]
                db.execute(f"DELETE FROM items WHERE +space=? AND id IN ({q})",  # noqa: S608
                           [space, *chunk])
                db.execute(f"DELETE FROM enrich WHERE item_id IN ({q})", chunk)  # noqa: S608
                db.executemany("INSERT OR REPLACE INTO forgotten VALUES (?,?,?,?)",
                               [(i, space, now, shas) for i, shas in gone])

    def forgotten(self) -> dict[str, str]:
        """Items whose removal is not finished (see :meth:`delete`): id -> space."""
        return {i: sp for i, sp in self._exec("SELECT item_id, space FROM forgotten")}

    def forgotten_shas(self, ids: Sequence[str]) -> set[str]:
        """The originals' digests of these forgotten items."""
        return {sha for (shas,) in self._exec_in(
            "SELECT shas FROM forgotten WHERE item_id IN ({marks})", ids) for sha in shas.split()}

    def clear_forgotten(self, ids: Sequence[str]) -> None:
        """Their removal is finished: nothing of them is left to drop."""
        with self._write() as db:
            db.executemany("DELETE FROM forgotten WHERE item_id=?", [(i,) for i in ids])

    def sha_in_use(self, sha: str) -> bool:
        rows = self._exec("SELECT 1 FROM items WHERE image_sha=? OR file_sha=? LIMIT 1",
                          [sha, sha])
        return bool(rows)

    def shas(self) -> set[str]:
        """Every blob digest some item refers to."""
        out: set[str] = set()
        for f, i in self._exec("SELECT file_sha, image_sha FROM items"):
            out.add(f)
            if i:
                out.add(i)
        return out

    def counts(self, space: str) -> dict[str, int]:
        return {k: n for k, n in self._exec(
            "SELECT kind, COUNT(*) FROM items WHERE space=? GROUP BY kind", [space])}

    def spaces(self) -> dict[str, int]:
        return {s: n for s, n in self._exec(
            "SELECT space, COUNT(*) FROM items GROUP BY space ORDER BY space")}

    # files (a whole file fully indexed: lets re-runs skip it cheaply) ----------------------
    def file_done(self, space: str, file_sha: str) -> str | None:
        rows = self._exec("SELECT source FROM files WHERE space=? AND file_sha=?",
                          [space, file_sha])
        return rows[0][0] if rows else None

    def mark_file(self, space: str, file_sha: str, source: str, items: int) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                       [space, file_sha, source, items, time.time()])

    def unmark_files(self, space: str, file_shas: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM files WHERE space=? AND file_sha=?",
                           [(space, sha) for sha in set(file_shas)])

    def clear_files(self) -> None:
        with self._write() as db:
            db.execute("DELETE FROM files")

    def files(self) -> list[tuple[str, str, str, int]]:
        """``(space, file_sha, source, items)`` of every file marked done."""
        return [(s, f, src, n) for s, f, src, n in self._exec(
            "SELECT space, file_sha, source, items FROM files")]

    # the second ingestion phase -----------------------------------------------------------
    def claim_enrich(self, limit: int, lease_s: float,
                     max_attempts: int) -> list[ItemRow]:
        """Lease up to ``limit`` queued items (oldest first) to this worker: a crashed worker's
        lease runs out and another process takes the item over."""
        now = time.time()
        with self._write() as db:
            ids = [r[0] for r in db.execute(
                "SELECT item_id FROM enrich WHERE lease < ? AND attempts < ? "
                "ORDER BY created, item_id LIMIT ?", [now, max_attempts, limit]).fetchall()]
            if not ids:
                return []
            q = ",".join("?" * len(ids))
            db.execute(f"UPDATE enrich SET lease=?, attempts=attempts+1 "  # noqa: S608
                       f"WHERE item_id IN ({q})", [now + lease_s, *ids])
            rows = db.execute(f"SELECT {_COLS} FROM items WHERE id IN ({q})", ids).fetchall()  # noqa: S608
            found = {r[0] for r in rows}
            gone = [i for i in ids if i not in found]  # forgotten meanwhile
            if gone:
                db.executemany("DELETE FROM enrich WHERE item_id=?", [(i,) for i in gone])
        return [row_from_values(r) for r in rows]

    def finish_enrich(self, rows: Sequence[ItemRow]) -> None:
        """Store enriched rows (text, stage 2) and drop them from the queue, atomically; a row
        forgotten meanwhile stays forgotten."""
        with self._write() as db:
            db.executemany("UPDATE items SET text=?, stage=? WHERE id=? AND space=?",
                           [(r.text, r.stage, r.id, r.space) for r in rows])
            db.executemany("DELETE FROM enrich WHERE item_id=?", [(r.id,) for r in rows])

    def renew_enrich(self, ids: Sequence[str], lease_s: float) -> None:
        """Extend the lease on ``ids``: the worker is still at them."""
        with self._write() as db:
            db.executemany("UPDATE enrich SET lease=? WHERE item_id=?",
                           [(time.time() + lease_s, i) for i in ids])

    def release_enrich(self, ids: Sequence[str]) -> None:
        """Give ``ids`` back unfinished (the worker is stopping): free for the next worker
        at once, and the interrupted attempt does not count."""
        with self._write() as db:
            db.executemany("UPDATE enrich SET lease=0, attempts=MAX(attempts-1, 0) "
                           "WHERE item_id=?", [(i,) for i in ids])

    def reclaim_leases(self) -> int:
        """Free every lease at once; how many there were. Only for a process that knows no
        other one can be working on the queue (their holders were killed)."""
        with self._write() as db:
            return db.execute("UPDATE enrich SET lease=0 WHERE lease > 0").rowcount

    def fail_enrich(self, item_id: str, error: str) -> None:
        with self._write() as db:
            db.execute("UPDATE enrich SET error=?, lease=0 WHERE item_id=?", [error, item_id])

    def pending(self, space: str | None = None) -> int:
        if space is None:
            return int(self._exec("SELECT COUNT(*) FROM enrich")[0][0])
        return int(self._exec("SELECT COUNT(*) FROM enrich WHERE space=?", [space])[0][0])

    def pending_ids(self, ids: Sequence[str]) -> set[str]:
        return {r[0] for r in self._exec_in(
            "SELECT item_id FROM enrich WHERE item_id IN ({marks})", ids)}

    def queued_ids(self) -> list[str]:
        """Every item waiting for text, any space, oldest first."""
        return [r[0] for r in self._exec("SELECT item_id FROM enrich ORDER BY created, item_id")]

    def enrich_failures(self, max_attempts: int) -> list[tuple[str, str]]:
        return [(i, e) for i, e in self._exec(
            "SELECT item_id, error FROM enrich WHERE attempts >= ?", [max_attempts])]

    def uncaptioned(self, space: str, model: str) -> list[str]:
        """Items of ``space`` done with phase 2 whose image has no caption by ``model``."""
        return [r[0] for r in self._exec(
            "SELECT id FROM items i WHERE space=? AND stage=2 AND COALESCE(image_sha,'')!='' "
            "AND NOT EXISTS (SELECT 1 FROM captions c WHERE c.sha=i.image_sha AND c.model=?) "
            "ORDER BY id", [space, model])]

    def requeue(self, space: str, ids: Sequence[str]) -> None:
        """Queue items for phase 2 again (they stay searchable with what they have)."""
        now = time.time()
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO enrich (item_id, space, created) "
                           "VALUES (?,?,?)", [(i, space, now) for i in ids])

    # copying a whole catalog (pixrag migrate) --------------------------------------------

    def dump(self, table: str) -> list[dict[str, Any]]:
        """Every row of one of :data:`STATE_TABLES`, as column -> value."""
        if table not in STATE_TABLES:
            raise ValueError(table)
        cur = self._reader().execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def restore(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace rows produced by :meth:`dump` (idempotent)."""
        if table not in STATE_TABLES:
            raise ValueError(table)
        if not rows:
            return
        if table == "feedback":
            self._restore_feedback(rows)
            return
        cols = list(rows[0])
        sql = (f"INSERT OR REPLACE INTO {table} ({','.join(cols)}) "  # noqa: S608
               f"VALUES ({','.join('?' * len(cols))})")
        with self._write() as db:
            db.executemany(sql, [tuple(r[c] for c in cols) for r in rows])

    def _restore_feedback(self, rows: Sequence[dict[str, Any]]) -> None:
        # Feedback ids are local to each database: the source's id 1 is not the target's id 1
        # (copying it would replace the target's own entry), and a PostgreSQL dump has none
        # (a re-run would add every entry again). Entries are matched on their content.
        cols = ["space", "platform", "user", "question", "verdict", "sources", "created"]
        with self._write() as db:
            have = {tuple(r) for r in db.execute(
                "SELECT space, user, question, created FROM feedback")}
            for r in rows:
                key = (r["space"], r["user"], r["question"], r["created"])
                if key in have:
                    continue
                have.add(key)
                db.execute(f"INSERT INTO feedback ({','.join(cols)}) "  # noqa: S608
                           f"VALUES ({','.join('?' * len(cols))})", [r[c] for c in cols])

    # meta (library records: live collections, models) ------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._exec("SELECT value FROM meta WHERE key=?", [key])
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key=?", [key])
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", [key, value])

    # prefs --------------------------------------------------------------------------------
    def get_pref(self, space: str, key: str) -> str | None:
        rows = self._exec("SELECT value FROM prefs WHERE space=? AND key=?", [space, key])
        return rows[0][0] if rows else None

    def set_pref(self, space: str, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM prefs WHERE space=? AND key=?", [space, key])
            else:
                db.execute("INSERT OR REPLACE INTO prefs VALUES (?,?,?)", [space, key, value])

    def prefs_like(self, space: str, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._exec(
            "SELECT key, value FROM prefs WHERE space=? AND substr(key, 1, ?)=?",
            [space, len(prefix), prefix])}

    # captions (cached by content hash: a model is never billed twice for the same bytes) ---
    def caption(self, sha: str, model: str) -> str | None:
        rows = self._exec("SELECT text FROM captions WHERE sha=? AND model=?", [sha, model])
        return rows[0][0] if rows else None

    def put_caption(self, sha: str, model: str, text: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO captions VALUES (?,?,?,?)",
                       [sha, model, text, time.time()])

    # feedback -------------------------------------------------------------------------------
    def add_feedback(self, space: str, platform: str, user: str, question: str, verdict: str,
                     sources: Sequence[dict[str, Any]]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO feedback (space, platform, user, question, verdict, sources, "
                "created) VALUES (?,?,?,?,?,?,?)",
                [space, platform, user, question, verdict, json.dumps(list(sources)),
                 time.time()])

    def feedback(self, space: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT space, platform, user, question, verdict, sources, created FROM feedback"
        params: list[Any] = []
        if space is not None:
            sql += " WHERE space=?"
            params.append(space)
        out = []
        for s, p, u, q, v, src, c in self._exec(sql + " ORDER BY id", params):
            out.append({"space": s, "platform": p, "user": u, "question": q, "verdict": v,
                        "sources": json.loads(src), "created": c})
        return out
