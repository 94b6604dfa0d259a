"""onnxruntime's threads spinning between OCR runs (its default) against sleeping (PixRAG's).

    python benchmarks/ocr_threads.py [--photos 30] [--slides 10] [--rounds 3] [--json out.json]

The default ``RapidReader()`` reads the same photo-like 1280x960 JPEGs (no text) and text
slides in fresh processes, alternating: "quiet" is the product as shipped (threads sleep
between runs, ``core.media.ocr._quiet_threads``); "spin" is the same code with that one step
left out, i.e. onnxruntime's default. Reports wall and CPU seconds (user + system, all
threads) of the reads and the characters read (they must be the same), per round and as
medians, and one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import io, json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import synthetic
import core.media.ocr as ocr
from PIL import Image
if sys.argv[1] == "spin":
    ocr._quiet_threads = lambda: None
images = []
for i in range(int(sys.argv[2])):
    buf = io.BytesIO()
    synthetic.photo(i, (1280, 960)).save(buf, "JPEG", quality=88)
    buf.seek(0)
    images.append(Image.open(buf).convert("RGB"))
images += [synthetic.slide(i) for i in range(int(sys.argv[3]))]
reader = ocr.RapidReader()
reader.read(images[-1])  # both models loaded
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
c, t = cpu(), time.perf_counter()
chars = sum(len(reader.read(im)) for im in images)
print(json.dumps({{"wall_s": time.perf_counter() - t, "cpu_s": cpu() - c, "chars": chars}}))
"""


def run(mode: str, photos: int, slides: int) -> dict[str, Any]:
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"))
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", code, mode, str(photos), str(slides)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=30)
    ap.add_argument("--slides", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"spin": [], "quiet": []}
    for r in range(args.rounds):
        for mode in ("spin", "quiet"):
            res = run(mode, args.photos, args.slides)
            runs[mode].append(res)
            print(f"round {r + 1} {mode:5s}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s,"
                  f" {res['chars']} characters", flush=True)
    summary = {m: {k: round(statistics.median(x[k] for x in v), 2) for k in ("wall_s", "cpu_s")}
               for m, v in runs.items()}
    same = len({x["chars"] for v in runs.values() for x in v}) == 1
    print(f"\nmedians, {args.photos} photos + {args.slides} slides, {os.cpu_count()} cores:")
    for m, v in summary.items():
        print(f"  {m:5s}: wall {v['wall_s']:.1f} s, CPU {v['cpu_s']:.1f} s")
    print(f"  quiet / spin: wall {summary['quiet']['wall_s'] / summary['spin']['wall_s']:.2f},"
          f" CPU {summary['quiet']['cpu_s'] / summary['spin']['cpu_s']:.2f};"
          f" same text: {same}")
    doc = {"photos": args.photos, "slides": args.slides, "cores": os.cpu_count(),
           "runs": runs, "medians": summary, "same_text": same}
    print(json.dumps(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
