"""Micro-batching: many concurrent single requests, one forward pass.

Requests queue in a bounded :class:`asyncio.Queue` (a flood of uploads waits instead of growing
memory); a worker takes up to ``max_batch`` of them, waiting at most ``max_wait_s`` after the
first for more, runs ``fn`` once in the given executor and hands each caller its row.
When ``fn`` raises for a batch, the items are run again one by one so that only the caller
whose item is bad gets the exception (except for failures shared by every item).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from core.errors import DiskFull, ModelError, StoreUnavailable

# Failures of the machine, not of an item: every item would fail the same way again (and a
# store that does not answer would be waited for once per item), so all callers get them.
SHARED_FAILURES = (StoreUnavailable, DiskFull, ModelError)

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        executor: Executor,
        max_batch: int = 32,
        max_wait_s: float = 0.01,
        max_pending: int = 256,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.name = name
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue(max_pending)
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes run (for tests and benchmarks)

    async def submit(self, item: T) -> R:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    if timeout <= 0:
                        batch.append(self._queue.get_nowait())
                        continue
                    # Not wait_for: on Python 3.11 it can drop a cancellation (aclose) that
                    # arrives as an item does, and the worker would then wait forever.
                    async with asyncio.timeout(timeout):
                        batch.append(await self._queue.get())
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(
                    self._executor, self._fn, [item for item, _ in live])
                self.batches += 1
            except Exception as exc:  # noqa: BLE001 - delivered to its own caller below
                if len(live) == 1 or isinstance(exc, SHARED_FAILURES):
                    for _, fut in live:
                        _deliver_error(fut, exc)
                else:
                    # One bad item (text the tokenizer rejects, a broken image) must not fail
                    # everyone batched with it: run them one by one, each caller gets its own.
                    log.warning("%s: a batch of %d failed (%s: %s); retrying one by one",
                                self.name, len(live), type(exc).__name__, exc)
                    await self._one_by_one(live)
                continue
            for (_, fut), res in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def _one_by_one(self, live: list[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        for item, fut in live:
            if fut.done():  # its caller went away meanwhile
                continue
            try:
                (res,) = await loop.run_in_executor(self._executor, self._fn, [item])
                self.batches += 1
            except Exception as exc:  # noqa: BLE001 - this item's own failure, to its caller
                _deliver_error(fut, exc)
                continue
            if not fut.done():
                fut.set_result(res)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


def _deliver_error(fut: asyncio.Future[R], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
