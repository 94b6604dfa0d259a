"""Background text work yields to questions: while one runs, and for a moment after."""

from __future__ import annotations

import asyncio

from core.enrich import QueryGate


async def test_waits_for_running_queries_then_a_quiet_moment() -> None:
    gate = QueryGate()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await gate.wait_idle()  # nobody asked anything: no wait
    assert loop.time() - started < 0.05

    released = asyncio.Event()

    async def ask() -> None:
        with gate.query():
            await released.wait()

    task = asyncio.create_task(ask())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(gate.wait_idle())
    await asyncio.sleep(0.2)
    assert not waiter.done()  # a question is running
    released.set()
    await task
    ended = loop.time()
    await waiter
    assert loop.time() - ended >= QueryGate.QUIET_S - 0.02  # and the quiet moment after it


async def test_a_stream_of_questions_cannot_starve_background_work() -> None:
    gate = QueryGate()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def stream() -> None:
        while not stop.is_set():
            with gate.query():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.02)  # the first question is running
    started = loop.time()
    await gate.wait_idle(max_wait_s=0.5)
    assert 0.45 <= loop.time() - started < 1.0
    stop.set()
    await task
