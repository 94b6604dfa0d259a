"""The one facade adapters call: index, search, similar, ask, forget, stats, prefs, feedback.

SKELETON: signatures are the contract the adapters code against; bodies are being written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from core.types import Answer, Hit, IndexReport, Scope, Stats, Turn, Upload

Progress = Callable[[int, int], None]  # (done, total)


class PixRAG:
    async def index_paths(
        self, paths: Sequence[Path], space: str, *, progress: Progress | None = None
    ) -> IndexReport:
        """Index files and folders (recursive). Per-file errors go to ``report.failed``."""
        raise NotImplementedError

    async def index_uploads(self, uploads: Sequence[Upload], space: str) -> IndexReport:
        """Index chat attachments (bytes + origin). Same report semantics as index_paths."""
        raise NotImplementedError

    async def search(self, text: str, scope: Scope, k: int | None = None) -> list[Hit]:
        """Text -> best images/pages/chunks visible to ``scope``, best first."""
        raise NotImplementedError

    async def similar(
        self, image: bytes, scope: Scope, k: int | None = None, name: str = "image"
    ) -> list[Hit]:
        """Reverse image search. Raises UnsupportedImage (names ``name``) for bad bytes."""
        raise NotImplementedError

    async def ask(
        self,
        question: str,
        scope: Scope,
        *,
        k: int | None = None,
        image: bytes | None = None,
        image_name: str = "image",
        history: Sequence[Turn] = (),
    ) -> Answer:
        """Retrieve + answer. Never raises for model outages: status="unavailable"."""
        raise NotImplementedError

    def ask_stream(
        self,
        question: str,
        scope: Scope,
        *,
        k: int | None = None,
        image: bytes | None = None,
        image_name: str = "image",
        history: Sequence[Turn] = (),
    ) -> AsyncIterator[str | Answer]:
        """Like ask, yielding text deltas as the model writes them; the final Answer last."""
        raise NotImplementedError

    async def forget(self, space: str, ref: str) -> list[str]:
        """Remove by item id or by source (path / link). Returns removed ids; NotFound if none."""
        raise NotImplementedError

    async def forget_origin(
        self, space: str, *, message: str, attachment: str | None = None
    ) -> list[str]:
        """Remove what was indexed from a chat message (or one attachment of it)."""
        raise NotImplementedError

    async def item(self, space: str, item_id: str) -> Hit | None:
        """One item of ``space`` (for permission checks: ``hit.origin.author``)."""
        raise NotImplementedError

    async def stats(self, space: str) -> Stats:
        raise NotImplementedError

    async def set_autoindex(self, space: str, channel: str, on: bool) -> None:
        raise NotImplementedError

    async def autoindex_channels(self, space: str) -> set[str]:
        raise NotImplementedError

    async def record_feedback(
        self,
        space: str,
        *,
        question: str,
        verdict: Literal["up", "down"],
        source_ids: Sequence[str],
        user: str,
        platform: str,
    ) -> None:
        raise NotImplementedError

    async def export_feedback(self, space: str | None = None) -> list[dict[str, Any]]:
        """Feedback as ``eval`` entries: [{"query", "target": [names], "verdict", ...}]."""
        raise NotImplementedError
