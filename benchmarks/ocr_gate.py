"""The OCR gate: CPU per image with and without it, and the words it would lose.

    python benchmarks/ocr_gate.py [--photos 12] [--eval-limit 0] [--json out.json]

Four readers read the same images: the default ``RapidReader()`` (gate, and large text read
from the gate's own regions), ``RapidReader(int8=True)`` (the same with the gate's detector in
8 bits, ``[index] ocr_int8``), ``RapidReader(reuse_px=0)`` (gate, then always the full-size
detector) and ``RapidReader(gate=False)`` (the full reader, the reference):
- photos without text: synthetic natural-photo-like JPEGs from 1 to 12 MP
  (``benchmarks/synthetic.py``) and scikit-learn's two sample photos when it is installed;
- photos with a sign (1, 3 and 12 MP; letters 2.5, 4 and 6% of the height), counted as read
  when the whole sign is in the text;
- images with text: every image of ``eval/images`` (slides, terminal screenshots, charts),
  plus a slide, a terminal, a scanned document page, a phone screenshot, a full-HD desktop
  screenshot with 13 px UI text and a photo with a street sign.

For each image: CPU seconds of each read (process time, all threads), and for images with
text the words of the full read that the default read (and the 8-bit gate's read) lacks (as
a multiset: 0 means no text is lost), also counted as "real" words only (at least 3 letters or
digits: not bullets, icons or one-letter junk). Prints a table and one JSON document.
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


#: Sign photos: the text each one shows, by name.
SIGN_TEXT: dict[str, str] = {}


def images(n_photos: int, eval_limit: int, signs: int = 0) -> list[tuple[str, str, Image.Image]]:
    """(group, name, image): group "photo" has no text, "text" and "eval" have some, "sign"
    is a photo with one sign (its text in ``SIGN_TEXT``)."""
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
    i = 0
    for size in ((1280, 960), (2048, 1536), (4032, 3024)):
        for share in (0.025, 0.04, 0.06):
            for _ in range(signs):
                image, text = synthetic.photo_with_sign_text(i, size, share)
                name = f"sign {size[0]}x{size[1]} {share:.3f} #{i}"
                SIGN_TEXT[name] = text
                out.append(("sign", name, synthetic.as_jpeg(image)))
                i += 1
    paths = sorted((ROOT / "eval" / "images").glob("*.png"))
    if eval_limit:
        paths = paths[:max(eval_limit, 0)]
    for p in paths:
        with Image.open(p) as im:
            out.append(("eval", p.name, im.convert("RGB")))
    return out


#: (key, label, reader options): the reference full reader is the last one.
READERS = [
    ("default", "default", {}),
    ("int8_gate", "8-bit gate", {"int8": True}),
    ("gate_then_full", "gate+full", {"reuse_px": 0}),
    ("full", "full", {"gate": False}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=12, help="synthetic photos (1-12 MP)")
    ap.add_argument("--eval-limit", type=int, default=0,
                    help="first N eval images (0 = all, -1 = none)")
    ap.add_argument("--signs", type=int, default=2,
                    help="photos with a sign per size (1, 3, 12 MP) and letter height (2.5, 4,"
                         " 6%% of the photo's height)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    readers = {key: RapidReader(**opts) for key, _, opts in READERS}
    warm = synthetic.slide(1)
    for reader in readers.values():
        reader.read(warm)  # model load and onnxruntime warm-up outside the figures
    load_start = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    for group, name, image in images(args.photos, args.eval_limit, args.signs):
        row: dict[str, Any] = {"group": group, "name": name, "size": list(image.size),
                               "has_text": readers["default"].has_text(image)}
        texts: dict[str, str] = {}
        for key, reader in readers.items():
            texts[key], cpu, wall = _timed(reader, image)
            row[f"cpu_s_{key}"] = round(cpu, 3)
            row[f"wall_s_{key}"] = round(wall, 3)
            row[f"words_{key}"] = len(texts[key].split())
        if group == "sign":  # the whole sign, in one reading or another
            for key in readers:
                row[f"sign_read_{key}"] = all(w in texts[key] for w in SIGN_TEXT[name].split())
        for key in ("default", "int8_gate"):
            lost = lost_words(texts["full"], texts[key])
            row[f"lost_{key}"] = lost
            row[f"lost_real_{key}"] = real(lost)
            row[f"same_text_{key}"] = texts[key] == texts["full"]
        rows.append(row)
        print(f"{group:5} {name:34} text={row['has_text']!s:5} CPU s "
              + ", ".join(f"{label} {row[f'cpu_s_{key}']:.2f}" for key, label, _ in READERS)
              + f"; words {row['words_default']}/{row['words_full']},"
              f" real words lost {len(row['lost_real_default'])}"
              f" (8-bit gate {len(row['lost_real_int8_gate'])})", flush=True)

    summary: dict[str, Any] = {"cores": os.cpu_count(), "load_avg_start": round(load_start, 2),
                               "load_avg_end": round(os.getloadavg()[0], 2)}
    for group in ("photo", "sign", "text", "eval"):
        sel = [r for r in rows if r["group"] == group]
        if not sel:
            continue
        g: dict[str, Any] = {"images": len(sel), "gate_says_text": sum(r["has_text"] for r in sel),
                             "words_full": sum(r["words_full"] for r in sel)}
        for key, _, _ in READERS:
            g[f"cpu_s_per_image_{key}"] = round(statistics.mean(r[f"cpu_s_{key}"] for r in sel), 3)
        for key in ("default", "int8_gate"):
            g[f"words_lost_{key}"] = sum(len(r[f"lost_{key}"]) for r in sel)
            g[f"real_words_lost_{key}"] = sum(len(r[f"lost_real_{key}"]) for r in sel)
            g[f"identical_text_{key}"] = sum(r[f"same_text_{key}"] for r in sel)
        if group == "sign":
            for key, _, _ in READERS:
                g[f"signs_read_{key}"] = sum(r[f"sign_read_{key}"] for r in sel)
        summary[group] = g
    print("\nCPU s per image, and words lost against the full reader (all / 3+ letters)")
    print(f"{'group':6} {'images':>6} {'text':>5} "
          + " ".join(f"{label:>10}" for _, label, _ in READERS)
          + f" {'words':>6} {'lost':>10} {'lost 8-bit gate':>15}")
    for group in ("photo", "sign", "text", "eval"):
        if group in summary:
            g = summary[group]
            print(f"{group:6} {g['images']:6} {g['gate_says_text']:5} "
                  + " ".join(f"{g[f'cpu_s_per_image_{key}']:10.2f}" for key, _, _ in READERS)
                  + f" {g['words_full']:6}"
                  f" {g['words_lost_default']:4} / {g['real_words_lost_default']:3}"
                  f" {g['words_lost_int8_gate']:8} / {g['real_words_lost_int8_gate']:3}")
    if "sign" in summary:
        g = summary["sign"]
        print(f"signs read whole (of {g['images']}): " + ", ".join(
            f"{label} {g[f'signs_read_{key}']}" for key, label, _ in READERS))
    print(f"load average {summary['load_avg_start']} at start, {summary['load_avg_end']} at end,"
          f" {summary['cores']} cores")
    result = {"summary": summary, "images": rows}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
