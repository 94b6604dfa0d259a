"""Tune retrieval fusion on the labelled eval set (dev split), report dev and test.

Collects each signal's ranked candidates once per query through the real service, then scores
fusion settings offline. Usage (after `pixrag --data-dir D index eval/images`):

    PIXRAG_DATA_DIR=D PIXRAG_EMBEDDING__MODEL=<clip> python benchmarks/tune_fusion.py eval/eval.json
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

from core.app import open_service
from core.config import Secrets, load_settings
from core.retrieve import fuse
from core.types import Scope


async def collect(eval_file: Path) -> list[dict]:
    settings = load_settings(None)
    queries = json.loads(eval_file.read_text())
    out = []
    async with open_service(settings, Secrets({})) as svc:
        r = svc._retriever
        scope = Scope("local", admin=True)
        rows = {row.id: row for row in svc.c.catalog.all("local")}
        for q in queries:
            if "query" not in q:
                continue
            lists, _ = await r._text_signals(q["query"], scope, with_clip=True)
            targets = set(q["target"] if isinstance(q["target"], list) else [q["target"]])
            out.append({"query": q["query"], "split": q.get("split", "dev"),
                        "targets": [i for i, row in rows.items() if row.name in targets],
                        "lists": lists})
    return out


def evaluate(data: list[dict], weights: dict, rrf_k: float, split: str) -> tuple[float, float]:
    r1 = r5 = n = 0
    for d in data:
        if split != "all" and d["split"] != split:
            continue
        n += 1
        ranked = [f.item for f in fuse(d["lists"], weights, rrf_k)]
        pos = next((i for i, it in enumerate(ranked, 1) if it in d["targets"]), None)
        r1 += pos == 1
        r5 += pos is not None and pos <= 5
    return r1 / n, r5 / n


def signal_ranks(data: list[dict]) -> None:
    for s in ("text", "keyword", "clip"):
        r1 = sum(1 for d in data if d["lists"][s] and d["lists"][s][0][0] in d["targets"])
        print(f"{s:8} alone: R@1 {r1 / len(data):.3f}")


def main() -> None:
    data = asyncio.run(collect(Path(sys.argv[1])))
    signal_ranks(data)
    best = []
    for wc, wt, wk, k in itertools.product([0, 0.1, 0.25, 0.5], [0.5, 1, 1.5, 2],
                                           [0.5, 1, 1.5, 2], [1, 3, 10, 30, 60]):
        w = {"clip": wc, "text": wt, "keyword": wk}
        dev = evaluate(data, w, k, "dev")
        best.append((dev, w, k))
    best.sort(key=lambda b: (-b[0][0], -b[0][1]))
    for dev, w, k in best[:10]:
        print(f"dev R@1 {dev[0]:.3f} R@5 {dev[1]:.3f}  test {evaluate(data, w, k, 'test')}  {w} k={k}")


if __name__ == "__main__":
    main()
