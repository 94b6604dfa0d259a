"""How soon is a chat upload findable? In-process, model loaded, default configuration (OCR on).

For each of N single uploads (a photo, then a slide, alternating), the time from calling
``index_uploads`` until it returns with the item committed (then checked: ``similar`` on the
same bytes returns it, by CLIP + near-duplicate search), compared with the time until its text
is searchable too (the old one-phase path had
to finish OCR, text vectors and keyword rows first). Uses a random CLIP with the real ViT-B/32
sizes (weights do not change the timing).

    python benchmarks/upload_latency.py [--uploads 10] [--model-dir /tmp/pixrag-bench-clip]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.normal(128, 40, (60, 80, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(small).resize((1600, 1200), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def slide(seed: int) -> bytes:
    rng = np.random.default_rng(seed + 1000)
    img = Image.new("RGB", (1280, 720), tuple(int(v) for v in rng.integers(200, 256, 3)))
    d = ImageDraw.Draw(img)
    # A chart of its own on every slide, so no two slides are near-duplicates of each other.
    for i in range(8):
        h = int(rng.integers(40, 300))
        d.rectangle([700 + 60 * i, 650 - h, 740 + 60 * i, 650],
                    fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
    try:
        f = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    except OSError:
        f = ImageFont.load_default()
    d.text((60, 60), f"Quarterly review {seed}", fill="black", font=f)
    for i in range(5):
        d.text((80, 180 + 80 * i), f"- point {i} about pricing tier {seed + i}", fill="black",
               font=f)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    from core.app import open_service
    from core.config import Secrets, load_settings
    from core.types import Scope, Upload
    from tests.clipmodel import build_clip

    model = args.model_dir
    if not (model / "config.json").exists():
        build_clip(model, real_sizes=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, environ={
            "PIXRAG_EMBEDDING__MODEL": str(model), "PIXRAG_ANSWER__PROVIDER": "none",
            "PIXRAG_RETRIEVAL__MIN_CLIP_IMAGE": "-1"}, data_dir=Path(tmp) / "data")
        async with open_service(settings, Secrets({})) as svc:
            # Load every model first: the figure is for a running bot, not a cold start.
            await svc.index_uploads([Upload("warm.png", slide(999), "chat:warm")], "bench",
                                    wait=True)
            findable: list[float] = []
            searchable: list[float] = []
            for n in range(args.uploads):
                data = photo(n) if n % 2 == 0 else slide(n)
                start = time.perf_counter()
                rep = await svc.index_uploads([Upload(f"u{n}", data, f"chat:{n}")], "bench")
                findable.append(time.perf_counter() - start)  # committed: search sees it now
                # ... which this checks (the query's own cost, OCR of the query image
                # included, is not part of the figure).
                hits = await svc.similar(data, Scope("bench"), k=3)
                assert rep.indexed[0].id in {h.id for h in hits}
                await svc.wait_enriched()
                searchable.append(time.perf_counter() - start)
    return {
        "uploads": args.uploads,
        "findable_s": {"median": round(statistics.median(findable), 3),
                       "max": round(max(findable), 3)},
        "text_searchable_s": {"median": round(statistics.median(searchable), 3),
                              "max": round(max(searchable), 3)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=10)
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/pixrag-bench-clip"))
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
