"""Log records as text (default) or JSON lines (``log_format = "json"``), never with secrets.

Log shippers (Loki, CloudWatch, Elastic, ``docker logs`` into anything) parse one JSON object
per line without multi-line tracebacks breaking records apart. Handlers are configured only by
the entry point (:func:`configure`), never at import.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, exception (when any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Replace the values of configured secrets wherever they appear in a record.

    Secrets are never logged on purpose; this catches the accidental case (a library echoing a
    request URL or header, an exception quoting its input)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Short values would redact ordinary words; real tokens and keys are long.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = self._clean(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
            record.exc_info = None  # the cleaned text is what gets printed
        return True


def configure(level: int, fmt: str = "text", *, secrets: Iterable[str] = (),
              stream: IO[str] | None = None) -> logging.Handler | None:
    """Install the process's root handler, like :func:`logging.basicConfig`: when someone else
    (an embedding application, pytest) already set up logging, only the level is set."""
    root = logging.getLogger()
    root.setLevel(level)
    for old in list(root.handlers):
        if getattr(old, "_pixrag", False):
            root.removeHandler(old)
    if root.handlers:
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    handler._pixrag = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return handler
