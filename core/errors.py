"""One exception family for everything in ``core``.

::

    PixragError                      the base: ``str(exc)`` is written for a person
    ├── ConfigError                  a config key or value is wrong (names the key)
    ├── UnsupportedInput             one input item cannot be indexed/queried (names it, says why)
    │   └── UnsupportedImage
    ├── NotFound                     an id or path is not in the index
    ├── PermissionDenied             the caller may not do this
    ├── RateLimited                  too many requests from one user (retry_after seconds)
    ├── AnswerError                  the answer model failed (after retries)
    │   └── ProviderUnavailable      timeouts / 429 / 5xx until the retry budget ran out
    └── OperationalError             the machine, not the user: a store, a disk, a model
        ├── ModelError               the embedding model cannot be loaded or does not fit
        │   ├── ModelUnavailable     a model cannot be loaded at all: a run stops at once
        │   └── ModelMismatch        the index was built by another model: re-index
        ├── StoreError               the vector store / catalog / keyword index / blobs failed
        │   ├── StoreUnavailable     a store does not answer (down, frozen, unreachable)
        │   ├── CollectionGone       a vector collection in use was dropped (a switch elsewhere)
        │   └── StoreBusy            another process has the embedded vector store open
        └── DiskFull                 no space left on device

User errors (everything but ``OperationalError``) are safe to show anywhere: their message
names the user's own input. Operational errors carry detail for the operator (library text,
paths) in ``str(exc)``, which goes to logs and to the operator's CLI, and a fixed sentence in
``exc.public`` for chat messages: see :func:`public_message`.

Anything else escaping ``core`` is a bug: adapters log it with context and show a short apology,
never ``str(exc)``. Third-party errors are converted at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

import errno


class PixragError(Exception):
    """Base class. The message is written for the person using PixRAG."""


class ConfigError(PixragError):
    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


class UnsupportedInput(PixragError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class UnsupportedImage(UnsupportedInput):
    pass


class NotFound(PixragError):
    pass


class PermissionDenied(PixragError):
    pass


class RateLimited(PixragError):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many requests: try again in {max(1, round(retry_after))} s")


class AnswerError(PixragError):
    pass


class ProviderUnavailable(AnswerError):
    pass


class OperationalError(PixragError):
    """Something on the operator's side failed. ``str(exc)`` is the detail (for logs and the
    CLI); ``public`` is what a chat user may see."""

    public = "PixRAG ran into a problem on its side; the operator has the details in the log."


class ModelError(OperationalError):
    public = "the search model is not available right now; the operator has the details."


class ModelUnavailable(ModelError):
    """A model cannot be loaded at all (a wrong path, a missing package, no way to download
    it): every item would fail the same way, so an index run stops with this one error."""


class ModelMismatch(ModelError):
    public = "the index was built with another model and must be re-indexed by the operator."


class StoreError(OperationalError):
    public = "the index is not reachable right now; please try again in a minute."


class StoreUnavailable(StoreError):
    public = "the index is not responding right now; please try again in a minute."


class CollectionGone(StoreError):
    """A vector collection this process was using no longer exists: another process switched
    the index to a new one (``pixrag reindex``) and dropped it. The library follows the switch
    when the new collection fits its models."""


class StoreBusy(StoreError):
    public = "the index is busy with another PixRAG process; please try again later."


class DiskFull(OperationalError):
    public = "no space left on device: the operator must free some disk space."


def public_message(exc: BaseException) -> str | None:
    """What a chat message may say about ``exc``: the message of a user error, the fixed
    sentence of an operational one, None for anything else (a bug: apologise, log it)."""
    if isinstance(exc, OperationalError):
        return exc.public
    if isinstance(exc, PixragError):
        return str(exc)
    return None


def from_os_error(exc: OSError, what: str) -> OperationalError:
    """An OSError from our own storage as the right operational error (full disk is common
    and has a fix the operator should read at once)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on device while {what}")
    where = f"{exc.filename}: " if exc.filename else ""  # which path: the data folder, a blob
    return StoreError(f"{what} failed: {where}{exc.strerror or exc}")
