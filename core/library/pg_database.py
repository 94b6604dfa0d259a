"""One PostgreSQL database shared by the server-mode catalog and keyword index.

:class:`PgDatabase` owns a small psycopg connection pool (the stores are called from executor
threads: each call borrows its own connection, so reads never queue behind a write on one
socket), converts every driver error into :class:`~core.errors.StoreError` /
:class:`~core.errors.StoreUnavailable` with the password scrubbed out, and bounds every wait:

- ``connect_timeout_s``: a new connection, and the wait for a free pooled one;
- ``statement_timeout_s``: every statement, enforced by the server (``statement_timeout``);
- TCP keepalives and ``tcp_user_timeout``: a host that vanished mid-query is noticed in about
  ``connect_timeout_s`` instead of the kernel's default of many minutes;
- a client-side deadline on every borrowed connection (``statement_timeout_s`` plus
  ``connect_timeout_s``, and ``connect_timeout_s`` for the check before use): a server whose
  kernel still acknowledges packets but that never answers (a stopped or stalled process) cannot
  cancel its own statements, so past the deadline the socket is shut down and the call fails.
  Without it the thread would wait forever, and a command could not even exit.

Pooled connections are checked before use (one round trip), so after a server restart the
first call reconnects instead of failing on a dead socket.

Schema: each component (``catalog``, ``keyword``) keeps an ordered list of migrations and its
version in the ``schema_version`` table. :meth:`PgDatabase.migrate` applies the missing ones
in one transaction under a transaction-level advisory lock, so several hosts starting at once
migrate exactly once and the others wait, then see the new version.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from core.errors import ConfigError, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

# Any constant works as long as every PixRAG version uses the same one: the lock only
# serialises PixRAG's own schema changes.
_MIGRATION_LOCK = 0x5049_5852  # "PIXR"


def redact(url: str) -> str:
    """A connection URL fit for logs and error messages: user, host, port and database,
    never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://<unparseable url>"
    user = str(info.get("user", ""))
    host = str(info.get("host", "") or "localhost")
    port = info.get("port", "")
    where = f"{host}:{port}" if port else host
    return f"postgresql://{user + '@' if user else ''}{where}/{info.get('dbname', '')}"


def _clean(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL characters (SQLite can); dropping them beats failing a
    # whole batch over one stray byte from OCR or a document.
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


class _Watchdog:
    """Shuts down the socket of a connection still busy past its deadline, so that the thread
    waiting on it gets an error instead of waiting forever. One daemon thread per database,
    started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._busy: dict[int, psycopg.Connection[Any]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    @contextmanager
    def watch(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
        """Guard a block using ``conn``; the block's error says so if it was cut off."""
        token = next(self._tokens)
        with self._cond:
            self._busy[token] = conn
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"pixrag-pg-watchdog-{self._name}")
                self._thread.start()
            elif self._heap[0][1] == token:  # due before what the thread sleeps towards
                self._cond.notify()
        try:
            yield
        except psycopg.OperationalError as exc:
            with self._cond:
                cut = token in self._fired
            if cut:
                raise psycopg.OperationalError(
                    f"no answer within {seconds:g} s: the server is not responding") from exc
            raise
        finally:
            with self._cond:
                self._busy.pop(token, None)
                self._fired.discard(token)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and (self._heap[0][1] not in self._busy
                                      or self._heap[0][0] <= now):
                    _, token = heapq.heappop(self._heap)
                    conn = self._busy.get(token)
                    if conn is not None and token not in self._fired:
                        self._fired.add(token)
                        _shut_down(conn)
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    # shutdown(), not close(): the socket stays the connection's (no descriptor is freed
    # under the thread that waits on it); that thread wakes up to an end of stream, and the
    # pool discards the broken connection when it comes back.
    try:
        if conn.closed:
            return
        dup = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, psycopg.Error) as exc:
        log.debug("cutting off a PostgreSQL connection: %s", exc)
        return
    with dup:
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.debug("cutting off a PostgreSQL connection: %s", exc)
    log.info("PostgreSQL did not answer in time: connection cut off")


def _connect_error(url: str, connect_s: int) -> psycopg.Error | None:
    """The error one direct connection attempt ends with, or None if it connects."""
    try:
        psycopg.connect(url, connect_timeout=connect_s).close()
    except psycopg.Error as exc:
        return exc
    return None


