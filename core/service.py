"""The one facade adapters call: index, search, similar, ask, forget, stats, prefs, feedback.

Every method is async and never blocks the event loop: the work runs in the executors held by
:class:`core.components.Components`. Build it with :func:`core.app.open_service`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from core.admission import Admission
from core.answer import Answerer
from core.catalog import ItemRow
from core.components import Components
from core.errors import NotFound, PixragError, UnsupportedInput, from_os_error
from core.ingest import Ingestor, discover, upload_job
from core.retrieve import Retriever, row_hit, row_origin
from core.types import Answer, Failed, Hit, IndexReport, Scope, Stats, Turn, Upload

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)
MAX_QUESTION_CHARS = 4000


class PixRAG:
    def __init__(self, components: Components, answerer: Answerer) -> None:
        self.c = components
        self.settings = components.settings
        self.answerer = answerer
        self._ingestor = Ingestor(components)
        self._retriever = Retriever(components)
        # Chat uploads in flight, process-wide: adapters hold a ticket from before the
        # download until indexing is done with the bytes.
        idx = self.settings.index
        self.admission = Admission(idx.inflight_files, int(idx.inflight_mb * 1024 * 1024))

    async def aclose(self) -> None:
        await self._ingestor.aclose()

    @property
    def model(self) -> str:
        return self.c.clip.model_id

    @property
    def provider(self) -> str:
        return self.answerer.provider

    # indexing ---------------------------------------------------------------------------------
    async def index_paths(
        self, paths: Sequence[Path], space: str, *, progress: Progress | None = None
    ) -> IndexReport:
        """Index files and folders (recursive). Per-file errors go to ``report.failed``."""
        jobs, skipped, failed = await self.c.run(self.c.pools.decode, discover, list(paths))
        report = await self._ingestor.run(jobs, space, progress=progress)
        report.skipped[:0] = skipped
        report.failed[:0] = failed
        return report

    async def index_uploads(self, uploads: Sequence[Upload], space: str) -> IndexReport:
        """Index chat attachments (bytes + origin). Same report semantics as index_paths."""
        return await self._ingestor.run([upload_job(u) for u in uploads], space)

    # retrieval --------------------------------------------------------------------------------
    def _k(self, k: int | None) -> int:
        return max(1, min(100, k or self.settings.retrieval.k))

    async def search(self, text: str, scope: Scope, k: int | None = None) -> list[Hit]:
        """Text -> best images/pages/chunks visible to ``scope``, best first."""
        text = text.strip()[:MAX_QUESTION_CHARS]
        if not text:
            raise UnsupportedInput("query", "empty query")
        return await self._retriever.search_text(text, scope, self._k(k))

    async def similar(
        self, image: bytes, scope: Scope, k: int | None = None, name: str = "image"
    ) -> list[Hit]:
        """Reverse image search. Raises UnsupportedImage (names ``name``) for bad bytes."""
        hits, _ = await self._retriever.search_image(image, name, scope, self._k(k))
        return hits

    # answers ----------------------------------------------------------------------------------
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
        final: Answer | None = None
        async for part in self.ask_stream(question, scope, k=k, image=image,
                                          image_name=image_name, history=history):
            if isinstance(part, Answer):
                final = part
        assert final is not None
        return final

    async def ask_stream(
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
        question = question.strip()[:MAX_QUESTION_CHARS]
        if not question and image is None:
            raise UnsupportedInput("question", "empty question")
        kk = self._k(k)
        if image is not None:
            hits, ocr_text = await self._retriever.search_image(image, image_name, scope, kk)
            if question:
                # The question's own words also retrieve (e.g. "which slide covers pricing?")
                more = await self._retriever.search_text(question, scope, kk)
                hits = _merge_hits(hits, more, kk)
        else:
            hits = await self._retriever.search_text(question, scope, kk)
        async for part in self.answerer.stream(question or "What is in this image?", hits,
                                               query_image=image, history=list(history)):
            yield part

    # forgetting -------------------------------------------------------------------------------
    async def forget(self, space: str, ref: str, *, scope: Scope | None = None) -> list[str]:
        """Remove by item id or by source (path / link). Returns removed ids; NotFound if none.
        With ``scope`` (chat): only items that scope can see, and no local paths."""
        c = self.c

        def lookup() -> list[ItemRow]:
            rows = list(c.catalog.get(space, [ref]).values()) or c.catalog.find(space, source=ref)
            if scope is not None:
                return [r for r in rows if scope.sees(r.audience)]
            if rows or not os.path.exists(ref):
                return rows
            resolved = str(Path(ref).resolve())
            rows = c.catalog.find(space, source=resolved)
            if not rows and os.path.isdir(ref):  # a folder: everything indexed from under it
                rows = c.catalog.find_by_source_prefix(space, resolved.rstrip(os.sep) + os.sep)
            return rows

        if scope is not None and scope.space != space:
            raise PixragError("forget: scope and space differ")
        rows = await c.run(c.pools.store, lookup)
        if not rows:
            raise NotFound(f"nothing indexed in space {space!r} matches {ref!r}")
        return await self._remove(space, [r.id for r in rows])

    async def forget_origin(
        self, space: str, *, message: str | None = None, attachment: str | None = None,
        channel: str | None = None, scope: Scope | None = None,
    ) -> list[str]:
        """Remove what was indexed from a chat message, one attachment/file of it, or both.
        ``channel`` narrows a message id that is only unique per channel (Slack's ts);
        ``scope`` (a user's request) keeps to the items that scope can see."""
        if message is None and attachment is None:
            raise PixragError("forget_origin needs a message or an attachment")
        c = self.c
        rows = await c.run(c.pools.store, lambda: c.catalog.find(
            space, message=message, attachment=attachment, channel=channel))
        if scope is not None:
            rows = [r for r in rows if r.space == scope.space and scope.sees(r.audience)]
        if not rows:
            return []
        return await self._remove(space, [r.id for r in rows])

    async def _remove(self, space: str, ids: list[str]) -> list[str]:
        c = self.c

        def work() -> list[str]:
            rows = list(c.catalog.get(space, ids).values())
            c.catalog.delete(space, ids)  # first: from now on search cannot show them
            c.catalog.unmark_files(space, [r.file_sha for r in rows])
            c.store.delete_items(space, ids)
            c.keyword.delete_items(ids)
            for r in rows:
                c.blobs.delete_thumbnail(r.id)
                for sha in {r.file_sha, r.image_sha}:
                    if sha and not c.catalog.sha_in_use(sha):
                        c.blobs.delete(sha)
            return [r.id for r in rows]

        removed = await c.run(c.pools.store, work)
        log.info("forgot %d item(s) in %s", len(removed), space)
        return removed

    async def item(self, space: str, item_id: str) -> Hit | None:
        """One item of ``space`` (for permission checks: ``hit.origin.author``)."""
        c = self.c
        rows = await c.run(c.pools.store, c.catalog.get, space, [item_id])
        row = rows.get(item_id)
        if row is None:
            return None
        return row_hit(row, c.blobs)

    async def get_item(self, scope: Scope, item_id: str) -> Hit | None:
        """One item if ``scope`` may see it; None when absent or hidden (they look alike)."""
        c = self.c
        rows = await c.run(c.pools.store, c.catalog.get, scope.space, [item_id])
        row = rows.get(item_id)
        if row is None or not scope.sees(row.audience):
            return None
        return row_hit(row, c.blobs)

    async def similar_to_item(
        self, scope: Scope, item_id: str, k: int | None = None
    ) -> list[Hit]:
        """"More like this": reverse search from an indexed item ``scope`` can see (the item
        itself left out). NotFound when it is not visible or has no image."""
        hit = await self.get_item(scope, item_id)
        path = (hit.blob or hit.thumbnail) if hit is not None else None
        if hit is None or path is None:
            raise NotFound(f"item {item_id!r} is not in this index")
        try:
            data = await self.c.run(self.c.pools.decode, Path(path).read_bytes)
        except OSError as exc:
            raise from_os_error(exc, f"reading the original of item {item_id}") from exc
        kk = self._k(k)
        hits = await self.similar(data, scope, kk + 1, name=hit.name or "image")
        return [h for h in hits if h.id != item_id][:kk]

    async def stats(self, space: str) -> Stats:
        c = self.c
        by_kind = await c.run(c.pools.store, c.catalog.counts, space)
        spaces = await c.run(c.pools.store, c.catalog.spaces)
        full = {kind: by_kind.get(kind, 0) for kind in ("image", "page", "chunk")}
        return Stats(items=sum(full.values()), by_kind=full, spaces=spaces,
                     model=c.clip.model_id, store=c.store.location,
                     text_model=c.text.model_id)

    # preferences ------------------------------------------------------------------------------
    async def set_autoindex(self, space: str, channel: str, on: bool) -> None:
        await self.c.run(self.c.pools.store, self.c.catalog.set_pref, space,
                         f"autoindex:{channel}", "1" if on else None)

    async def autoindex_channels(self, space: str) -> set[str]:
        prefs = await self.c.run(self.c.pools.store, self.c.catalog.prefs_like, space,
                                 "autoindex:")
        return {k.split(":", 1)[1] for k in prefs}

    # feedback ---------------------------------------------------------------------------------
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
        if verdict not in ("up", "down"):
            raise PixragError(f"unknown verdict {verdict!r}")
        c = self.c
        rows = await c.run(c.pools.store, c.catalog.get, space, list(source_ids))
        sources = [{"id": i, "name": rows[i].name if i in rows else "",
                    "source": rows[i].source if i in rows else ""} for i in source_ids]
        await c.run(c.pools.store, lambda: c.catalog.add_feedback(
            space, platform, user, question[:MAX_QUESTION_CHARS], verdict, sources))

    async def export_feedback(self, space: str | None = None) -> list[dict[str, Any]]:
        """Feedback as ``eval`` entries. "up": the shown sources are the acceptable targets;
        "down" entries keep ``target: []`` and the rejected names, for review."""
        rows = await self.c.run(self.c.pools.store, self.c.catalog.feedback, space)
        out: list[dict[str, Any]] = []
        for r in rows:
            names = [s["name"] for s in r["sources"] if s.get("name")]
            entry: dict[str, Any] = {"query": r["question"], "verdict": r["verdict"],
                                     "space": r["space"], "platform": r["platform"]}
            if r["verdict"] == "up":
                entry["target"] = names
            else:
                entry["target"] = []
                entry["rejected"] = names
            out.append(entry)
        return out

    async def reindex(self, progress: Progress | None = None) -> IndexReport:
        """Drop the vector collections and rebuild every item from its stored original bytes."""
        from core.app import open_collections
        from core.ingest import FileJob

        c = self.c
        rows = await c.run(c.pools.store, c.catalog.all, None)
        jobs: dict[tuple[str, str], tuple[FileJob, list[str]]] = {}
        for r in rows:
            key = (r.space, r.file_sha)
            if key not in jobs:
                jobs[key] = (FileJob(name=r.name, source=r.source, origin=row_origin(r)), [])
            jobs[key][1].append(r.id)

        def reset() -> None:
            for channel in ("clip", "text"):
                c.store.drop(channel)
            open_collections(c.store, c.clip.model_id, c.clip.dim, c.text.model_id, c.text.dim)
            c.catalog.clear_files()

        await c.run(c.pools.store, reset)
        report = IndexReport()
        by_space: dict[str, list[FileJob]] = {}
        for (space, sha), (job, ids) in jobs.items():
            path = c.blobs.path(sha)
            if not c.blobs.has(sha):
                report.failed.append(
                    Failed(job.source, "original bytes missing from the blob store"))
                continue
            job.data = await c.run(c.pools.decode, path.read_bytes)
            await c.run(c.pools.store, c.catalog.delete, space, ids)
            await c.run(c.pools.store, c.keyword.delete_items, ids)
            by_space.setdefault(space, []).append(job)
        for space, space_jobs in by_space.items():
            report.extend(await self._ingestor.run(space_jobs, space, progress=progress))
        return report


def _merge_hits(first: list[Hit], second: list[Hit], k: int) -> list[Hit]:
    seen: set[str] = set()
    out: list[Hit] = []
    for pair in zip(first, second, strict=False):
        for h in pair:
            if h.id not in seen:
                seen.add(h.id)
                out.append(h)
    for h in first + second:
        if h.id not in seen:
            seen.add(h.id)
            out.append(h)
    return out[:k]

