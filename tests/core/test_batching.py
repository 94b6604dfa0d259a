"""MicroBatcher: one bad item fails alone, never the requests batched with it."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import StoreUnavailable
from core.models.batching import MicroBatcher


def _upper(items: list[str]) -> list[str]:
    if any("bad" in i for i in items):
        raise ValueError("cannot handle a bad item")
    return [i.upper() for i in items]


@pytest.fixture
async def batcher() -> AsyncIterator[MicroBatcher[str, str]]:
    pool = ThreadPoolExecutor(1)
    b: MicroBatcher[str, str] = MicroBatcher(_upper, executor=pool, max_batch=16,
                                             max_wait_s=0.2, name="test")
    yield b
    await b.aclose()
    pool.shutdown()


async def test_a_failing_batch_falls_back_to_one_by_one(
    batcher: MicroBatcher[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    items = [f"q{i}" for i in range(8)]
    items[3] = "bad one"
    results = await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)
    assert [r for n, r in enumerate(results) if n != 3] == [
        i.upper() for n, i in enumerate(items) if n != 3]
    assert isinstance(results[3], ValueError)
    # One failed pass of 8, then 7 good passes (the bad item's own pass fails, uncounted).
    assert batcher.batches == 7
    assert any("retrying one by one" in r.getMessage() for r in caplog.records)
    # And the batcher keeps working, batched again.
    assert await batcher.submit_many(["x", "y"]) == ["X", "Y"]
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_single_bad_item_gets_its_error(batcher: MicroBatcher[str, str]) -> None:
    with pytest.raises(ValueError, match="bad item"):
        await batcher.submit("bad")
    assert await batcher.submit("ok") == "OK"


async def test_a_caller_that_went_away_is_skipped(
    batcher: MicroBatcher[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bad = asyncio.ensure_future(batcher.submit("bad"))
    gone = asyncio.ensure_future(batcher.submit("gone"))
    good = asyncio.ensure_future(batcher.submit("good"))
    await asyncio.sleep(0.05)
    gone.cancel()
    assert await good == "GOOD"
    with pytest.raises(ValueError):
        await bad
    assert gone.cancelled()
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_store_that_is_down_fails_everyone_at_once() -> None:
    calls: list[int] = []

    def down(items: list[str]) -> list[str]:
        calls.append(len(items))
        raise StoreUnavailable("vector store: no answer within 5 s")

    pool = ThreadPoolExecutor(1)
    b: MicroBatcher[str, str] = MicroBatcher(down, executor=pool, max_wait_s=0.2)
    try:
        results = await asyncio.gather(*(b.submit(f"q{i}") for i in range(5)),
                                       return_exceptions=True)
    finally:
        await b.aclose()
        pool.shutdown()
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert calls == [5]  # not retried item by item
