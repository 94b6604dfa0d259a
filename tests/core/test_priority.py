"""The model thread runs query batches before queued index batches."""

from __future__ import annotations

import threading
import time

from core.models.priority import INDEX, QUERY, PriorityExecutor


def test_queries_jump_the_queue() -> None:
    ex = PriorityExecutor("test-model")
    gate = threading.Event()
    order: list[str] = []
    first = ex.lane(INDEX).submit(gate.wait, 10)  # the thread is busy with an index batch
    time.sleep(0.05)
    index = [ex.lane(INDEX).submit(order.append, f"index{i}") for i in range(3)]
    query = ex.lane(QUERY).submit(order.append, "query")
    gate.set()
    for f in [first, *index, query]:
        f.result(timeout=10)
    assert order == ["query", "index0", "index1", "index2"]
    ex.shutdown()


def test_errors_reach_the_caller_and_shutdown_drains() -> None:
    ex = PriorityExecutor("test-model")
    fut = ex.lane(QUERY).submit(lambda: 1 / 0)
    try:
        fut.result(timeout=10)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("expected the error")
    later = ex.lane(INDEX).submit(lambda: 42)
    ex.shutdown(wait=True)
    assert later.result(timeout=1) == 42
