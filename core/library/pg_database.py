"""One PostgreSQL database shared by the server-mode catalog and keyword index.

:class:`PgDatabase` owns a small psycopg connection pool (the stores are called from executor
threads: each call borrows its own connection, so reads never queue behind a write on one
socket), converts every driver error into :class:`~core.errors.StoreError` /
:class:`~core.errors.StoreUnavailable` with the password scrubbed out, and bounds every wait:

- ``connect_timeout_s``: a new connection, and the wait for a free pooled one;
- ``statement_timeout_s``: every statement, enforced by the server (``statement_timeout``);
- TCP keepalives and ``tcp_user_timeout``: a host that vanished mid-query is noticed in about
  ``connect_timeout_s`` instead of the kernel's default of many minutes. A server process that
  is frozen but whose kernel still acknowledges packets cannot be told apart from a slow one:
  such a call waits until the server answers.

Pooled connections are checked before use (one round trip), so after a server restart the
first call reconnects instead of failing on a dead socket.

Schema: each component (``catalog``, ``keyword``) keeps an ordered list of migrations and its
version in the ``schema_version`` table. :meth:`PgDatabase.migrate` applies the missing ones
in one transaction under a transaction-level advisory lock, so several hosts starting at once
migrate exactly once and the others wait, then see the new version.
"""

from __future__ import annotations

import logging
import threading
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

        def configure(conn: psycopg.Connection[Any]) -> None:
            # set_config, not SET: SET cannot take a bound parameter.
            conn.execute("SELECT set_config('statement_timeout', %s, false)", [str(timeout_ms)])

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
                check=psycopg_pool.ConnectionPool.check_connection,
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
            raise self._convert(exc, "connect") from exc

    def _convert(self, exc: BaseException, what: str) -> StoreError:
        detail = str(exc).strip() or type(exc).__name__
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
            with self._pool.connection() as conn:
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
