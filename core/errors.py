"""One exception family for everything in ``core``.

::

    PixragError                      safe to show: ``str(exc)`` is a message for the user
    ├── ConfigError                  a config key or value is wrong (names the key)
    ├── UnsupportedInput             one input item cannot be indexed/queried (names it, says why)
    │   └── UnsupportedImage
    ├── ModelError                   the embedding model cannot be loaded or does not fit
    │   └── ModelMismatch            the index was built by another model: re-index
    ├── StoreError                   the vector store / catalog failed
    ├── NotFound                     an id or path is not in the index
    ├── PermissionDenied             the caller may not do this
    ├── RateLimited                  too many requests from one user (retry_after seconds)
    └── AnswerError                  the answer model failed (after retries)
        └── ProviderUnavailable      timeouts / 429 / 5xx until the retry budget ran out

Anything else escaping ``core`` is a bug: adapters log it with context and show a short apology,
never ``str(exc)``. Third-party errors are converted at the edge with ``raise ... from exc``.
"""

from __future__ import annotations


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


class ModelError(PixragError):
    pass


class ModelMismatch(ModelError):
    pass


class StoreError(PixragError):
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
