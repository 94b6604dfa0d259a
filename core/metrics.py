"""Prometheus metrics: request counts and latency per command, index queue depth, items per
space, model and answer-model errors, served on ``/metrics`` when ``[metrics] port`` is set.

The service stays unaware of metrics: :class:`InstrumentedService` wraps the facade the
adapters already call (``search``, ``ask``, ``index_uploads``...), so every adapter is measured
the same way and a process without a metrics port pays nothing. Each :class:`Metrics` has its
own registry (no module-level globals: tests and several services in one process don't mix).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.errors import AnswerError, ConfigError, ModelError, PixragError

log = logging.getLogger(__name__)

#: facade method -> command label (several methods are one command to an operator).
COMMANDS = {
    "search": "search", "similar": "similar", "ask": "ask", "ask_stream": "ask",
    "index_paths": "index", "index_uploads": "index", "forget": "forget",
    "forget_origin": "forget", "stats": "stats", "reindex": "reindex",
}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _Items(Collector):
    """Items per space, read when Prometheus scrapes (no bookkeeping between scrapes)."""

    def __init__(self) -> None:
        self.fetch: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("pixrag_items", "Indexed items per space", labels=["space"])
        if self.fetch is not None:
            try:
                for space, n in sorted(self.fetch().items()):
                    family.add_metric([space], n)
            except Exception:  # a scrape must not fail because the store is slow or down
                log.warning("metrics: could not count items per space", exc_info=True)
        yield family


class Metrics:
    """The registry and the few calls the service wrapper and adapters make."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pixrag_requests", "Requests per command and outcome",
                                ["command", "outcome"], registry=r)
        self.latency = Histogram("pixrag_request_seconds", "Request latency per command",
                                 ["command"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("pixrag_index_queue_depth",
                           "Files accepted for indexing and not finished yet", registry=r)
        self.errors = Counter("pixrag_model_errors",
                              "Errors of the embedding model (model) or answer model (llm)",
                              ["kind"], registry=r)
        for kind in ("model", "llm"):
            self.errors.labels(kind)  # present at 0, so rate() works from the first error
        self._items = _Items()
        r.register(self._items)

    def observe(self, command: str, seconds: float, outcome: str = "ok") -> None:
        self.requests.labels(command, outcome).inc()
        self.latency.labels(command).observe(seconds)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def items_from(self, fetch: Callable[[], Mapping[str, int]]) -> None:
        self._items.fetch = fetch

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104
    """Serve ``/metrics`` from a daemon thread; returns the function that stops it."""
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:  # port taken, address not on this host: the operator's setting
        raise ConfigError("metrics.port (or PIXRAG_METRICS__PORT)",
                          f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, GeneratorExit | asyncio.CancelledError):
        return "cancelled"  # the caller went away: not the service's failure
    return "user_error" if isinstance(exc, PixragError) and not isinstance(
        exc, ModelError) else "error"


class _Queue:
    """This call's share of the queue gauge: files known and not yet finished."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.counted = 0

    def set(self, outstanding: int) -> None:
        self.gauge.inc(outstanding - self.counted)
        self.counted = outstanding

    def close(self) -> None:
        self.set(0)


class InstrumentedService:
    """The service facade, measured. Everything not measured passes straight through."""

    def __init__(self, inner: Any, metrics: Metrics,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._inner = inner
        self._metrics = metrics
        if loop is not None:  # items per space come from the facade, on the service's loop
            metrics.items_from(lambda: asyncio.run_coroutine_threadsafe(
                inner.stats("local"), loop).result(timeout=10).spaces)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        command = COMMANDS.get(name)
        if command is None:
            return target
        if name == "ask_stream":
            return self._stream(command, target)
        if name in ("index_paths", "index_uploads", "reindex"):
            return self._indexing(command, name, target)
        return self._timed(command, target)

    def _finish(self, command: str, start: float, exc: BaseException | None,
                result: Any = None) -> None:
        m = self._metrics
        m.observe(command, time.monotonic() - start, "ok" if exc is None else _outcome(exc))
        if isinstance(exc, ModelError):
            m.error("model")
        elif isinstance(exc, AnswerError) or getattr(result, "status", "") == "unavailable":
            m.error("llm")

    def _timed(self, command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(command, start, exc)
                raise
            self._finish(command, start, None, result)
            return result

        return call

    def _indexing(self, command: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        timed = self._timed(command, fn)

        async def call(*args: Any, **kwargs: Any) -> Any:
            queue = _Queue(self._metrics.queue)
            if name == "index_uploads":
                uploads = args[0] if args else kwargs.get("uploads", ())
                queue.set(len(uploads))
            else:
                theirs = kwargs.get("progress")

                def progress(done: int, total: int) -> None:
                    queue.set(total - done)
                    if theirs is not None:
                        theirs(done, total)

                kwargs["progress"] = progress
            try:
                return await timed(*args, **kwargs)
            finally:
                queue.close()

        return call

    def _stream(self, command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            start = time.monotonic()
            last: Any = None
            try:
                async for part in fn(*args, **kwargs):
                    last = part
                    yield part
            except BaseException as exc:
                self._finish(command, start, exc)
                raise
            self._finish(command, start, None, last)

        return call
