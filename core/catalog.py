"""The item catalog: one SQLite row per retrievable item, plus small per-space state.

An item's catalog row is written LAST, after its blobs and vectors: it is the commit marker.
A crash before it leaves only orphan vectors that the re-run overwrites (same ids), and search
drops vector hits with no catalog row, so a half-written item is never shown. Forgetting deletes
the row FIRST for the same reason. WAL mode lets several processes on one host share the file.
All methods block: call them from an executor.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core.errors import StoreError

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
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_space ON items(space, kind);
CREATE INDEX IF NOT EXISTS items_source ON items(space, source);
CREATE INDEX IF NOT EXISTS items_file ON items(space, file_sha);
CREATE INDEX IF NOT EXISTS items_message ON items(space, message);
CREATE INDEX IF NOT EXISTS items_attachment ON items(space, attachment);  -- backfill skips by id
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
"""


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


_COLUMNS = [f.name for f in fields(ItemRow)]


def _row(r: sqlite3.Row | tuple[Any, ...]) -> ItemRow:
    values = dict(zip(_COLUMNS, r, strict=True))
    values["private"] = bool(values["private"])
    return ItemRow(**values)


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the catalog {path}: {exc}") from exc
        self._lock = threading.Lock()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"catalog error: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # items -------------------------------------------------------------------------------
    def add(self, rows: Iterable[ItemRow]) -> None:
        rows = list(rows)
        if not rows:
            return
        cols = ",".join(_COLUMNS)
        marks = ",".join("?" * len(_COLUMNS))
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    f"INSERT OR REPLACE INTO items ({cols}) VALUES ({marks})",  # noqa: S608
                    [tuple(getattr(r, c) for c in _COLUMNS) for r in rows])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"catalog error: {exc}") from exc

    def get(self, space: str, ids: Sequence[str]) -> dict[str, ItemRow]:
        out: dict[str, ItemRow] = {}
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            q = ",".join("?" * len(chunk))
            for r in self._exec(
                f"SELECT {','.join(_COLUMNS)} FROM items WHERE space=? AND id IN ({q})",  # noqa: S608
                [space, *chunk],
            ):
                row = _row(r)
                out[row.id] = row
        return out

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
        sql = f"SELECT {','.join(_COLUMNS)} FROM items WHERE {' AND '.join(conds)}"  # noqa: S608
        return [_row(r) for r in self._exec(sql, params)]

    def find_by_source_prefix(self, space: str, prefix: str) -> list[ItemRow]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = (f"SELECT {','.join(_COLUMNS)} FROM items "  # noqa: S608
               "WHERE space=? AND source LIKE ? ESCAPE '\\'")
        return [_row(r) for r in self._exec(sql, [space, like])]

    def all(self, space: str | None = None) -> list[ItemRow]:
        sql = f"SELECT {','.join(_COLUMNS)} FROM items"  # noqa: S608
        if space is None:
            return [_row(r) for r in self._exec(sql + " ORDER BY created")]
        return [_row(r) for r in self._exec(sql + " WHERE space=? ORDER BY created", [space])]

    def phashes(self, space: str, audiences: Sequence[str] | None) -> list[tuple[str, str]]:
        sql = "SELECT id, phash FROM items WHERE space=? AND phash != ''"
        params: list[Any] = [space]
        if audiences is not None:
            sql += f" AND audience IN ({','.join('?' * len(audiences))})"
            params += list(audiences)
        return [(r[0], r[1]) for r in self._exec(sql, params)]

    def delete(self, space: str, ids: Sequence[str]) -> None:
        ids = list(ids)
        with self._lock:
            try:
                self._db.execute("BEGIN")
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    q = ",".join("?" * len(chunk))
                    self._db.execute(
                        f"DELETE FROM items WHERE space=? AND id IN ({q})",  # noqa: S608
                        [space, *chunk])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"catalog error: {exc}") from exc

    def sha_in_use(self, sha: str) -> bool:
        rows = self._exec("SELECT 1 FROM items WHERE image_sha=? OR file_sha=? LIMIT 1", [sha, sha])
        return bool(rows)

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
        self._exec("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                   [space, file_sha, source, items, time.time()])

    def unmark_files(self, space: str, file_shas: Iterable[str]) -> None:
        for sha in set(file_shas):
            self._exec("DELETE FROM files WHERE space=? AND file_sha=?", [space, sha])

    def clear_files(self) -> None:
        self._exec("DELETE FROM files")

    # prefs --------------------------------------------------------------------------------
    def get_pref(self, space: str, key: str) -> str | None:
        rows = self._exec("SELECT value FROM prefs WHERE space=? AND key=?", [space, key])
        return rows[0][0] if rows else None

    def set_pref(self, space: str, key: str, value: str | None) -> None:
        if value is None:
            self._exec("DELETE FROM prefs WHERE space=? AND key=?", [space, key])
        else:
            self._exec("INSERT OR REPLACE INTO prefs VALUES (?,?,?)", [space, key, value])

    def prefs_like(self, space: str, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._exec(
            "SELECT key, value FROM prefs WHERE space=? AND substr(key, 1, ?)=?",
            [space, len(prefix), prefix])}

    # captions (cached by content hash: a model is never billed twice for the same bytes) ---
    def caption(self, sha: str, model: str) -> str | None:
        rows = self._exec("SELECT text FROM captions WHERE sha=? AND model=?", [sha, model])
        return rows[0][0] if rows else None

    def put_caption(self, sha: str, model: str, text: str) -> None:
        self._exec("INSERT OR REPLACE INTO captions VALUES (?,?,?,?)",
                   [sha, model, text, time.time()])

    # feedback -------------------------------------------------------------------------------
    def add_feedback(self, space: str, platform: str, user: str, question: str, verdict: str,
                     sources: Sequence[dict[str, Any]]) -> None:
        self._exec(
            "INSERT INTO feedback (space, platform, user, question, verdict, sources, created) "
            "VALUES (?,?,?,?,?,?,?)",
            [space, platform, user, question, verdict, json.dumps(list(sources)), time.time()])

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
