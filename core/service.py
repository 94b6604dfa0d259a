"""The one facade adapters call: index, search, similar, ask, forget, stats, prefs, feedback.

Every method is async and never blocks the event loop: the work runs in the executors held by
:class:`core.components.Components` and by the Library. Build it with
:func:`core.app.open_service`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from core.admission import Admission
from core.answer import Answerer
from core.components import Components
from core.config import RetrievalSettings
from core.deletions import RecentDeletions
from core.enrich import MAX_ATTEMPTS, Enricher, QueryGate
from core.errors import ConfigError, NotFound, PermissionDenied, PixragError, UnsupportedInput
from core.ingest import Ingestor, discover, display_text, upload_job
from core.library.vectors import redact_url
from core.models.lighttext import batches_in_torch
from core.retrieve import Retriever
from core.textnorm import normalize_name, normalize_text
from core.types import (
    Answer,
    Failed,
    Hit,
    IndexedItem,
    IndexReport,
    Origin,
    Scope,
    Skipped,
    Stats,
    Turn,
    Upload,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)
MAX_QUESTION_CHARS = 4000
DELETED_MEANWHILE = "its message or file was deleted while it was being indexed"


class PixRAG:
    def __init__(self, components: Components, answerer: Answerer) -> None:
        self.c = components
        self.library = components.library
        self.settings = components.settings
        self.answerer = answerer
        self.gate = QueryGate()
        self._ingestor = Ingestor(components)
        self._retriever = Retriever(components)
        self.enricher = Enricher(components, self.gate)
        # Chat uploads in flight, process-wide: adapters hold a ticket from before the
        # download until indexing is done with the bytes.
        idx = self.settings.index
        self.admission = Admission(idx.inflight_files, int(idx.inflight_mb * 1024 * 1024))
        # Messages and files deleted on the platform while their uploads were in flight.
        self._deleted = RecentDeletions()
        self._torch_import: asyncio.Future[None] | None = None

    async def aclose(self) -> None:
        await self.enricher.aclose()
        await self._ingestor.aclose()
        if self._torch_import is not None:
            await self._torch_import  # an import cannot be cancelled: let it finish

    async def start_background(self) -> None:
        """Resume text enrichment left over from an earlier run (bots call this at start), and
        import torch in the background: a long-running process will index (chat uploads) and
        answer many queries, which torch runs faster than numpy (core.models.lighttext).

        An embedded vector store is opened now: it serves one process at a time, so a bot
        started while another process has it open stops at start with that error instead of
        answering every chat message with it."""
        if not self.c.settings.store.url:
            await self.library.vectors()
        if await self.library.pending() > 0:
            self.enricher.kick()
        if self._torch_import is None:
            self._torch_import = asyncio.get_running_loop().run_in_executor(
                self.c.pools.decode, batches_in_torch)

    @property
    def model(self) -> str:
        return self.c.clip_model_id

    @property
    def provider(self) -> str:
        return self.answerer.provider

    # indexing ---------------------------------------------------------------------------------
    async def index_paths(
        self, paths: Sequence[Path], space: str, *, progress: Progress | None = None,
        wait: bool = True, text_progress: Progress | None = None,
    ) -> IndexReport:
        """Index files and folders (recursive). Per-file errors go to ``report.failed``.

        Returns once the items are findable by CLIP and near-duplicate search and, unless
        ``wait`` is False, once their text (OCR, captions, passages) is searchable too."""
        jobs, skipped, failed = await self.c.run(self.c.pools.decode, discover, list(paths),
                                                 self.c.settings.own_folders)
        report = await self._ingestor.run(jobs, space, progress=progress)
        report.skipped[:0] = skipped
        report.failed[:0] = failed
        await self._after_phase1(report, wait, text_progress, backlog=True)
        return report

    async def index_uploads(self, uploads: Sequence[Upload], space: str, *,
                            wait: bool = False) -> IndexReport:
        """Index chat attachments (bytes + origin). Same report semantics as index_paths, but
        returns as soon as the items are findable; their text follows in the background.

        An upload whose message or file was deleted on the platform (``forget_origin``)
        before or while it was indexed is left out: ``skipped``, its items removed."""
        gone: list[Upload] = []
        live: list[Upload] = []
        for u in uploads:
            (gone if self._deleted.covers(space, u.origin) else live).append(u)
        report = await self._ingestor.run([upload_job(u) for u in live], space)
        # Checked again after the commit: a delete that arrived meanwhile found nothing yet.
        late = [u for u in live if self._deleted.covers(space, u.origin)]
        if late:
            await self._drop_deleted(space, [u.origin for u in late], report)
        report.skipped.extend(Skipped(display_text(u.source), DELETED_MEANWHILE)
                              for u in [*gone, *late])
        await self._after_phase1(report, wait, None)
        return report

    async def _drop_deleted(self, space: str, origins: list[Origin],
                            report: IndexReport) -> None:
        view = Scope(space=space, admin=True)
        ids: set[str] = set()
        for o in origins:
            rows = await self.library.find(view, message=o.message or None,
                                           attachment=o.attachment or None,
                                           channel=o.channel or None)
            ids.update(r.id for r in rows)
        if ids:
            await self._remove(space, sorted(ids))
        report.indexed = [i for i in report.indexed if i.id not in ids]

    async def _after_phase1(self, report: IndexReport, wait: bool,
                            text_progress: Progress | None, *, backlog: bool = False) -> None:
        """Start the text phase; with ``wait``, return when it is done for this run's items
        and, with ``backlog``, for every item an earlier run left queued as well (a
        ``--no-wait`` run, a run that was killed): the queue resumes in the next
        ``pixrag index``, whatever that one indexes."""
        ids = [i.id for i in report.indexed]
        earlier: list[str] = []
        if wait and backlog:
            mine = set(ids)
            earlier = [i for i in await self.library.read(
                "reading the queue", self.library.catalog.queued_ids) if i not in mine]
            ids = [*earlier, *ids]
        if not ids:
            return
        self.enricher.kick()
        if wait:
            await self.enricher.wait_for(ids, text_progress)
            if earlier:  # read now, rather than failed for good (those stay queued)
                left = await self.library.read("reading the queue",
                                               self.library.catalog.pending_ids, earlier)
                report.resumed = len(earlier) - len(left)
            failures = dict(await self.library.read(
                "reading the queue", self.library.catalog.enrich_failures, MAX_ATTEMPTS))
            captions = self.enricher.caption_failures
            for item in report.indexed:
                if item.id in failures:
                    report.warnings.append(Failed(item.source, "indexed without its text: "
                                                  + failures[item.id]))
                elif item.id in captions:
                    report.warnings.append(Failed(item.source, "indexed without a caption: "
                                                  + captions.pop(item.id)))

    async def wait_enriched(self) -> None:
        """Wait until nothing is waiting for text (tests, benchmarks)."""
        ids = await self.library.read("reading the queue", self.library.catalog.queued_ids)
        if ids:
            await self.enricher.wait_for(ids)

    # retrieval --------------------------------------------------------------------------------
    def _k(self, k: int | None) -> int:
        return max(1, min(100, k or self.settings.retrieval.k))

    async def search(self, text: str, scope: Scope, k: int | None = None) -> list[Hit]:
        """Text -> best images/pages/chunks visible to ``scope``, best first."""
        text = normalize_text(text, MAX_QUESTION_CHARS)
        if not text:
            raise UnsupportedInput("query", "empty query")
        with self.gate.query():
            return await self._retriever.search_text(text, scope, self._k(k))

    def with_retrieval(self, retrieval: RetrievalSettings) -> Retriever:
        """A retriever over this index with other retrieval settings (``eval --compare``)."""
        return Retriever(self.c, retrieval)

    async def similar(
        self, image: bytes, scope: Scope, k: int | None = None, name: str = "image"
    ) -> list[Hit]:
        """Reverse image search. Raises UnsupportedImage (names ``name``) for bad bytes."""
        name = normalize_name(name)
        with self.gate.query():
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
        question = normalize_text(question, MAX_QUESTION_CHARS)
        image_name = normalize_name(image_name)
        history = [replace(t, text=normalize_text(t.text)) for t in history]
        if not question and image is None:
            raise UnsupportedInput("question", "empty question")
        kk = self._k(k)
        image_text = ""
        with self.gate.query():
            if image is not None:
                hits, image_text = await self._retriever.search_image(image, image_name, scope,
                                                                      kk)
                if question:
                    # The question's own words also retrieve ("which slide covers pricing?")
                    more = await self._retriever.search_text(question, scope, kk)
                    hits = _merge_hits(hits, more, kk)
            else:
                hits = await self._retriever.search_text(question, scope, kk)
        async for part in self.answerer.stream(question or "What is in this image?", hits,
                                               query_image=image, query_text=image_text,
                                               history=list(history)):
            yield part

    # forgetting -------------------------------------------------------------------------------
    async def forget(self, space: str, ref: str, *, scope: Scope | None = None) -> list[str]:
        """Remove by item id or by source (path / link). Returns removed ids; NotFound if none.
        With ``scope`` only items that scope may see are removed (chat); without it, any item
        of ``space`` (the operator's CLI)."""
        view = scope or Scope(space=space, admin=True)
        if view.space != space:
            raise PermissionDenied("cannot forget items of another space")
        lib = self.library
        # A forget that was interrupted (kill -9) is finished by the next one: re-running the
        # same command, which now finds nothing, still removes what was left of it.
        await lib.finish_forgets(space)
        safe = display_text(ref)  # names are stored in their display form
        rows = list((await lib.rows(view, [safe])).values()) or await lib.find(view, source=safe)
        # Paths are the operator's: a chat user (a scope) cannot probe the host's files.
        if not rows and scope is None and ref.strip():
            # Relative and ~ paths name what they named when indexed, also once the file or
            # folder is gone from disk: removing deleted files is what forget is often for.
            resolved = display_text(str(await self.c.run(
                self.c.pools.decode, lambda: Path(ref).expanduser().resolve())))
            rows = await lib.find(view, source=resolved)
            if not rows and not await self.c.run(self.c.pools.decode, os.path.isfile, ref):
                # a folder (or what was one): everything indexed from under it
                rows = await lib.find_prefix(view, resolved.rstrip(os.sep) + os.sep)
        if not rows:
            raise NotFound(f"nothing indexed in space {space!r} matches {safe!r}")
        return await self._remove(space, [r.id for r in rows])

    async def forget_origin(
        self, space: str, *, message: str | None = None, attachment: str | None = None,
        channel: str | None = None, scope: Scope | None = None,
        keep_attachments: Collection[str] = (),
    ) -> list[str]:
        """Remove what was indexed from a chat message, one attachment/file of it, or both.
        ``channel`` narrows a message id that is only unique per channel (Slack's ts);
        ``scope`` (a user's request) keeps to the items that scope can see;
        ``keep_attachments``: items of these attachments stay (an edited message's files)."""
        if message is None and attachment is None:
            raise PixragError("forget_origin needs a message or an attachment")
        if scope is not None and scope.space != space:
            raise PermissionDenied("cannot forget items of another space")
        if scope is None:
            # The platform deleted it: uploads of it still in flight must not outlive it.
            # Recorded before the catalog is read, so an upload committing meanwhile either
            # is found here or finds this record (see index_uploads).
            self._deleted.record(space, message=message, attachment=attachment,
                                 channel=channel, keep=keep_attachments)
        rows = await self.library.find(scope or Scope(space=space, admin=True),
                                       message=message, attachment=attachment, channel=channel)
        keep = set(keep_attachments)
        rows = [r for r in rows if r.attachment not in keep]
        if not rows:
            return []
        return await self._remove(space, [r.id for r in rows])

    async def _remove(self, space: str, ids: list[str]) -> list[str]:
        removed = await self.library.forget(space, ids)
        log.info("forgot %d item(s) in %s", len(removed), space)
        return removed

    async def item(self, space: str, item_id: str) -> Hit | None:
        """One item of ``space`` (for permission checks: ``hit.origin.author``)."""
        return await self.get_item(Scope(space=space, admin=True), item_id)

    async def get_item(self, scope: Scope, item_id: str) -> Hit | None:
        """One item, or None when it does not exist or ``scope`` may not see it."""
        row = await self.library.row(scope, item_id)
        if row is None:
            return None
        [hit] = await self.library.hits([(row, 0.0, {}, "")])
        return hit

    async def has_attachments(self, space: str, attachment_ids: Sequence[str]) -> set[str]:
        """Which chat attachment/file ids already have items in ``space`` (cheap skip)."""
        return await self.library.has_attachments(space, attachment_ids)

    async def similar_to_item(
        self, scope: Scope, item_id: str, k: int | None = None
    ) -> list[Hit]:
        """"More like this": reverse search from an indexed item ``scope`` can see (the item
        itself left out). NotFound when it is not visible or has no image."""
        row = await self.library.row(scope, item_id)
        if row is None or not row.image_sha:
            raise NotFound(f"item {item_id!r} is not in this index")
        data = await self.library.blob_bytes(row.image_sha)
        kk = self._k(k)
        hits = await self.similar(data, scope, kk + 1, name=row.name or "image")
        return [h for h in hits if h.id != item_id][:kk]

    async def stats(self, space: str) -> Stats:
        lib = self.library
        by_kind = await lib.counts(space)
        spaces = await lib.spaces()
        pending = await lib.pending(space)
        full = {kind: by_kind.get(kind, 0) for kind in ("image", "page", "chunk")}
        st = self.settings.store
        store = redact_url(st.url) if st.url else str(
            Path(st.path).expanduser() if st.path else self.settings.data_path / "chroma")
        captioner = self._caption_model()
        without = (None if captioner is None
                   else len(await lib.uncaptioned(space, captioner)))
        return Stats(items=sum(full.values()), by_kind=full, spaces=spaces,
                     model=self.c.clip_model_id, store=store,
                     text_model=self.c.text.model_id, waiting_for_text=pending,
                     without_caption=without)

    def _caption_model(self) -> str | None:
        """The captioner's model id when captions are on (builds no client)."""
        if not self.settings.index.captions:
            return None
        captioner = self.c.captioner
        return None if captioner is None else captioner.model_id

    async def recaption(self, paths: Sequence[Path], space: str, *,
                        progress: Progress | None = None) -> IndexReport:
        """Caption again the items of ``space`` that have no caption by the current model
        (a failed or skipped caption); ``paths`` narrows it to items from those files and
        folders. They stay searchable meanwhile; OCR is not repeated."""
        model = self._caption_model()
        if model is None and not self.settings.index.captions:
            raise ConfigError("index.captions (or PIXRAG_INDEX__CAPTIONS)", "captions are "
                              "off: set it to true, with an answer provider that can see images")
        if model is None:  # on, but nothing to ask
            raise ConfigError("answer.provider (or PIXRAG_ANSWER__PROVIDER)", "captions are on "
                              "but no answer model is configured to write them: set "
                              "ANTHROPIC_API_KEY or OPENAI_API_KEY, or an [answer] provider "
                              "that can see images")
        ids = await self.library.uncaptioned(space, model)
        rows = await self.library.rows(Scope(space=space, admin=True), ids) if ids else {}
        if paths:  # sources are stored resolved, in display form (as forget matches them)
            roots = [display_text(str(Path(p).expanduser().resolve())) for p in paths]
            rows = {i: r for i, r in rows.items() if any(
                r.source == root or r.source.startswith(root.rstrip(os.sep) + os.sep)
                for root in roots)}
        ids = [i for i in ids if i in rows]
        report = IndexReport()
        if not ids:
            return report
        await self.library.requeue(space, ids)
        report.indexed.extend(IndexedItem(i, rows[i].source, rows[i].kind, rows[i].page)  # type: ignore[arg-type]
                              for i in ids if i in rows)
        await self._after_phase1(report, True, progress)
        return report

    # preferences ------------------------------------------------------------------------------
    async def set_autoindex(self, space: str, channel: str, on: bool) -> None:
        await self.library.set_pref(space, f"autoindex:{channel}", "1" if on else None)

    async def autoindex_channels(self, space: str) -> set[str]:
        prefs = await self.library.prefs_like(space, "autoindex:")
        return {k.split(":", 1)[1] for k in prefs}

    async def get_state(self, space: str, key: str) -> str | None:
        """A small per-space value (cursors, flags) kept in the catalog."""
        return await self.library.get_pref(space, key)

    async def set_state(self, space: str, key: str, value: str | None) -> None:
        await self.library.set_pref(space, key, value)

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
        rows = await self.library.rows(Scope(space=space, admin=True), list(source_ids))
        sources = [{"id": i, "name": rows[i].name if i in rows else "",
                    "source": rows[i].source if i in rows else ""} for i in source_ids]
        await self.library.add_feedback(space, platform, user,
                                        question[:MAX_QUESTION_CHARS], verdict, sources)

    async def export_feedback(self, space: str | None = None) -> list[dict[str, Any]]:
        """Feedback as ``eval`` entries. "up": the shown sources are the acceptable targets;
        "down" entries keep ``target: []`` and the rejected names, for review."""
        rows = await self.library.feedback(space)
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

    # maintenance ------------------------------------------------------------------------------
    async def reindex(self, progress: Progress | None = None) -> IndexReport:
        """Re-embed what the configured models changed, beside the live index (which stays
        searchable), then switch over. Resumable: a re-run continues."""
        from core.maintenance import reindex

        return await reindex(self.c, progress=progress)

    async def check(self, *, repair: bool = False) -> dict[str, Any]:
        """Compare catalog, vectors, keyword index and blobs; repair what can be."""
        from core.maintenance import check

        report = await check(self.c, repair=repair)
        if repair and report.get("requeued"):
            self.enricher.kick()
            await self.wait_enriched()
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

