"""``pixrag eval``: recall@1, recall@5 and MRR of labelled queries against the live index."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core.config import RetrievalSettings
from core.errors import UnsupportedInput
from core.textnorm import normalize_text
from core.types import Scope

if TYPE_CHECKING:
    from core.retrieve import Retriever
    from core.service import PixRAG

log = logging.getLogger(__name__)

MAX_SCAN = 20_000  # files looked at next to the eval file for the shared-store warning


def load_queries(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise UnsupportedInput(str(path), "file not found") from exc
    except OSError as exc:  # a folder, a file this user may not read
        raise UnsupportedInput(str(path), f"cannot read file ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsupportedInput(str(path), f"not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise UnsupportedInput(str(path), "expected a JSON list of queries")
    if not data:
        raise UnsupportedInput(str(path), "no queries: the list is empty")
    for n, q in enumerate(data, 1):
        if not isinstance(q, dict) or ("query" in q) == ("query_image" in q) or "target" not in q:
            raise UnsupportedInput(str(path), f"entry {n}: needs \"target\" and exactly one of "
                                   "\"query\" or \"query_image\"")
        # A label of the wrong type would never match and only lower the scores: say so.
        key = "query" if "query" in q else "query_image"
        if not _name(q[key]):
            raise UnsupportedInput(str(path), f"entry {n}: \"{key}\" must be non-empty text")
        target = q["target"]
        names = target if isinstance(target, list) else [target]
        if not names or not all(_name(t) for t in names):
            raise UnsupportedInput(str(path), f"entry {n}: \"target\" must be a file name or "
                                   "a non-empty list of file names")
    return data


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _targets(target: Any) -> set[str]:
    names = target if isinstance(target, list) else [target]
    return {Path(str(t)).name for t in names}


#: Named configurations for ``pixrag eval --compare`` (overrides of ``[retrieval]``).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-captions": {"weight_caption": 0.0},
    "captions-only": {"weight_text": 0.0, "weight_keyword": 0.0, "weight_clip": 0.0},
    # The plain pipeline: sentence-embedding cosine over the text, nothing else, no cut-off.
    "dense": {"weight_caption": 0.0, "weight_keyword": 0.0, "weight_clip": 0.0,
              "min_text": -1.0, "glossary": False},
    "no-glossary": {"glossary": False},
    "no-keyword": {"weight_keyword": 0.0},
    "no-clip": {"weight_clip": 0.0},
    "rrf": {"fusion": "rrf"},
}
DEFAULT_COMPARE = ("default", "no-captions", "no-glossary", "dense", "rrf")


def parse_config(spec: str, base: RetrievalSettings) -> tuple[str, RetrievalSettings]:
    """``NAME`` (a preset), ``key=value,...`` or ``NAME:key=value,...`` -> settings."""
    name, _, rest = spec.partition(":") if ":" in spec else ("", "", spec)
    overrides: dict[str, Any] = {}
    if "=" not in rest:  # a bare preset name
        name, rest = rest.strip(), ""
    if name:
        if name in PRESETS:
            overrides.update(PRESETS[name])
        elif not rest:
            raise UnsupportedInput(spec, "unknown configuration; presets: "
                                   + ", ".join(PRESETS) + ", or key=value pairs of [retrieval]")
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or key not in RetrievalSettings.model_fields:
            raise UnsupportedInput(spec, f"{key!r} is not a [retrieval] setting")
        overrides[key] = value.strip()
    try:
        settings = RetrievalSettings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise UnsupportedInput(spec, exc.errors()[0]["msg"]) from exc
    return name or spec, settings


def _kind(q: dict[str, Any]) -> str:
    return str(q.get("kind") or ("image" if "query_image" in q else "text"))


def _scores(entries: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(entries)
    ranks = [q["rank"] for q in entries]
    return {
        "n": n,
        "recall@1": sum(1 for r in ranks if r == 1) / n if n else 0.0,
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n if n else 0.0,
        "mrr": sum(1.0 / r for r in ranks if r) / n if n else 0.0,
    }


async def _rank_all(service: PixRAG, scope: Scope, path: Path, queries: list[dict[str, Any]],
                    k: int, retriever: Retriever | None) -> list[dict[str, Any]]:
    per_query: list[dict[str, Any]] = []
    for q in queries:
        if "query" in q:
            if retriever is None:
                hits = await service.search(str(q["query"]), scope, k)
            else:
                hits = await retriever.search_text(normalize_text(str(q["query"])), scope, k)
            entry: dict[str, Any] = {"query": q["query"]}
        else:
            img = Path(str(q["query_image"]))
            img = img if img.is_absolute() else path.parent / img
            try:
                data = img.read_bytes()
            except OSError as exc:
                raise UnsupportedInput(str(img), f"cannot read query image ({exc})") from exc
            if retriever is None:
                hits = await service.similar(data, scope, k, name=img.name)
            else:
                hits, _ = await retriever.search_image(data, img.name, scope, k)
            entry = {"query_image": q["query_image"]}
        wanted = _targets(q["target"])
        sources = [h.source for h in hits]
        rank = next((i for i, s in enumerate(sources, 1) if Path(s).name in wanted), None)
        entry.update(target=q["target"], rank=rank, results=sources)
        per_query.append(entry)
    return per_query


def by_kind(queries: list[dict[str, Any]], per_query: list[dict[str, Any]]
            ) -> dict[str, dict[str, Any]]:
    """Scores per query kind (an entry's ``"kind"``; else "text" or "image")."""
    kinds = [_kind(q) for q in queries]
    return {kind: _scores([e for e, k in zip(per_query, kinds, strict=True) if k == kind])
            for kind in sorted(set(kinds))}


def _select(queries: list[dict[str, Any]], split: str | None, path: Path
            ) -> list[dict[str, Any]]:
    if split is None:
        return queries
    chosen = [q for q in queries if q.get("split") == split]
    if not chosen:  # a typo in --split must not read as a recall of 0
        splits = sorted({str(q["split"]) for q in queries if "split" in q})
        raise UnsupportedInput(str(path), f"no entry has \"split\": {json.dumps(split)} ("
                               + (f"the splits are: {', '.join(splits)})" if splits
                                  else "no entry has a \"split\")"))
    return chosen


async def run_eval(service: PixRAG, scope: Scope, path: Path, *, k: int = 10,
                   split: str | None = None, with_kinds: bool = False) -> dict[str, Any]:
    """``{"n", "recall@1", "recall@5", "mrr", "per_query"}`` (the documented ``--json``
    shape), plus ``"by_kind"`` scores when ``with_kinds``."""
    queries = _select(load_queries(path), split, path)
    await _warn_other_paths(service, scope.space, path, queries)
    per_query = await _rank_all(service, scope, path, queries, max(k, 5), None)
    out = {**_scores(per_query), "per_query": per_query}
    if with_kinds:
        out["by_kind"] = by_kind(queries, per_query)
    return out


async def compare(service: PixRAG, scope: Scope, path: Path, specs: list[str], *,
                  k: int = 10, split: str | None = None) -> dict[str, Any]:
    """The same queries under several retrieval configurations, in one process over one
    index: ``{"configs": [{"name", "settings", "n", "recall@1", ..., "by_kind"}]}``."""
    queries = _select(load_queries(path), split, path)
    base = service.settings.retrieval
    configs = [parse_config(s, base) for s in (specs or DEFAULT_COMPARE)]
    await _warn_other_paths(service, scope.space, path, queries)
    out = []
    for name, settings in configs:
        changed = {key: value for key, value in settings.model_dump().items()
                   if value != getattr(base, key)}
        per_query = await _rank_all(service, scope, path, queries, max(k, 5),
                                    service.with_retrieval(settings))
        out.append({"name": name, "settings": changed, **_scores(per_query),
                    "by_kind": by_kind(queries, per_query)})
    return {"configs": out}


async def _warn_other_paths(service: PixRAG, space: str, path: Path,
                            queries: list[dict[str, Any]]) -> None:
    """Warn when a labelled target's bytes are indexed under another file name: results then
    name that other file and the query counts as a miss (e.g. an example image that is
    byte-identical to an eval image, indexed first into the same store)."""
    wanted = set().union(*(_targets(q["target"]) for q in queries)) if queries else set()
    # Bounded: an eval file left in a big folder (a home directory) must not stall the run.
    near = itertools.islice(path.parent.rglob("*"), MAX_SCAN)
    files = [f for f in near if f.name in wanted and f.is_file()]
    lib = service.library

    def lookup() -> list[tuple[Path, str]]:
        found = []
        for f in files:
            source = lib.catalog.file_done(space, hashlib.sha256(f.read_bytes()).hexdigest())
            if source is not None and Path(source).name != f.name:
                found.append((f, source))
        return found

    others = await lib.read("looking up eval files", lookup)
    if others:
        f, source = others[0]
        log.warning("%d labelled target file(s) are indexed under other names, so their "
                    "queries cannot match (e.g. %s is indexed as %s): index the eval set into "
                    "its own --data-dir", len(others), f, source)
