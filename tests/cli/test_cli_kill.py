"""kill -9 in the middle of `pixrag index`, then run it again: each image exactly once."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.types import Scope
from tests.cli.helpers import cli_env, json_out, make_settings, pixrag_cmd, run_cli, write_images

N = 40


def _count(db: Path, sql: str, params: tuple[object, ...] = ()) -> int:
    """One count from the catalog, read-only, while another process writes it."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=1)) as con:
            return int(con.execute(sql, params).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet / locked for a moment
        return 0


def _catalog_count(db: Path) -> int:
    return _count(db, "SELECT COUNT(*) FROM items")


def _leased(db: Path) -> int:
    """Queue entries some worker holds right now."""
    return _count(db, "SELECT COUNT(*) FROM enrich WHERE lease > ?", (time.time(),))


@pytest.mark.slow
async def test_kill_9_mid_index_then_rerun(tmp_path: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "photos"
    # Bigger JPEGs and one file in flight at a time: the run lasts long enough to be killed
    # between commits.
    images = write_images(folder, N, size=(640, 480), fmt="JPEG")
    data = tmp_path / "data"
    env = cli_env(data, tiny_clip, PIXRAG_EMBEDDING__QUEUE_SIZE="1",
                  PIXRAG_EMBEDDING__MAX_WAIT_MS="0")
    proc = subprocess.Popen([*pixrag_cmd(), "index", str(folder), "--json"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _catalog_count(data / "catalog.sqlite")
            if seen >= 3:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"index finished before the kill: {err[-2000:]!r}"
    committed = _catalog_count(data / "catalog.sqlite")
    assert 0 < committed < N, committed

    rerun = run_cli(["index", str(folder), "--json"], env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr and "ERROR" not in rerun.stderr
    report = json_out(rerun)
    assert report["failed"] == []
    assert all(s["reason"] == "already indexed" for s in report["skipped"])
    done = {s["source"] for s in report["skipped"]} | {i["source"] for i in report["indexed"]}
    assert done == {str(p.resolve()) for p in images}
    assert len(report["skipped"]) + len(report["indexed"]) == N

    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        rows = svc.library.catalog.all("local")
        assert len(rows) == N and len({r.source for r in rows}) == N
        assert (await svc.library.vectors()).count("clip") == N  # no duplicate or orphan vectors
        assert (await svc.stats("local")).items == N
        for p in (images[0], images[N // 2], images[-1]):
            hits = await svc.similar(p.read_bytes(), Scope("local"), k=3)
            assert hits[0].source == str(p.resolve())
            assert Path(hits[0].thumbnail or "").is_file()
        assert await svc.search("a photo", Scope("local")) is not None
        again = await svc.index_paths([folder], "local")
        assert again.indexed == [] and len(again.skipped) == N


@pytest.mark.slow
async def test_sigterm_mid_text_phase_stops_cleanly_and_the_rerun_finishes(
        tmp_path: Path, tiny_clip: Path) -> None:
    # `docker stop`, systemd and `timeout` send SIGTERM: the run stops as with Ctrl-C (exit
    # 143), the text batch in hand is given back, and the next run finishes the text.
    from tests.corpus import text_image

    folder = tmp_path / "slides"
    folder.mkdir()
    for i in range(24):
        text_image(f"Quarterly review {i}\nRevenue grew {i} percent",
                   size=(1280, 720)).save(folder / f"s{i:02d}.png")
    data = tmp_path / "data"
    env = cli_env(data, tiny_clip, PIXRAG_INDEX__OCR="true")
    proc = subprocess.Popen([*pixrag_cmd(), "index", str(folder)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _leased(data / "catalog.sqlite"):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 143, f"not stopped mid-run by SIGTERM: {err[-2000:]!r}"
    assert "stopped (SIGTERM)" in err and "Traceback" not in err
    assert _leased(data / "catalog.sqlite") == 0  # given back, not held until the lease ends
    async with open_service(make_settings(data, tiny_clip, PIXRAG_INDEX__OCR="true"),
                            Secrets({})) as svc:
        assert await svc.library.pending() > 0
    rerun = run_cli(["index", str(folder / "s00.png"), "--json"], env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    async with open_service(make_settings(data, tiny_clip, PIXRAG_INDEX__OCR="true"),
                            Secrets({})) as svc:
        assert await svc.library.pending() == 0
        hits = await svc.search("Quarterly review 23", Scope("local"))
        assert hits and hits[0].source == str((folder / "s23.png").resolve())
