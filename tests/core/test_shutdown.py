"""Closing never waits on background work: a cancellation is never lost on the way.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result and drops a cancellation that
arrives in the same moment (fixed in 3.12). At close, that left the text worker in its 30 s
idle wait, and ``pixrag index`` sat idle for 30 s after its work was done, about one run in
four. These tests build that moment deterministically.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.app import open_service
from core.config import Secrets, Settings

ROOT = Path(__file__).resolve().parents[2]


class _Manual(concurrent.futures.Executor):
    """An executor whose one job finishes when the test says so."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:
        return self.future


async def test_a_store_call_keeps_a_cancellation_that_arrives_with_its_result(
        settings: Settings) -> None:
    async with open_service(settings, Secrets({})) as svc:
        lib = svc.library  # type: ignore[attr-defined]
        pool = _Manual()
        task = asyncio.create_task(lib._call(pool, "reading", lambda: 0))
        await asyncio.sleep(0)  # the call is waiting for its result
        loop = asyncio.get_running_loop()
        pool.future.set_result(42)  # delivered to the loop by a callback, queued first ...
        loop.call_soon(task.cancel)  # ... and the cancellation right behind it
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_close_ends_the_text_worker_even_if_its_cancellation_is_lost(
        settings: Settings) -> None:
    async with open_service(settings, Secrets({})) as svc:
        enricher = svc.enricher  # type: ignore[attr-defined]
        started = asyncio.Event()

        async def step() -> int:
            started.set()
            # What a swallowed cancellation looks like from outside.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)
            return 0  # nothing to do: the worker goes to its idle wait

        enricher.step = step
        enricher.kick()
        await started.wait()
        t = time.monotonic()
        await enricher.aclose()
        assert time.monotonic() - t < 5, "close waited out the worker's idle wait"
        enricher.kick()  # after close: starts nothing
        assert enricher._task is None


def test_no_wait_for_in_the_product() -> None:
    """``asyncio.timeout`` keeps cancellations on every supported Python; ``wait_for`` does not
    on 3.11. Allowed only where the task is already being cancelled (a ``finally`` that
    closes a connection)."""
    offenders = []
    for package in ("core", "bot"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            finals = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                      for stmt in t.finalbody for n in ast.walk(stmt)}
            offenders += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree)
                          if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                          and n.func.attr == "wait_for"
                          and isinstance(n.func.value, ast.Name) and n.func.value.id == "asyncio"
                          and id(n) not in finals]
    assert not offenders, offenders


async def test_text_work_stopped_mid_batch_is_given_back_at_once(
        tmp_path: Path, tiny_clip: Path) -> None:
    # Ctrl-C or --no-wait while the text phase holds a batch: its items are free for the next
    # run at once (not after the lease), and the interrupted attempt does not count.
    from tests.cli.helpers import make_settings, noise_bytes

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.png").write_bytes(noise_bytes(i))
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_INDEX__OCR="true")
    async with open_service(settings, Secrets({})) as svc:
        enricher = svc.enricher  # type: ignore[attr-defined]
        held = asyncio.Event()

        async def one(row: Any) -> Any:
            held.set()
            await asyncio.Event().wait()  # the work of a long batch, never done

        enricher._one = one
        await svc.index_paths([folder], "local", wait=False)
        await asyncio.wait_for(held.wait(), 30)
        catalog = svc.library.catalog  # type: ignore[attr-defined]
        assert catalog.claim_enrich(10, 60.0, 3) == []  # leased to the worker
    async with open_service(settings, Secrets({})) as svc:
        queue = svc.library.catalog.dump("enrich")  # type: ignore[attr-defined]
        assert len(queue) == 3 and {(r["lease"], r["attempts"]) for r in queue} == {(0, 0)}
        again = await svc.index_paths([folder], "local")  # nothing new: finishes the text
        assert again.indexed == [] and await svc.library.pending() == 0  # type: ignore


async def test_a_long_batch_keeps_its_lease(tmp_path: Path, tiny_clip: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch that takes longer than the lease (big pages, slow captions) keeps its items:
    # the worker renews the lease while it works, so no other worker takes them over.
    import core.enrich
    from tests.cli.helpers import make_settings, noise_bytes

    monkeypatch.setattr(core.enrich, "LEASE_S", 0.6)
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_INDEX__OCR="true")
    (tmp_path / "p.png").write_bytes(noise_bytes(1))
    async with open_service(settings, Secrets({})) as svc:
        enricher = svc.enricher  # type: ignore[attr-defined]
        held = asyncio.Event()

        async def one(row: Any) -> Any:
            held.set()
            await asyncio.Event().wait()

        enricher._one = one
        await svc.index_paths([tmp_path / "p.png"], "local", wait=False)
        await asyncio.wait_for(held.wait(), 30)
        await asyncio.sleep(1.5)  # two and a half leases
        assert svc.library.catalog.claim_enrich(10, 60.0, 3) == []  # type: ignore
