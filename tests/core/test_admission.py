"""The process-wide upload budget: bounded, fair (FIFO), clamps oversize, survives cancels."""

from __future__ import annotations

import asyncio

import pytest

from core.admission import Admission


async def test_files_and_bytes_are_both_bounded() -> None:
    adm = Admission(max_files=3, max_bytes=100)
    a = await adm.acquire(2, 40)
    b = await adm.acquire(1, 40)
    assert (adm.files_in_flight, adm.bytes_in_flight) == (3, 80)
    waiting = asyncio.create_task(adm.acquire(1, 10))  # out of files
    await asyncio.sleep(0)
    assert not waiting.done() and adm.waiting == 1
    a.release()
    c = await asyncio.wait_for(waiting, 1)
    assert (adm.files_in_flight, adm.bytes_in_flight) == (2, 50)
    big = asyncio.create_task(adm.acquire(1, 60))  # files fit, bytes do not
    await asyncio.sleep(0)
    assert not big.done()
    b.release()
    d = await asyncio.wait_for(big, 1)
    for t in (c, d):
        t.release()
    assert (adm.files_in_flight, adm.bytes_in_flight, adm.waiting) == (0, 0, 0)


async def test_release_is_idempotent() -> None:
    adm = Admission(2, 10)
    t = await adm.acquire(1, 5)
    t.release()
    t.release()
    assert (adm.files_in_flight, adm.bytes_in_flight) == (0, 0)


async def test_fifo_a_large_request_is_not_starved_by_small_ones() -> None:
    adm = Admission(max_files=10, max_bytes=100)
    held = await adm.acquire(1, 60)
    order: list[str] = []

    async def take(name: str, nbytes: int) -> None:
        async with adm.admit(1, nbytes):
            order.append(name)
            await asyncio.sleep(0.01)

    big = asyncio.create_task(take("big", 80))
    await asyncio.sleep(0)
    # These would fit right now, but the big one came first: they queue behind it.
    small = [asyncio.create_task(take(f"s{i}", 10)) for i in range(3)]
    await asyncio.sleep(0.02)
    assert order == []
    held.release()
    await asyncio.wait_for(asyncio.gather(big, *small), 2)
    assert order[0] == "big"


async def test_oversize_request_is_clamped_and_runs_alone() -> None:
    adm = Admission(max_files=2, max_bytes=100)
    async with adm.admit(5, 10_000) as ticket:
        assert (ticket.files, ticket.nbytes) == (2, 100)
        other = asyncio.create_task(adm.acquire(1, 1))
        await asyncio.sleep(0)
        assert not other.done()
    (await asyncio.wait_for(other, 1)).release()
    assert adm.files_in_flight == 0


async def test_cancelled_waiter_leaves_no_trace_and_unblocks_the_queue() -> None:
    adm = Admission(max_files=1, max_bytes=100)
    held = await adm.acquire(1, 10)
    first = asyncio.create_task(adm.acquire(1, 10))
    second = asyncio.create_task(adm.acquire(1, 10))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert adm.waiting == 1
    held.release()
    (await asyncio.wait_for(second, 1)).release()
    assert (adm.files_in_flight, adm.bytes_in_flight, adm.waiting) == (0, 0, 0)


async def test_cancel_right_after_grant_hands_the_budget_on() -> None:
    adm = Admission(max_files=1, max_bytes=100)
    held = await adm.acquire(1, 10)
    granted = asyncio.create_task(adm.acquire(1, 10))
    await asyncio.sleep(0)
    held.release()  # grants `granted`'s future ...
    granted.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await granted
    assert (adm.files_in_flight, adm.bytes_in_flight) == (0, 0)
    (await asyncio.wait_for(adm.acquire(1, 10), 1)).release()


async def test_urgent_requests_go_ahead_of_queued_uploads_fifo_among_themselves() -> None:
    adm = Admission(max_files=1, max_bytes=100)
    held = await adm.acquire(1, 10)
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        ticket = await adm.acquire(1, 10, urgent=urgent)
        order.append(name)
        ticket.release()

    tasks = []
    for name, urgent in (("up1", False), ("up2", False), ("q1", True), ("up3", False),
                         ("q2", True)):
        tasks.append(asyncio.create_task(take(name, urgent)))
        await asyncio.sleep(0)
    assert adm.waiting == 5
    held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert order == ["q1", "q2", "up1", "up2", "up3"]
    # With room for it and only an upload queued (waiting for more bytes), a question is
    # let in at once.
    adm = Admission(max_files=2, max_bytes=100)
    held = await adm.acquire(1, 10)
    upload = asyncio.create_task(adm.acquire(1, 95))
    await asyncio.sleep(0)
    question = await asyncio.wait_for(adm.acquire(1, 10, urgent=True), 1)
    assert not upload.done()
    held.release()
    question.release()
    (await asyncio.wait_for(upload, 1)).release()


def test_budget_must_allow_something() -> None:
    with pytest.raises(ValueError):
        Admission(0, 10)