class PgDatabase:
    """A pooled connection to one PostgreSQL database. Thread-safe."""

    def __init__(self, url: str, *, statement_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, pool_size: int = 4) -> None:
        try:
            info = conninfo_to_dict(url)
        except psycopg.Error as exc:
            # The URL is not echoed: it may hold a password.
            raise ConfigError("catalog.url", "not a PostgreSQL connection URL "
                              "(postgresql://user:password@host:5432/database)") from exc
        self.url = redact(url)
        self._password = str(info.get("password") or "")
        self.statement_timeout_s = statement_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._closed = False
        self._lock = threading.Lock()
        timeout_ms = max(1, int(statement_timeout_s * 1000))
        # libpq rounds connect_timeout to whole seconds and treats values under 2 as 2.
        connect_s = max(2, round(connect_timeout_s))

        # A block may run a few statements, each bounded by the server; past this the server
        # itself is not answering.
        self._busy_limit_s = statement_timeout_s + connect_timeout_s
        self._watchdog = _Watchdog(self.url)

        def configure(conn: psycopg.Connection[Any]) -> None:
            # set_config, not SET: SET cannot take a bound parameter.
            with self._watchdog.watch(conn, connect_timeout_s):
                conn.execute("SELECT set_config('statement_timeout', %s, false)",
                             [str(timeout_ms)])

        def check(conn: psycopg.Connection[Any]) -> None:
            # The round trip before use waits on the server too.
            with self._watchdog.watch(conn, connect_timeout_s):
                psycopg_pool.ConnectionPool.check_connection(conn)

        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": connect_s,
                    "application_name": "pixrag",
                    "keepalives": 1,
                    "keepalives_idle": connect_s,
                    "keepalives_interval": 2,
                    "keepalives_count": 3,
                    "tcp_user_timeout": connect_s * 1000,
                },
                min_size=1,
                max_size=max(1, pool_size),
                open=False,
                configure=configure,
                check=check,
                timeout=connect_timeout_s,
                name="pixrag",
                # A server that stays down makes calls fail fast (PoolTimeout after
                # connect_timeout_s); the pool keeps trying in the background.
                reconnect_timeout=max(60.0, 6 * connect_timeout_s),
            ))
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self._pool.close(timeout=1.0)
            self._watchdog.stop()
            if isinstance(exc, psycopg_pool.PoolTimeout):
                # "pool initialization incomplete after 10.0 sec" says nothing of why: one
                # plain connection attempt brings the server's (or the network's) reason.
                reason = _connect_error(url, connect_s)
                if reason is not None:
                    raise self._convert(reason, "connect") from exc
            raise self._convert(exc, "connect") from exc

    def _convert(self, exc: BaseException, what: str) -> StoreError:
        detail = " ".join(str(exc).split()) or type(exc).__name__  # one line: libpq adds hints
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            detail = f"no answer within {self.statement_timeout_s:g} s ({detail})"
        message = f"PostgreSQL {self.url}: {what} failed: {detail}"
        if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
            return StoreUnavailable(message)
        return StoreError(message)

    @contextmanager
    def connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection (autocommit; use ``conn.transaction()`` for several
        statements). Driver errors come out as StoreError / StoreUnavailable."""
        if self._closed:
            raise StoreError(f"PostgreSQL {self.url}: {what} failed: the connection is closed")
        try:
            with self._pool.connection() as conn, \
                    self._watchdog.watch(conn, self._busy_limit_s):
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._convert(exc, what) from exc

    def fetch(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection(what) as conn:
            return conn.execute(sql, _clean(list(params))).fetchall()  # type: ignore[arg-type]

    def run(self, what: str, sql: str, params: Sequence[Any] = ()) -> None:
        with self.connection(what) as conn:
            conn.execute(sql, _clean(list(params)))  # type: ignore[arg-type]

    def run_many(self, what: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows, in one transaction."""
        if not rows:
            return
        with self.connection(what) as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, [_clean(list(r)) for r in rows])  # type: ignore[arg-type]

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Bring ``component``'s tables to ``len(migrations)``; returns the version found."""
        with self.connection(f"{component} schema migration") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                         "component text PRIMARY KEY, version integer NOT NULL, "
                         "updated timestamptz NOT NULL DEFAULT now())")
            row = conn.execute("SELECT version FROM schema_version WHERE component = %s",
                               [component]).fetchone()
            found = int(row[0]) if row else 0
            if found > len(migrations):
                raise StoreError(
                    f"PostgreSQL {self.url}: the {component} schema is version {found}, newer "
                    f"than this PixRAG knows ({len(migrations)}): upgrade PixRAG on this host")
            for version in range(found + 1, len(migrations) + 1):
                log.info("migrating the %s schema to version %d", component, version)
                conn.execute(migrations[version - 1])  # type: ignore[arg-type]
            if found < len(migrations):
                conn.execute(
                    "INSERT INTO schema_version (component, version) VALUES (%s, %s) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                    "updated = now()", [component, len(migrations)])
        return found

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close(timeout=5.0)
        self._watchdog.stop()


def open_migrated(url: str | PgDatabase, component: str, migrations: Sequence[str], *,
                  statement_timeout_s: float, connect_timeout_s: float,
                  pool_size: int) -> tuple[PgDatabase, bool]:
    """``(database, owned)``: a shared database as given (its owner closes it), or a new pool
    for ``url`` (owned); either way with ``component``'s schema migrated."""
    if isinstance(url, PgDatabase):
        db, owned = url, False
    else:
        db = PgDatabase(url, statement_timeout_s=statement_timeout_s,
                        connect_timeout_s=connect_timeout_s, pool_size=pool_size)
        owned = True
    try:
        db.migrate(component, migrations)
    except BaseException:
        if owned:
            db.close()
        raise
    return db, owned
