"""Several processes on one embedded data folder: opening it at the same moment, and the
embedded vector store, which only one process may have open."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.library.catalog import Catalog
from core.library.keyword import KeywordIndex


def _held_by_another_opener(path: Path, seconds: float) -> threading.Timer:
    """A new database file whose lock another connection holds for ``seconds``, as when a
    second ``pixrag`` process creates the same new file at the same moment."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE IF NOT EXISTS other_process (x)")

    def done() -> None:
        other.execute("COMMIT")
        other.close()

    timer = threading.Timer(seconds, done)
    timer.start()
    return timer


@pytest.mark.parametrize(("name", "open_part"), [
    ("catalog.sqlite", lambda p: Catalog(p, timeout_s=10)),
    ("keyword.sqlite", lambda p: KeywordIndex(p, busy_timeout_s=10)),
], ids=["catalog", "keyword"])
def test_a_new_file_being_set_up_by_another_process_is_waited_for(
        tmp_path: Path, name: str, open_part: Callable[[Path], Catalog | KeywordIndex]) -> None:
    # Switching a file to WAL mode does not wait for a busy lock (SQLite fails at once with
    # "database is locked"): two commands started together on a new data folder made one
    # of them fail before doing anything.
    timer = _held_by_another_opener(tmp_path / name, 0.3)
    try:
        part = open_part(tmp_path / name)
    finally:
        timer.join()
    part.close()
    with sqlite3.connect(tmp_path / name) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _open_catalog(folder: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        catalog = Catalog(Path(folder) / "catalog.sqlite", timeout_s=10)
        results.put("found empty" if catalog.was_empty_file else "ok")
        catalog.close()
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_the_catalog_together_all_open_it_and_see_no_damage(
        tmp_path: Path) -> None:
    # SQLite creates a file empty and fills it at its first commit: a process opening the
    # folder in that moment took it for a catalog that lost its data ("run pixrag check
    # --repair" on every later run), or failed with "database is locked".
    ctx = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(8):
        folder = tmp_path / str(round_)
        folder.mkdir()
        start, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_catalog, args=(str(folder), start, results))
                 for _ in range(3)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        left = {n for n in os.listdir(folder) if not n.endswith(("-wal", "-shm", ".lock"))}
        assert left == {"catalog.sqlite"}  # nothing half-made left behind
    assert set(outcomes) == {"ok"}, outcomes


