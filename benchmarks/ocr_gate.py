"""The OCR gate: CPU per image with and without it, and the words it would lose.

    python benchmarks/ocr_gate.py [--photos 12] [--eval-limit 0] [--json out.json]

Three readers read the same images: the default ``RapidReader()`` (gate, and large text read
from the gate's own regions), ``RapidReader(reuse_px=0)`` (gate, then always the full-size
detector) and ``RapidReader(gate=False)`` (the full reader):
- photos without text: synthetic natural-photo-like JPEGs from 1 to 12 MP
  (``benchmarks/synthetic.py``) and scikit-learn's two sample photos when it is installed;
- images with text: every image of ``eval/images`` (slides, terminal screenshots, charts),
  plus a slide, a terminal, a scanned document page, a phone screenshot, a full-HD desktop
  screenshot with 13 px UI text and a photo with a street sign.

For each image: CPU seconds of each read (process time, all threads), and for images with
text the words of the full read that the default read lacks (as a multiset: 0 means no text
is lost), also counted as "real" words only (at least 3 letters or digits: not bullets, icons
or one-letter junk). Prints a table and one JSON document.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import synthetic  # noqa: E402
from PIL import Image  # noqa: E402

from core.media.ocr import RapidReader  # noqa: E402


def _timed(reader: RapidReader, image: Image.Image) -> tuple[str, float, float]:
    c, t = time.process_time(), time.perf_counter()
    text = reader.read(image)
    return text, time.process_time() - c, time.perf_counter() - t


def real(words: list[str]) -> list[str]:
    return [w for w in words if sum(ch.isalnum() for ch in w) >= 3]


def lost_words(full: str, gated: str) -> list[str]:
    missing = collections.Counter(full.split()) - collections.Counter(gated.split())
    return sorted(missing.elements())


def images(n_photos: int, eval_limit: int) -> list[tuple[str, str, Image.Image]]:
    """(group, name, image): group "photo" has no text, "text" has some."""
    out: list[tuple[str, str, Image.Image]] = []
    sizes = synthetic.PHOTO_SIZES
    for i in range(n_photos):
        size = sizes[i % len(sizes)]
        out.append(("photo", f"photo_{i:02d}_{size[0]}x{size[1]}.jpg",
                    synthetic.as_jpeg(synthetic.photo(i, size))))
    for name, im in synthetic.sklearn_photos():
        out.append(("photo", name, im))
        big = im.resize((im.width * 3, im.height * 3), Image.Resampling.BICUBIC)
        out.append(("photo", f"{name} x3 upscaled", synthetic.as_jpeg(big)))
    out += [("text", "slide 1280x720", synthetic.slide(0)),
            ("text", "terminal 1280x720", synthetic.terminal()),
            ("text", "document page 1190x1684", synthetic.document_page()),
            ("text", "phone screenshot 1080x2340", synthetic.phone_screenshot()),
            ("text", "desktop 1920x1080, 13 px UI", synthetic.desktop_screenshot()),
            ("text", "photo with a sign 2048x1536",
             synthetic.as_jpeg(synthetic.photo_with_sign(1)))]
    paths = sorted((ROOT / "eval" / "images").glob("*.png"))
    if eval_limit:
        paths = paths[:max(eval_limit, 0)]
    for p in paths:
        with Image.open(p) as im:
            out.append(("eval", p.name, im.convert("RGB")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=12, help="synthetic photos (1-12 MP)")
    ap.add_argument("--eval-limit", type=int, default=0,
                    help="first N eval images (0 = all, -1 = none)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    gated, plain = RapidReader(), RapidReader(gate=False)
    gate_only = RapidReader(reuse_px=0)
    warm = synthetic.slide(1)
    for reader in (gated, plain, gate_only):
        reader.read(warm)  # model load and onnxruntime warm-up outside the figures
    load_start = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    for group, name, image in images(args.photos, args.eval_limit):
        has = gated.has_text(image)
        text_g, cpu_g, wall_g = _timed(gated, image)
        _, cpu_o, _ = _timed(gate_only, image)
        text_p, cpu_p, wall_p = _timed(plain, image)
        lost = lost_words(text_p, text_g)
        row = {"group": group, "name": name, "size": list(image.size), "has_text": has,
               "cpu_s_gated": round(cpu_g, 3), "cpu_s_gate_then_full": round(cpu_o, 3),
               "cpu_s_ungated": round(cpu_p, 3),
               "wall_s_gated": round(wall_g, 3), "wall_s_ungated": round(wall_p, 3),
               "words_ungated": len(text_p.split()), "words_gated": len(text_g.split()),
               "lost": lost, "lost_real": real(lost), "same_text": text_g == text_p}
        rows.append(row)
        print(f"{group:5} {name:34} text={has!s:5} cpu {cpu_g:6.2f} s, gate+full {cpu_o:6.2f}"
              f" s, full {cpu_p:6.2f} s; words {row['words_gated']}/{row['words_ungated']}"
              f" lost {len(lost)} ({len(row['lost_real'])} real)", flush=True)

    summary: dict[str, Any] = {"cores": os.cpu_count(), "load_avg_start": round(load_start, 2),
                               "load_avg_end": round(os.getloadavg()[0], 2)}
    for group in ("photo", "text", "eval"):
        sel = [r for r in rows if r["group"] == group]
        if not sel:
            continue
        summary[group] = {
            "images": len(sel),
            "gate_says_text": sum(r["has_text"] for r in sel),
            "cpu_s_per_image_gated": round(statistics.mean(r["cpu_s_gated"] for r in sel), 3),
            "cpu_s_per_image_gate_then_full": round(
                statistics.mean(r["cpu_s_gate_then_full"] for r in sel), 3),
            "cpu_s_per_image_ungated": round(statistics.mean(r["cpu_s_ungated"] for r in sel), 3),
            "words_ungated": sum(r["words_ungated"] for r in sel),
            "words_lost": sum(len(r["lost"]) for r in sel),
            "real_words_lost": sum(len(r["lost_real"]) for r in sel),
            "identical_text": sum(r["same_text"] for r in sel),
        }
    print(f"\n{'group':6} {'images':>6} {'gate: text':>10} {'CPU s/img default':>17}"
          f" {'gate+full':>9} {'full':>6} {'words':>7} {'lost':>5} {'real':>5} {'identical':>9}")
    for group in ("photo", "text", "eval"):
        if group in summary:
            s = summary[group]
            print(f"{group:6} {s['images']:6} {s['gate_says_text']:10}"
                  f" {s['cpu_s_per_image_gated']:17.2f} {s['cpu_s_per_image_gate_then_full']:9.2f}"
                  f" {s['cpu_s_per_image_ungated']:6.2f} {s['words_ungated']:7}"
                  f" {s['words_lost']:5} {s['real_words_lost']:5} {s['identical_text']:9}")
    print(f"load average {summary['load_avg_start']} at start, {summary['load_avg_end']} at end,"
          f" {summary['cores']} cores")
    result = {"summary": summary, "images": rows}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
