"""PostgreSQL catalog and keyword index on a real server: several hosts at once, schema
migrations, a dead or slow server, and ranking agreement with SQLite FTS5."""

from __future__ import annotations

import contextlib
import random
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.errors import ConfigError, StoreError, StoreUnavailable
from core.library import pg_catalog, pg_keyword
from core.library.catalog import ItemRow
from core.library.keyword import KeywordDoc, KeywordIndex
from core.library.pg_catalog import MIGRATIONS as CATALOG_MIGRATIONS
from core.library.pg_catalog import PgCatalog
from core.library.pg_database import redact
from core.library.pg_keyword import PgKeywordIndex, normalise, query_words
from core.types import PUBLIC
from tests.server.conftest import free_port, start_postgres, stop_postgres


def _row(i: int, host: str) -> ItemRow:
    return ItemRow(id=f"s:{i:04d}", space="s", kind="image", source=f"/{host}/img{i}.png",
                   name=f"img{i}.png", page=None, file_sha=f"{i:064x}", image_sha=f"{i:064x}",
                   created=float(i))


def _run_threads(targets: list[Any]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(fn: Any) -> None:
        try:
            barrier.wait(timeout=30)
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_two_hosts_writing_the_same_items_make_no_duplicates(pg_url: str) -> None:
    hosts = [PgCatalog(pg_url), PgCatalog(pg_url)]
    keywords = [PgKeywordIndex(pg_url), PgKeywordIndex(pg_url)]
    n = 300

    def host(k: int) -> Any:
        def work() -> None:
            order = list(range(n)) if k == 0 else list(reversed(range(n)))
            for _ in range(3):
                # Whole batches in opposite orders: a deadlock unless rows are locked in one
                # order, and a duplicate unless the upsert is keyed right.
                hosts[k].add([_row(i, f"host{k}") for i in order])
                keywords[k].add([KeywordDoc(f"s:{i:04d}#0", f"s:{i:04d}", "s", PUBLIC,
                                            f"passage {i} from host {k}") for i in order])
                for start in range(0, n, 50):
                    hosts[k].add([_row(i, f"host{k}") for i in order[start:start + 50]])
        return work

    try:
        assert _run_threads([host(0), host(1)]) == []
        assert hosts[0].counts("s") == {"image": n}
        assert len(hosts[1].all("s")) == n and hosts[0].spaces() == {"s": n}
        assert keywords[0].count("s") == n
        assert {r.source.split("/")[1] for r in hosts[0].all("s")} <= {"host0", "host1"}
    finally:
        for c in (*hosts, *keywords):
            c.close()


def test_one_store_shared_by_many_threads(pg_url: str) -> None:
    cat = PgCatalog(pg_url, pool_size=3)

    def worker(k: int) -> Any:
        def work() -> None:
            for i in range(40):
                cat.add([_row(k * 1000 + i, "h")])
                assert f"s:{k * 1000 + i:04d}" in cat.get("s", [f"s:{k * 1000 + i:04d}"])
                cat.set_pref("s", f"k{k}", str(i))
        return work

    try:
        assert _run_threads([worker(k) for k in range(8)]) == []
        assert cat.counts("s") == {"image": 320}
        assert cat.prefs_like("s", "k") == {f"k{k}": "39" for k in range(8)}
    finally:
        cat.close()


def _versions(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT component, version FROM schema_version").fetchall())


def test_hosts_starting_at_once_migrate_once(pg_url: str) -> None:
    opened: list[Any] = []
    lock = threading.Lock()

    def start() -> None:
        stores = [PgCatalog(pg_url), PgKeywordIndex(pg_url)]
        with lock:
            opened.extend(stores)

    try:
        assert _run_threads([start] * 4) == []
        assert _versions(pg_url) == {"catalog": len(pg_catalog.MIGRATIONS),
                                     "keyword": len(pg_keyword.MIGRATIONS)}
    finally:
        for s in opened:
            s.close()


def test_migration_is_idempotent_and_keeps_data(pg_url: str) -> None:
    cat, kw = PgCatalog(pg_url), PgKeywordIndex(pg_url)
    cat.add([_row(1, "h")])
    kw.add([KeywordDoc("a#0", "a", "s", PUBLIC, "kept across restarts")])
    cat.close()
    kw.close()
    cat, kw = PgCatalog(pg_url), PgKeywordIndex(pg_url)
    try:
        assert cat.existing("s", ["s:0001"]) == {"s:0001"}
        assert kw.search("s", "restarts", 5)[0][0] == "a"
        assert _versions(pg_url) == {"catalog": len(CATALOG_MIGRATIONS), "keyword": 1}
    finally:
        cat.close()
        kw.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    PgCatalog(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'catalog'")
    with pytest.raises(StoreError, match="newer than this PixRAG") as info:
        PgCatalog(pg_url)
    assert not isinstance(info.value, StoreUnavailable)


def test_refused_connection_is_unavailable_and_hides_the_password() -> None:
    url = f"postgresql://pixrag:s3cr3t-pw@127.0.0.1:{free_port()}/pixrag"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        PgCatalog(url, connect_timeout_s=2)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "s3cr3t-pw" not in message and "127.0.0.1" in message
    # Why, on one line: not only "pool initialization incomplete after 2.0 sec".
    assert "Connection refused" in message and "\n" not in message, message
    assert redact(url) == "postgresql://pixrag@127.0.0.1:" + url.rsplit(":", 1)[1]
    with pytest.raises(StoreUnavailable):
        PgKeywordIndex(url, connect_timeout_s=2)


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="catalog.url") as info:
        PgCatalog("postgresql://u:pw@host:notaport/db?bogus_option=1")
    assert "pw" not in str(info.value)


def test_a_statement_that_waits_too_long_is_cancelled(pg_url: str) -> None:
    cat = PgCatalog(pg_url, statement_timeout_s=0.5)
    cat.add([_row(1, "h")])
    blocker = psycopg.connect(pg_url)
    try:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # held: no autocommit
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="no answer within 0.5 s"):
            cat.get("s", ["s:0001"])
        assert time.monotonic() - started < 5
        blocker.rollback()
        assert "s:0001" in cat.get("s", ["s:0001"])  # the pool recovered
    finally:
        blocker.close()
        cat.close()


@pytest.mark.slow
def test_a_stopped_server_fails_fast_and_a_restarted_one_is_used_again() -> None:
    folder = Path(tempfile.mkdtemp(prefix="pixrag-pg-dead-"))
    server = start_postgres(folder / "data")
    url = str(server.get_uri("postgres"))
    cat = kw = None
    try:
        cat = PgCatalog(url, connect_timeout_s=2)
        kw = PgKeywordIndex(url, connect_timeout_s=2)
        cat.add([_row(1, "h")])
        kw.add([KeywordDoc("a#0", "a", "s", PUBLIC, "survives a restart")])
        stop_postgres(server)
        for call in (lambda: cat.get("s", ["s:0001"]), lambda: kw.search("s", "restart", 5),
                     lambda: cat.add([_row(2, "h")])):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="PostgreSQL"):
                call()
            assert time.monotonic() - started < 10
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            PgCatalog(url, connect_timeout_s=2)
        assert time.monotonic() - started < 10
        server = start_postgres(folder / "data")
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background, with back-off
            try:
                assert "s:0001" in cat.get("s", ["s:0001"])
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert kw.search("s", "restart", 5)[0][0] == "a"
    finally:
        for s in (cat, kw):
            if s is not None:
                s.close()
        stop_postgres(server)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


