"""``pixrag eval``: recall@1, recall@5 and MRR of labelled queries against the live index."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UnsupportedInput
from core.types import Scope

if TYPE_CHECKING:
    from core.service import PixRAG

log = logging.getLogger(__name__)

MAX_SCAN = 20_000  # files looked at next to the eval file for the shared-store warning


def load_queries(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UnsupportedInput(str(path), "file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsupportedInput(str(path), f"not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise UnsupportedInput(str(path), "expected a JSON list of queries")
    for n, q in enumerate(data, 1):
        if not isinstance(q, dict) or ("query" in q) == ("query_image" in q) or "target" not in q:
            raise UnsupportedInput(str(path), f"entry {n}: needs \"target\" and exactly one of "
                                   "\"query\" or \"query_image\"")
    return data


def _targets(target: Any) -> set[str]:
    names = target if isinstance(target, list) else [target]
    return {Path(str(t)).name for t in names}


async def run_eval(service: PixRAG, scope: Scope, path: Path, *, k: int = 10) -> dict[str, Any]:
    queries = load_queries(path)
    await _warn_other_paths(service, scope.space, path, queries)
    k = max(k, 5)
    per_query: list[dict[str, Any]] = []
    for q in queries:
        if "query" in q:
            hits = await service.search(str(q["query"]), scope, k)
            entry: dict[str, Any] = {"query": q["query"]}
        else:
            img = Path(str(q["query_image"]))
            img = img if img.is_absolute() else path.parent / img
            try:
                data = img.read_bytes()
            except OSError as exc:
                raise UnsupportedInput(str(img), f"cannot read query image ({exc})") from exc
            hits = await service.similar(data, scope, k, name=img.name)
            entry = {"query_image": q["query_image"]}
        wanted = _targets(q["target"])
        sources = [h.source for h in hits]
        rank = next((i for i, s in enumerate(sources, 1) if Path(s).name in wanted), None)
        entry.update(target=q["target"], rank=rank, results=sources)
        per_query.append(entry)
    n = len(per_query)
    ranks = [q["rank"] for q in per_query]
    return {
        "n": n,
        "recall@1": sum(1 for r in ranks if r == 1) / n if n else 0.0,
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n if n else 0.0,
        "mrr": sum(1.0 / r for r in ranks if r) / n if n else 0.0,
        "per_query": per_query,
    }


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
