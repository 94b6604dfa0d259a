"""Hybrid retrieval: several signals per query, fused, collapsed, cut off.

Text query:  CLIP text->image ("clip"), sentence embeddings over OCR/page/chunk text ("text"),
             BM25 over the same text ("keyword").
Image query: CLIP image->image ("clip"), perceptual-hash near-duplicates ("near_duplicate"),
             and the query image's own OCR text searched like a text query ("text", "keyword").

Fusion is weighted reciprocal-rank fusion (``sum_s w_s / (rrf_k + rank_s)``): ranks from
different models are comparable where raw scores are not. The cut-off is per signal (a result
needs one signal above its floor) because an RRF score says nothing about absolute relevance.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.components import Components
from core.config import RetrievalSettings
from core.library.catalog import ItemRow
from core.media import neardup
from core.media.imageio import Limits, load_image
from core.types import Hit, Scope, is_caption_passage, is_derived_passage, is_glossary_passage

_WORD = re.compile(r"[\w][\w\-\.]*[\w]|\w", re.UNICODE)
_STOP = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has",
    "have", "how", "i", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to",
    "was", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "my",
    "me", "we", "our", "about", "show", "find", "any", "there", "their", "they", "them",
    "which", "slide", "image", "picture", "photo", "screenshot",
])


def terms(text: str) -> list[str]:
    """Content words of a query, lower-cased (stopwords dropped: they match everything)."""
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP]


def term_coverage(query_terms: Sequence[str], text: str) -> float:
    if not query_terms:
        return 0.0
    words = set(w.lower() for w in _WORD.findall(text))
    stems = {w[:5] for w in words if len(w) >= 5}
    hit = sum(1 for t in query_terms if t in words or (len(t) >= 5 and t[:5] in stems))
    return hit / len(query_terms)


def same_text(a: str, b: str, threshold: float = 0.6) -> bool:
    """Do two items say the same thing? Slides sharing a template look alike to a
    perceptual hash; their words tell them apart. Both empty (photos) counts as the same."""
    wa = {w.lower() for w in _WORD.findall(a)}
    wb = {w.lower() for w in _WORD.findall(b)}
    if not wa and not wb:
        return True
    return len(wa & wb) / max(1, len(wa | wb)) >= threshold


@dataclass
class Fused:
    item: str
    score: float
    signals: dict[str, float] = field(default_factory=dict)  # raw score per signal
    ranks: dict[str, int] = field(default_factory=dict)


def fuse(lists: Mapping[str, Sequence[tuple[str, float]]], weights: Mapping[str, float],
         rrf_k: float) -> list[Fused]:
    """Weighted reciprocal-rank fusion of per-signal ``[(item, score)]`` lists (best first)."""
    out: dict[str, Fused] = {}
    for signal, ranked in lists.items():
        w = weights.get(signal, 0.0)
        seen: set[str] = set()
        rank = 0
        for item, score in ranked:
            if item in seen:  # several vectors of one item (tiles, passages): best one counts
                continue
            seen.add(item)
            rank += 1
            f = out.setdefault(item, Fused(item, 0.0))
            f.score += w / (rrf_k + rank)
            f.signals[signal] = float(score)
            f.ranks[signal] = rank
    return sorted(out.values(), key=lambda f: (-f.score, f.item))


CLIP_CAP = 0.1  # CLIP similarity above the floor counts up to this much (then saturates)


def fuse_scores(lists: Mapping[str, Sequence[tuple[str, float]]], weights: Mapping[str, float],
                *, clip_floor: float) -> list[Fused]:
    """Calibrated-score fusion: each signal mapped to [0, 1]-ish, weighted, summed.

    Sentence-embedding cosines are comparable across items and queries, so they lead; BM25 is
    made relative to the query's best match (its scale depends on the corpus); CLIP counts
    only above its floor and saturates, so a noisy or weak CLIP cannot override text evidence.
    """
    out: dict[str, Fused] = {}

    def add(item: str, signal: str, raw: float, value: float, rank: int) -> None:
        f = out.setdefault(item, Fused(item, 0.0))
        if signal in f.signals:
            return
        f.signals[signal] = float(raw)
        f.ranks[signal] = rank
        f.score += weights.get(signal, 0.0) * value

    for signal, ranked in lists.items():
        ranked = best_per_item(list(ranked))
        if not ranked:
            continue
        top = max(s for _, s in ranked)
        for rank, (item, s) in enumerate(ranked, 1):
            if signal == "keyword":
                value = s / top if top > 0 else 0.0
            elif signal == "clip":
                value = min(max(s - clip_floor, 0.0), CLIP_CAP) / CLIP_CAP
            else:  # text cosine; near_duplicate already in [0.5, 1]
                value = s
            add(item, signal, s, value, rank)
    return sorted(out.values(), key=lambda f: (-f.score, f.item))


PROTECT_WITHIN = 5  # the first results people read


def protect_top(fused: list[Fused], protected: Sequence[str],
                within: int = PROTECT_WITHIN) -> list[Fused]:
    """Reorder ``fused`` so that every ``protected`` item is among its first ``within``;
    other items keep their fused order around them. The sentence-embedding ranking is the
    strongest single signal: weaker ones (BM25, CLIP) may reorder its best few or add an item
    beside them, but never push them out of sight."""
    keep = set(protected)
    if not keep:
        return fused
    top: list[Fused] = []
    rest: list[Fused] = []
    pending = {f.item for f in fused if f.item in keep}
    for f in fused:
        slots = within - len(top)
        if slots > 0 and (f.item in pending or len(pending) < slots):
            top.append(f)
            pending.discard(f.item)
        else:
            rest.append(f)
    return top + rest


def best_per_item(pairs: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for item, score in pairs:
        if item not in best or score > best[item]:
            best[item] = score
    return sorted(best.items(), key=lambda kv: -kv[1])


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Run the signals together; when one fails, wait for the others anyway (no task is left
    with an exception nobody retrieves) and raise the first failure."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


class Retriever:
    def __init__(self, c: Components, retrieval: RetrievalSettings | None = None) -> None:
        self.c = c
        self.lib = c.library
        # ``retrieval`` lets `pixrag eval --compare` run other settings over the same index.
        self.r: RetrievalSettings = retrieval or c.settings.retrieval
        self.limits = Limits.from_settings(c.settings.index)
        bits = self.r.near_duplicate_bits
        self.near_bits = neardup.DEFAULT_MAX_DISTANCE if bits < 0 else bits

    @property
    def weights(self) -> dict[str, float]:
        return {"clip": self.r.weight_clip, "text": self.r.weight_text,
                "caption": self.r.weight_caption,
                "keyword": self.r.weight_keyword, "near_duplicate": self.r.weight_near_duplicate}

    # text queries ---------------------------------------------------------------------------
    async def search_text(self, text: str, scope: Scope, k: int) -> list[Hit]:
        expansion = ""
        if self.r.expand_queries and self.c.expander is not None:
            expansion = await self.c.expander.expand(text)
        lists, snippets = await self._text_signals(text, scope, with_clip=True,
                                                   expansion=expansion)
        return await self._finish(lists, snippets, scope, k, terms(text))

    async def _text_signals(self, text: str, scope: Scope, *, with_clip: bool,
                            expansion: str = ""
                            ) -> tuple[dict[str, list[tuple[str, float]]], dict[str, str]]:
        c, n = self.c, self.r.candidates

        async def clip() -> list[tuple[str, float]]:
            await c.clip()
            return await self._clip(await c.clip_texts.submit(text), scope, self.r.min_clip)

        async def dense() -> list[tuple[str, str, float, str]]:
            # Abbreviations only: a question is already in plain words, and error meanings
            # added to it pull every error screenshot closer (measured on eval/).
            annotated = (await c.glossary()).annotate(text, errors=False) \
                if self.r.glossary else ""
            # The annotated question ("NPS" meets "net promoter score") and the expanded words
            # are more ways to the same passages: one batch for the encoder, hits pooled.
            queries = [q for q in (text, annotated, expansion) if q]
            hits: list[tuple[str, str, float, str]] = []
            for vec in await c.text_queries.submit_many(queries):
                hits += await self.lib.query_passages("text", vec, scope, n * 3)
            if not self.r.glossary:
                hits = [h for h in hits if not is_glossary_passage(h[0])]
            return hits

        async def keyword() -> list[tuple[str, float]]:
            return await self.lib.keyword_search(scope, f"{text} {expansion}".strip(), n)

        async def none() -> list[tuple[str, float]]:
            return []

        dense_hits, keyword_hits, clip_hits = await gather_all(
            dense(), keyword(), clip() if with_clip else none())
        snippets: dict[str, str] = {}
        # A vision model's caption is a signal of its own: it knows what an error means or
        # what a chart shows, where the on-screen text only says what is written.
        ranked = sorted(dense_hits, key=lambda h: (is_derived_passage(h[0]), -h[2]))
        for _pid, item, _sim, doc in ranked:  # prefer the item's own words as the snippet
            snippets.setdefault(item, doc)
        lists: dict[str, list[tuple[str, float]]] = {
            "text": best_per_item([(i, s) for p, i, s, _ in dense_hits
                                   if not is_caption_passage(p)]),
            "keyword": list(keyword_hits),
        }
        captions = best_per_item([(i, s) for p, i, s, _ in dense_hits if is_caption_passage(p)])
        if captions:
            lists["caption"] = captions
        if with_clip:
            lists["clip"] = clip_hits
        return lists, snippets

    async def _clip(self, vec: np.ndarray, scope: Scope, floor: float) -> list[tuple[str, float]]:
        """CLIP neighbours at or above ``floor``. Below it CLIP's ranking is noise (unrelated
        images all score ~0.15-0.2 with real weights): it is left out of the fusion."""
        hits = await self.lib.query("clip", vec, scope, self.r.candidates)
        return best_per_item([(item, sim) for item, sim, _ in hits if sim >= floor])

    # image queries --------------------------------------------------------------------------
    async def search_image(self, data: bytes, name: str, scope: Scope, k: int
                           ) -> tuple[list[Hit], str]:
        """Reverse image search; also returns the query image's OCR text."""
        c, n = self.c, self.r.candidates
        decoded = await c.run(c.pools.decode, lambda: load_image(
            data, name, self.limits, max_side=2048))
        image = decoded.image
        clip_model = await c.clip()

        def prep() -> tuple[np.ndarray, np.ndarray]:
            return clip_model.preprocess([image])[0], neardup.hash_image(image)

        pixels, qhash = await c.run(c.pools.decode, prep)

        async def clip() -> list[tuple[str, float]]:
            vec = await c.clip_query_images.submit(pixels)
            return await self._clip(vec, scope, self.r.min_clip_image)

        async def near() -> list[tuple[str, float]]:
            rows = await self.lib.phashes(scope)
            if not rows:
                return []
            table = np.stack([neardup.from_text(h) for _, h in rows])
            dists = neardup.distances(qhash, table)
            order = np.argsort(dists, kind="stable")
            scale = 2.0 * max(self.near_bits, 1)
            return [(rows[i][0], 1.0 - float(dists[i]) / scale) for i in order[:n]
                    if dists[i] <= self.near_bits]

        async def ocr() -> str:
            reader = await c.reader()
            if reader is None:
                return ""
            return (await c.run(c.pools.ocr, reader.read, image)).strip()

        clip_list, near_list, query_text = await gather_all(clip(), near(), ocr())
        if near_list and len(query_text) >= 8:
            # Same template, different words (two slides of one deck) is not a duplicate.
            rows = await self.lib.rows(scope, [i for i, _ in near_list])
            near_list = [(i, s) for i, s in near_list if i in rows and (
                not rows[i].text or same_text(query_text, rows[i].text, 0.3))]
        lists: dict[str, list[tuple[str, float]]] = {"clip": clip_list,
                                                     "near_duplicate": near_list}
        snippets: dict[str, str] = {}
        qterms: list[str] = []
        if len(query_text) >= 8:  # a few stray glyphs are noise, not a query
            text_lists, snippets = await self._text_signals(query_text, scope, with_clip=False)
            lists.update(text_lists)
            qterms = terms(query_text)
        hits = await self._finish(lists, snippets, scope, k, qterms, image_query=True)
        return hits, query_text

    # fusion, cut-off, collapse -------------------------------------------------------------
    def _dense_top(self, lists: Mapping[str, Sequence[tuple[str, float]]], n: int) -> list[str]:
        """The best ``n`` items by sentence-embedding evidence alone (text and caption
        cosines, weighted as in fusion)."""
        dense: dict[str, float] = {}
        for signal, weight in (("text", self.r.weight_text), ("caption", self.r.weight_caption)):
            if weight <= 0:
                continue
            for item, score in best_per_item(list(lists.get(signal, ()))):
                dense[item] = dense.get(item, 0.0) + weight * score
        return [i for i, _ in sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def _passes(self, f: Fused, row: ItemRow, qterms: Sequence[str], image_query: bool) -> bool:
        s = f.signals
        if "near_duplicate" in s:
            return True
        if max(s.get("text", -1.0), s.get("caption", -1.0)) >= self.r.min_text:
            return True
        clip_floor = self.r.min_clip_image if image_query else self.r.min_clip
        if s.get("clip", -1.0) >= clip_floor:
            return True
        if "keyword" in s and qterms:
            cov = term_coverage(qterms, row.text)
            f.signals["keyword_coverage"] = cov
            if cov >= self.r.min_keyword:
                return True
        return False

    async def _finish(self, lists: dict[str, list[tuple[str, float]]], snippets: dict[str, str],
                      scope: Scope, k: int, qterms: Sequence[str], *,
                      image_query: bool = False) -> list[Hit]:
        if self.r.fusion == "rrf":
            fused = fuse(lists, self.weights, self.r.rrf_k)
        else:
            floor = self.r.min_clip_image if image_query else self.r.min_clip
            fused = fuse_scores(lists, self.weights, clip_floor=floor)
        if not image_query and self.r.keep_text_top:
            fused = protect_top(fused, self._dense_top(lists, self.r.keep_text_top))
        # The Library drops rows this scope may not see, and vectors without a catalog row
        # (a crashed write) are never shown.
        rows = await self.lib.rows(scope, [f.item for f in fused])
        kept: list[tuple[Fused, ItemRow]] = []
        hashes: list[tuple[np.ndarray, ItemRow]] = []
        for f in fused:
            row = rows.get(f.item)
            if row is None:
                continue
            if not self._passes(f, row, qterms, image_query):
                continue
            if row.phash:  # near-duplicate results collapse into the best-ranked one
                h = neardup.from_text(row.phash)
                if any(int(neardup.distances(h, prev[None, :])[0]) <= self.near_bits
                       and same_text(row.text, prev_row.text)
                       for prev, prev_row in hashes):
                    continue
                hashes.append((h, row))
            kept.append((f, row))
            if len(kept) >= k:
                break
        return await self.lib.hits(
            (row, f.score, f.signals, snippets.get(row.id, "")) for f, row in kept)