class FreezableProxy:
    """A TCP front for the real server that can stop passing bytes while keeping every
    connection open: from the client's side, a server that was stopped (SIGSTOP) or stalls,
    whose kernel still acknowledges packets."""

    def __init__(self, unix_path: str) -> None:
        self.frozen = threading.Event()
        self._target = unix_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self._target)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)  # hold the bytes, answer nothing, close nothing
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.frozen.clear()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_frozen_server_is_an_error_not_a_hang(pg_url: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    proxy = FreezableProxy(f"{info['host']}/.s.PGSQL.{info.get('port') or 5432}")
    url = (f"postgresql://{info.get('user') or 'postgres'}@127.0.0.1:{proxy.port}/"
           f"{info['dbname']}")
    cat = PgCatalog(url, statement_timeout_s=1, connect_timeout_s=2)
    try:
        cat.add([_row(1, "h")])
        proxy.frozen.set()
        for call in (lambda: cat.get("s", ["s:0001"]), lambda: cat.add([_row(2, "h")])):
            outcome: list[BaseException | None] = []

            def run(call: Any = call, outcome: list[BaseException | None] = outcome) -> None:
                try:
                    call()
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            worker = threading.Thread(target=run, daemon=True)
            started = time.monotonic()
            worker.start()
            worker.join(timeout=30)
            assert not worker.is_alive(), "a frozen server made the call wait forever"
            assert time.monotonic() - started < 15
            assert isinstance(outcome[0], StoreUnavailable), outcome
            assert "PostgreSQL" in str(outcome[0])
        proxy.frozen.clear()
        deadline = time.monotonic() + 30
        while True:  # the pool replaces the connections it cut off
            try:
                cat.add([_row(3, "h")])
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert set(cat.get("s", ["s:0001", "s:0002", "s:0003"])) == {"s:0001", "s:0003"}
    finally:
        proxy.close()
        cat.close()


def test_closed_store_raises_store_error(pg_url: str) -> None:
    cat = PgCatalog(pg_url)
    cat.close()
    with pytest.raises(StoreError, match="closed"):
        cat.get("s", ["x"])
    cat.close()  # twice is fine


def test_normalise_and_query_words() -> None:
    assert normalise("Updated RÉSUMÉ: naïve INV-20931 ERR_CONNECTION_REFUSED ﬁle") == (
        "Updated RESUME naive INV 20931 ERR CONNECTION REFUSED file")
    assert query_words('the "INV-20931" invoice a"b') == ["INV-20931", "invoice", 'a"b']
    assert query_words("🙂 ++") == []


CORPUS = [
    "Team lunch is on Friday at noon in the big meeting room.",
    "The quarterly report shows revenue growth in all regions.",
    "Please remember to submit your timesheet before the weekend.",
    "Our office will be closed for the public holiday next week.",
    "The new coffee machine on the third floor is working again.",
    "Slides for the product launch are in the shared drive.",
    "Invoice INV-20931 for consulting services, due March 7.",
    "Invoice INV-55555: order 20931 shipped; the invoice total is 120 EUR.",
    "psql: FATAL: password authentication failed for user app",
    "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)",
    "Error: listen EADDRINUSE: address already in use :::3000",
    "docker: Error response from daemon: port is already allocated.",
    "Quarterly revenue by region: EMEA grew fastest, revenue revenue revenue.",
    "Meeting notes: the launch meeting moved to the big room on Friday.",
]
QUERIES = ["quarterly revenue", "invoice INV-20931", "20931", "password authentication failed",
           "port already in use", "meeting room friday", "launch", "access denied root",
           "revenue", "the big meeting", "EADDRINUSE 3000", "timesheet weekend holiday"]


def test_rankings_agree_with_sqlite_fts5(pg_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    docs = [KeywordDoc(f"d{i}#0", f"d{i}", "s", PUBLIC, t) for i, t in enumerate(CORPUS)]
    rng.shuffle(docs)
    lite, pg = KeywordIndex(tmp_path / "kw.db"), PgKeywordIndex(pg_url)
    try:
        lite.add(docs)
        pg.add(docs)
        for q in QUERIES:
            a, b = lite.search("s", q, 5), pg.search("s", q, 5)
            assert [i for i, _ in a] == [i for i, _ in b], q
            # Same formula, same statistics: scores agree closely too.
            for (_, sa), (_, sb) in zip(a, b, strict=True):
                assert sb == pytest.approx(sa, rel=0.05, abs=1e-5), q
    finally:
        lite.close()
        pg.close()


def test_many_matches_are_capped_and_still_filtered(pg_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_keyword, "MAX_CANDIDATES", 3)
    kw = PgKeywordIndex(pg_url)
    try:
        kw.add([KeywordDoc(f"p{i}#0", f"p{i}", "s", PUBLIC, f"status report number {i}")
                for i in range(10)])
        kw.add([KeywordDoc("c#0", "c", "s", "chan-1", "status report status report"),
                KeywordDoc("x#0", "x", "t", PUBLIC, "status report")])
        hits = kw.search("s", "status report", 10)
        assert len(hits) == 3 and hits[0][0] == "c"  # the densest match survives the cap
        public = kw.search("s", "status report", 10, [PUBLIC])
        assert len(public) == 3 and {i for i, _ in public} <= {f"p{i}" for i in range(10)}
        # Statistics still cover the whole space: the same scores as without the cap.
        monkeypatch.setattr(pg_keyword, "MAX_CANDIDATES", 10_000)
        full = dict(kw.search("s", "status report", 20, [PUBLIC]))
        assert all(full[i] == pytest.approx(s) for i, s in public)
    finally:
        kw.close()


_WRITER = """
import sys
from core.library.catalog import ItemRow
from core.library.keyword import KeywordDoc
from core.library.pg_catalog import PgCatalog
from core.library.pg_keyword import PgKeywordIndex
url, host = sys.argv[1], sys.argv[2]
order = list(range(200)) if host == "a" else list(reversed(range(200)))
cat, kw = PgCatalog(url), PgKeywordIndex(url)
for _ in range(3):
    kw.add([KeywordDoc(f"s:{i:04d}#0", f"s:{i:04d}", "s", "*", f"passage {i}") for i in order])
    cat.add([ItemRow(id=f"s:{i:04d}", space="s", kind="image", source=f"/{host}/{i}.png",
                     name=f"{i}.png", page=None, file_sha=f"{i:064x}", image_sha=None,
                     created=float(i)) for i in order])
cat.close()
kw.close()
"""


def test_two_processes_writing_at_once(pg_url: str) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, host], cwd=root,
                              stderr=subprocess.PIPE, text=True) for host in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    cat = PgCatalog(pg_url)
    kw = PgKeywordIndex(pg_url)
    try:
        assert cat.counts("s") == {"image": 200} and kw.count("s") == 200
        assert [r.id for r in cat.all("s")] == [f"s:{i:04d}" for i in range(200)]
    finally:
        cat.close()
        kw.close()


