"""Starting a bot when the platform may be down: bounded retries with back-off, then one line.

A chat platform that cannot be reached at start (no network, DNS failure, an outage) is
retried a few times with growing pauses; after that the bot stops with one clear sentence
(exit 1 from the CLI) instead of retrying forever or printing a library's traceback. Tokens
the platform rejects are not retried: that is a configuration error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from core.errors import PixragError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that mean "could not talk to the platform" (worth another try).
TRANSIENT: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)


class PlatformUnreachable(PixragError):
    """The chat platform could not be reached at start (after the retries)."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 15.0
    timeout_s: float = 30.0  # one attempt

    def delays(self) -> list[float]:
        return [min(self.max_delay_s, self.first_delay_s * 2**i)
                for i in range(max(0, self.attempts - 1))]


def describe(exc: BaseException) -> str:
    """A short, operator-readable cause (no traceback)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {exc.host} failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def with_retries(
    platform: str,
    attempt: Callable[[], Awaitable[T]],
    retry: Retry,
    *,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
) -> T:
    """``await attempt()`` until it succeeds, retrying ``transient`` errors with back-off;
    PlatformUnreachable after ``retry.attempts`` failures. Other errors pass through."""
    delays = retry.delays()
    last: BaseException | None = None
    for n in range(1, retry.attempts + 1):
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # (Ctrl-C, shutdown) that arrives as the attempt succeeds.
            async with asyncio.timeout(retry.timeout_s):
                return await attempt()
        except transient as exc:
            last = exc
            if n > len(delays):
                break
            log.warning("cannot reach %s (%s); attempt %d of %d, retrying in %.0f s",
                        platform, describe(exc), n, retry.attempts, delays[n - 1])
            await asyncio.sleep(delays[n - 1])
    raise unreachable(platform, last, retry.attempts) from last


def unreachable(platform: str, exc: BaseException | None, attempts: int = 1) -> PlatformUnreachable:
    """The one line an operator gets when ``platform`` cannot be reached."""
    detail = describe(exc) if exc is not None else "unknown"
    return PlatformUnreachable(
        f"cannot reach {platform} ({detail}) after {attempts} attempt(s): check the "
        "network, DNS and any proxy, then start again"
    )
