"""Bounded retries: which failures are worth another attempt, and how long to wait.

The SDK clients are built with ``max_retries=0``; this policy is the only retry loop, so the
number of attempts (``max_retries + 1``) and the total sleep (``max_wait_s``) are both capped.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

INITIAL_DELAY_S = 0.5
MAX_DELAY_S = 8.0
# A retry that would start with less of the deadline left than this is not worth starting.
MIN_ATTEMPT_S = 0.25

# transient: worth another attempt (timeout, connection, 408/409/429, 5xx).
# malformed: the reply could not be read (not a stream, bad JSON, cut short, empty): an outage,
#   not retried (a proxy that answers this way does it every time).
# deadline: ``[answer] deadline_s`` ran out: an outage, nothing more is tried.
# auth: the key was rejected. fatal: the request was refused (unknown model, bad request).
FailureKind = Literal["transient", "malformed", "deadline", "auth", "fatal"]


@dataclass(frozen=True)
class Failure:
    """A provider error, classified. ``reason`` is safe to log (no key, no prompt)."""

    kind: FailureKind
    reason: str
    status: int | None = None
    retry_after: float | None = None  # seconds, from retry-after(-ms) headers


def classify_status(status: int) -> FailureKind:
    if status in (401, 403):
        return "auth"
    # 408 request timeout, 409 lock timeout, 429 rate limit, 5xx (incl. 529 overloaded).
    if status in (408, 409, 429) or status >= 500:
        return "transient"
    return "fatal"


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


@dataclass
class RetryBudget:
    """Tracks one request's attempts and sleeping. Not shared between requests."""

    max_retries: int
    max_wait_s: float
    retries: int = 0
    waited_s: float = 0.0

    def next_delay(self, failure: Failure, time_left: float | None = None) -> float | None:
        """Seconds to sleep before the next attempt, or None to give up.

        ``time_left``: seconds until the answer's deadline; no attempt starts that could not
        get at least a moment of it after the sleep.
        """
        if failure.kind != "transient" or self.retries >= self.max_retries:
            return None
        if failure.retry_after is not None:
            delay = failure.retry_after
        else:
            backoff = min(INITIAL_DELAY_S * 2**self.retries, MAX_DELAY_S)
            delay = backoff * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not crypto
        # A server asking for longer than we may still wait will not be ready in time.
        if self.waited_s + delay > self.max_wait_s:
            return None
        if time_left is not None and delay + MIN_ATTEMPT_S > time_left:
            return None
        self.retries += 1
        self.waited_s += delay
        return delay


REASON_CHARS = 300


def status_failure(status: int, headers: Mapping[str, str] | None, body: object) -> Failure:
    """Classify an HTTP error. The provider's message is kept, except for auth errors
    (OpenAI echoes part of a rejected key there)."""
    kind = classify_status(status)
    reason = f"HTTP {status}"
    message = _body_message(body)
    if message and kind != "auth":
        reason += f": {message[:REASON_CHARS]}"
    return Failure(kind, reason, status, parse_retry_after(headers))


def _body_message(body: object) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            return str(message) if message else ""
        if isinstance(inner, str):
            return inner
    return ""


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked (servers may echo what they were sent)."""
    return text.replace(secret, "***") if secret else text
