"""Fusion study on the labelled eval set: each signal alone, naive RRF, tuned RRF, score fusion.

Collects each signal's ranked candidates once per query through the real service, then ranks
offline (no cut-off, no collapse), so settings can be compared on the same candidates.
The defaults in core/config.py were chosen on the "dev" split; "test" is the held-out check.

    pixrag --data-dir D index eval/images
    PIXRAG_DATA_DIR=D PIXRAG_EMBEDDING__MODEL=<clip> \
        python benchmarks/tune_fusion.py eval/eval.json eval/eval_extra.json
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.app import open_service
from core.config import RetrievalSettings, Secrets, load_settings
from core.retrieve import fuse, fuse_scores
from core.types import Scope

Ranker = Callable[[dict[str, list[tuple[str, float]]]], list[str]]


async def collect(files: list[Path]) -> list[dict[str, Any]]:
    settings = load_settings(None)
    out = []
    async with open_service(settings, Secrets({})) as svc:
        r = svc._retriever
        scope = Scope("local", admin=True)
        rows = {row.id: row for row in svc.library.catalog.all("local")}
        for f in files:
            for q in json.loads(f.read_text()):
                if "query" not in q:
                    continue
                lists, _ = await r._text_signals(q["query"], scope, with_clip=True)
                targets = set(q["target"] if isinstance(q["target"], list) else [q["target"]])
                out.append({"split": q.get("split", "dev"), "lists": lists,
                            "targets": {i for i, row in rows.items() if row.name in targets}})
    return out


def evaluate(data: list[dict[str, Any]], rank: Ranker, split: str = "all") -> tuple[float, float]:
    r1 = r5 = n = 0
    for d in data:
        if split != "all" and d["split"] != split:
            continue
        n += 1
        ranked = rank(d["lists"])
        pos = next((i for i, it in enumerate(ranked, 1) if it in d["targets"]), None)
        r1 += pos == 1
        r5 += pos is not None and pos <= 5
    return round(r1 / n, 3), round(r5 / n, 3)


def rrf(weights: dict[str, float], k: float) -> Ranker:
    return lambda lists: [f.item for f in fuse(lists, weights, k)]


def scores(weights: dict[str, float], floor: float) -> Ranker:
    return lambda lists: [f.item for f in fuse_scores(lists, weights, clip_floor=floor)]


def only(signal: str) -> Ranker:
    return lambda lists: [i for i, _ in lists.get(signal, [])]


def main() -> None:
    data = asyncio.run(collect([Path(p) for p in sys.argv[1:]]))
    d = RetrievalSettings()
    default_w = {"text": d.weight_text, "keyword": d.weight_keyword, "clip": d.weight_clip}
    rows: list[tuple[str, Ranker]] = [
        ("text (MiniLM) alone", only("text")),
        ("keyword (BM25) alone", only("keyword")),
        ("clip alone", only("clip")),
        ("naive RRF (equal weights, k=60)", rrf({"text": 1, "keyword": 1, "clip": 1}, 60)),
        ("score fusion (defaults)", scores(default_w, d.min_clip)),
    ]
    grid = [({"text": t, "keyword": kw, "clip": c}, k) for t, kw, c, k in
            itertools.product([1, 1.5, 2], [0.5, 1], [0, 0.25], [1, 10, 60])]
    best = max(grid, key=lambda wk: evaluate(data, rrf(*wk), "dev"))
    rows.append((f"RRF tuned on dev {best[0]} k={best[1]}", rrf(*best)))
    print(f"{len(data)} queries ({sum(x['split'] == 'dev' for x in data)} dev)")
    print(f"{'method':58} {'dev R@1/R@5':>14} {'test R@1/R@5':>14} {'all R@1/R@5':>14}")
    for name, ranker in rows:
        cells = [evaluate(data, ranker, s) for s in ("dev", "test", "all")]
        print(f"{name:58} " + " ".join(f"{a:>7.3f}/{b:.3f}" for a, b in cells))
    for wk in (0.0, 0.03, 0.05, 0.07, 0.1, 0.15):
        w = dict(default_w, keyword=wk)
        cells = [evaluate(data, scores(w, d.min_clip), s) for s in ("dev", "test", "all")]
        print(f"{'  score fusion, keyword weight ' + str(wk):58} "
              + " ".join(f"{a:>7.3f}/{b:.3f}" for a, b in cells))


if __name__ == "__main__":
    main()