def test_forgotten_items_are_recorded_until_their_removal_is_finished(pg_url: str) -> None:
    # The same record as the SQLite catalog: `pixrag check --repair` drops what a forget
    # interrupted midway left, instead of rebuilding rows from it.
    cat = PgCatalog(pg_url)
    try:
        cat.add([_row(1, "h"), _row(2, "h")])
        cat.delete("s", ["s:0001", "s:0099"])
        assert cat.forgotten().get("s:0001") == "s" and "s:0099" not in cat.forgotten()
        assert cat.forgotten_shas(["s:0001"]) == {f"{1:064x}"}  # what a re-run removes
        cat.add([_row(1, "h")])  # indexed again: live, not forgotten
        assert "s:0001" not in cat.forgotten()
        cat.delete("s", ["s:0002"])
        cat.clear_forgotten(["s:0002"])
        assert "s:0002" not in cat.forgotten()
    finally:
        cat.close()


def test_leases_of_stopped_workers_are_reclaimed(pg_url: str) -> None:
    cat = PgCatalog(pg_url)
    try:
        cat.add([_row(7, "h")], enrich=["s:0007"])
        assert [r.id for r in cat.claim_enrich(8, 60.0, 3)] == ["s:0007"]
        assert cat.claim_enrich(8, 60.0, 3) == []  # leased
        assert cat.reclaim_leases() >= 1
        assert [r.id for r in cat.claim_enrich(8, 60.0, 3)] == ["s:0007"]
    finally:
        cat.delete("s", ["s:0007"])
        cat.close()


def test_leases_follow_the_servers_clock_not_the_hosts(pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two hosts whose clocks disagree by two minutes (no NTP in a container, a VM resumed):
    # the one ahead must not take the other's fresh lease as expired, steal the batch and
    # charge it an attempt (three of those and an item counts as failed for good).
    behind, ahead = PgCatalog(pg_url), PgCatalog(pg_url)
    try:
        behind.add([_row(8, "h")], enrich=["s:0008"])
        assert [r.id for r in behind.claim_enrich(8, 60.0, 3)] == ["s:0008"]
        real = time.time
        monkeypatch.setattr(pg_catalog.time, "time", lambda: real() + 120)
        assert ahead.claim_enrich(8, 60.0, 3) == []
        ahead.renew_enrich(["s:0008"], 60.0)  # a lease renewed by the host ahead
        monkeypatch.setattr(pg_catalog.time, "time", real)
        assert behind.claim_enrich(8, 60.0, 3) == []  # ... is not three minutes long
        behind.release_enrich(["s:0008"])
        assert [r.id for r in ahead.claim_enrich(8, 60.0, 3)] == ["s:0008"]
    finally:
        behind.delete("s", ["s:0008"])
        behind.close()
        ahead.close()
