"""A model thread shared fairly: queries first, indexing after.

A model forward pass uses every core, so each model has one thread. With a plain
``ThreadPoolExecutor`` a search's batch waits behind every index batch already queued; here
each submitter gets a *lane* with a priority, and the thread always runs the most urgent
waiting job (first come, first served within a lane).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

QUERY = 0
INDEX = 1


class PriorityExecutor:
    def __init__(self, name: str) -> None:
        self._jobs: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = \
            queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self._closed = False

    def lane(self, priority: int) -> Executor:
        return _Lane(self, priority)

    def _submit(self, priority: int, fn: Callable[..., Any], *args: Any,
                **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()

        def job() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to the caller
                fut.set_exception(exc)

        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            if not self._started:
                self._thread.start()
                self._started = True
            self._jobs.put((priority, next(self._order), job))
        return fut

    def _work(self) -> None:
        while True:
            _, _, job = self._jobs.get()
            if job is None:
                return
            job()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if not started:
            return
        # After every queued job (priority below any lane): the thread ends when idle.
        self._jobs.put((1 << 30, next(self._order), None))
        if wait:
            self._thread.join()


class _Lane(Executor):
    def __init__(self, owner: PriorityExecutor, priority: int) -> None:
        self._owner = owner
        self._priority = priority

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._owner._submit(self._priority, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None  # the owner shuts the thread down
