"""Retrieval quality with and without captions, on the eval set, in one run.

Indexes ``eval/images`` with captions on, the captions served by ``eval/vlm_server.py`` (the
hand-written descriptions a vision model would give, matched to each image by a signature),
then runs ``pixrag eval --compare`` configurations over the same index per split and kind.
An existing data directory that was indexed without captions is re-captioned in place (OCR is
not repeated), which is how the figures in docs/BENCHMARKS.md were made:

    pixrag --data-dir /tmp/evalidx index eval/images            # once: OCR, ~8 min on 2 cores
    PIXRAG_EMBEDDING__MODEL=<clip folder> \\
        python benchmarks/caption_quality.py --data-dir /tmp/evalidx

Prints one JSON document: per split, per configuration, R@1/R@5/MRR overall and per kind, and
the number of caption requests per image (1 each: captions are cached by content).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.app import open_service  # noqa: E402
from core.config import Secrets, load_settings  # noqa: E402
from core.evaluate import compare  # noqa: E402
from core.types import Scope  # noqa: E402
from eval.vlm_server import CaptionBook, VisionServer  # noqa: E402

CONFIGS = ["default", "no-captions", "no-glossary", "captions-only", "dense", "rrf"]


async def run(data_dir: Path, files: list[Path], configs: list[str]) -> dict[str, Any]:
    queries: list[dict[str, Any]] = []
    for f in files:
        queries += [q for q in json.loads(f.read_text(encoding="utf-8")) if "query" in q]
    async with VisionServer(CaptionBook.load()) as vlm:
        env = {"PIXRAG_INDEX__CAPTIONS": "true", "PIXRAG_ANSWER__PROVIDER": "openai-compatible",
               "PIXRAG_ANSWER__BASE_URL": vlm.base_url, "PIXRAG_ANSWER__MODEL": "eval-captions",
               "PIXRAG_ANSWER__MAX_RETRIES": "0"}
        settings = load_settings(None, environ={**os.environ, **env}, data_dir=data_dir)
        async with open_service(settings, Secrets({})) as svc:
            report = await svc.index_paths([ROOT / "eval" / "images"], "local")
            again = await svc.recaption([], "local")
            stats = await svc.stats("local")
            out: dict[str, Any] = {
                "items": stats.items, "without_caption": stats.without_caption,
                "indexed_now": len(report.indexed), "recaptioned": len(again.indexed),
                "caption_requests_max_per_image": max(vlm.requests.values(), default=0),
                "caption_requests": sum(vlm.requests.values()), "splits": {}}
            with tempfile.TemporaryDirectory() as tmp:
                qfile = Path(tmp) / "queries.json"
                qfile.write_text(json.dumps(queries), encoding="utf-8")
                for split in ("dev", "test", None):
                    table = await compare(svc, Scope("local", admin=True), qfile, configs,
                                          split=split)
                    out["splits"][split or "all"] = table["configs"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--files", type=Path, nargs="+",
                        default=[ROOT / "eval" / "eval.json", ROOT / "eval" / "eval_extra.json"])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    args = parser.parse_args()
    result = asyncio.run(run(args.data_dir, args.files, args.configs))
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