def _holding(script: str, path: str) -> subprocess.Popen[str]:
    """Another process running ``script`` on ``path``, once it says it has it open."""
    proc = subprocess.Popen([sys.executable, "-c", script, path],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "open":
        proc.kill()
        pytest.fail(f"the other process did not start: exit {proc.wait(timeout=30)}")
    return proc


_HOLD_STORE = """
import sys, time
from pathlib import Path
from core.library.vectors import VectorStore
store = VectorStore(path=Path(sys.argv[1]))
print("open", flush=True)
time.sleep(120)
"""


async def test_a_second_process_on_an_embedded_vector_store_gets_a_clear_error(
        tmp_path: Path, tiny_clip: Path) -> None:
    # Embedded Chroma keeps its graph in each process's memory and writes it back whole: two
    # processes writing one folder lost each other's vectors ("Error finding id"). The second
    # one is now refused, naming the first (a bot at its start); a killed holder leaves no
    # stale lock.
    from core.app import open_service
    from core.config import Secrets
    from core.errors import StoreBusy
    from core.library.vectors import VectorStore
    from tests.cli.helpers import make_settings

    data = tmp_path / "data"
    folder = data / "chroma"
    holder = _holding(_HOLD_STORE, str(folder))
    try:
        with pytest.raises(StoreBusy) as busy:
            VectorStore(path=folder)
        assert f"in use by another PixRAG process (pid {holder.pid}" in str(busy.value)
        assert "[store] url" in str(busy.value)
        async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
            assert (await svc.stats("local")).items == 0  # no vectors needed: works
            with pytest.raises(StoreBusy):
                await svc.start_background()  # a bot stops at start
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    first = VectorStore(path=folder)  # kill -9 released it
    second = VectorStore(path=folder)  # one process shares its own store
    second.close()
    first.close()
    with contextlib.closing(VectorStore(path=folder)):
        pass


async def _queued_screenshot(tmp_path: Path, tiny_clip: Path,
                             text: str) -> tuple[Path, Path, Any]:
    """A data folder holding one screenshot indexed without its text (left in the queue, as a
    run stopped after its first phase leaves it): the folder, the screenshot, the settings."""
    from core.app import open_service
    from core.config import Secrets
    from tests.cli.helpers import make_settings
    from tests.corpus import png_bytes, text_image

    data = tmp_path / "data"
    shot = tmp_path / "shot.png"
    shot.write_bytes(png_bytes(text_image(text)))
    settings = make_settings(data, tiny_clip, PIXRAG_INDEX__OCR="true")
    async with open_service(settings, Secrets({})) as svc:
        svc.enricher.kick = lambda: None  # type: ignore[method-assign]
        await svc.index_paths([shot], "local", wait=False)
    return data, shot, settings


async def test_text_a_killed_run_was_reading_is_taken_over_at_once(
        tmp_path: Path, tiny_clip: Path) -> None:
    # A `pixrag index` killed during its text phase held its batch for the lease's minute:
    # the next run sat at "read the text of 0 of 1 items" that long. With every part
    # embedded, no other process can be at the queue, so its leases are freed at once.
    from core.app import open_service
    from core.config import Secrets

    data, shot, settings = await _queued_screenshot(tmp_path, tiny_clip,
                                                    "Error 0x80070005\nAccess denied")
    with contextlib.closing(sqlite3.connect(data / "catalog.sqlite")) as db, db:
        # as a killed worker leaves it: leased for the next minute, one attempt spent
        db.execute("UPDATE enrich SET lease = ?, attempts = 1", [time.time() + 60])
    async with open_service(settings, Secrets({})) as svc:
        async with asyncio.timeout(30):
            await svc.index_paths([shot], "local")
        assert (await svc.stats("local")).waiting_for_text == 0


_HOLD_CATALOG = """
import sys, time
from pathlib import Path
from core.library.catalog import Catalog
catalog = Catalog(Path(sys.argv[1]) / "catalog.sqlite")
print("open", flush=True)
time.sleep(120)
"""


def test_a_failed_first_run_does_not_delete_a_folder_another_process_is_filling(
        tmp_path: Path) -> None:
    # Two commands started together on a new data folder: the one refused cleaned up "its"
    # new, still empty folder, deleting the index the other one was writing.
    from core.app import remove_if_empty_index

    data = tmp_path / "data"
    other = _holding(_HOLD_CATALOG, str(data))
    try:
        remove_if_empty_index(data)
        assert (data / "catalog.sqlite").is_file()
    finally:
        other.kill()
        other.communicate(timeout=30)
    remove_if_empty_index(data)  # nobody else: an empty new folder is still cleaned up
    assert not data.exists()


async def test_waiting_for_text_while_another_process_has_the_store_is_an_error_not_a_hang(
        tmp_path: Path, tiny_clip: Path) -> None:
    # `pixrag index` of files already indexed, while a bot has the store open and text is
    # still queued: its text phase retried every few seconds for ever.
    from core.app import open_service
    from core.config import Secrets
    from core.errors import StoreBusy

    data, shot, settings = await _queued_screenshot(tmp_path, tiny_clip,
                                                    "Quarterly review\nRevenue grew")
    holder = _holding(_HOLD_STORE, str(data / "chroma"))
    try:
        async with open_service(settings, Secrets({})) as svc:
            with pytest.raises(StoreBusy):
                async with asyncio.timeout(20):
                    await svc.index_paths([shot], "local")
            assert (await svc.stats("local")).waiting_for_text == 1  # still queued
    finally:
        holder.kill()
        holder.communicate(timeout=30)
