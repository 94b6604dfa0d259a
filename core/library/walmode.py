"""Switching a SQLite file of the embedded index to WAL mode, safely when several processes
open it at the same moment.

WAL is what lets the catalog and keyword files be shared by several processes (and readers
never wait for the writer). Switching a file to WAL needs an exclusive lock, and SQLite does
NOT wait for it: ``PRAGMA journal_mode=WAL`` fails at once with "database is locked" (the busy
timeout does not apply) when another process holds any lock on the file. Two ``pixrag``
commands started together on a new data folder both try it, and one of them failed before
it had done anything. The mode is stored in the file, so the switch is needed once: skip it
when the file is already in WAL mode, and otherwise retry until the time limit.
"""

from __future__ import annotations

import logging
import sqlite3
import time

log = logging.getLogger(__name__)

#: Pause between two attempts: the other process holds its lock for milliseconds.
_RETRY_S = 0.02


def _mode(db: sqlite3.Connection) -> str:
    return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def use_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Put ``db``'s file in WAL mode, waiting up to ``timeout_s`` for other processes that are
    opening it too. Raises ``sqlite3.OperationalError`` when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _mode(db) == "wal":
                return
            mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            if mode == "wal":
                return
            # Some file systems cannot do WAL (no shared memory): SQLite keeps the old mode.
            log.warning("SQLite kept journal mode %r instead of WAL for this file", mode)
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_RETRY_S)
