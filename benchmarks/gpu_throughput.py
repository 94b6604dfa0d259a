"""GPU throughput, run by ``benchmarks/gpu.sh``: images/s end to end and CLIP forward alone.

    python benchmarks/gpu_throughput.py [--images 512] [--device cuda] [--json out.json]

- end to end: ``pixrag index FOLDER`` as a whole process (defaults: OCR on, with its gate) on
  generated photo-like JPEGs (a tenth of them text slides), a fresh data directory;
- forward alone: the CLIP image tower (``ClipEmbedder.embed_pixels``) at batch 64 and 256 in
  the model's dtype on the device (fp16 on CUDA), after warm-up, synchronised.

The model is a random-weight CLIP with the real ViT-B/32 sizes built locally (speed does not
depend on weight values): nothing is downloaded, it runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for key, value in {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
                   "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import synthetic  # noqa: E402


def forward_alone(model_dir: Path, device: str, batches: list[int], repeats: int) -> dict:
    import torch

    from core.models.clip import ClipEmbedder

    clip = ClipEmbedder(str(model_dir), device=device)
    # The model's own preprocessing gives the input shape (224 px for ViT-B/32).
    one = clip.preprocess([synthetic.photo(0, (320, 240))])
    out: dict[str, Any] = {"device": str(clip.device), "dtype": str(clip.dtype)}
    if str(clip.device).startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    for b in batches:
        pixels = np.ascontiguousarray(np.repeat(one, b, axis=0))
        clip.embed_pixels(pixels)  # warm-up (kernels, allocator)
        clip.embed_pixels(pixels)
        t = time.perf_counter()
        for _ in range(repeats):
            clip.embed_pixels(pixels)  # includes host->device copy and the result's return
        elapsed = time.perf_counter() - t
        out[f"batch_{b}_images_per_s"] = round(b * repeats / elapsed, 1)
    return out


def end_to_end(model_dir: Path, images: int, root: Path, batch: int) -> dict[str, Any]:
    folder = root / "images"
    folder.mkdir()
    t = time.perf_counter()
    for i in range(images):
        if i % 10 == 9:
            synthetic.slide(i).save(folder / f"slide_{i:05d}.png")
        else:
            synthetic.photo(i).save(folder / f"photo_{i:05d}.jpg", "JPEG", quality=88)
    made = time.perf_counter() - t
    env = {**os.environ, "PIXRAG_EMBEDDING__MODEL": str(model_dir),
           "PIXRAG_EMBEDDING__BATCH_SIZE": str(batch),
           "PIXRAG_EMBEDDING__PREPROCESS_WORKERS": str(max(2, (os.cpu_count() or 4) - 2)),
           "PIXRAG_ANSWER__PROVIDER": "none", "PIXRAG_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())",
           "--data-dir", str(root / "data"), "index", str(folder), "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"pixrag index failed:\n{proc.stderr[-3000:]}")
    indexed = len(json.loads(proc.stdout)["indexed"])
    return {"images": images, "indexed": indexed, "generate_s": round(made, 1),
            "wall_s": round(wall, 1), "images_per_s": round(indexed / wall, 2),
            "batch_size": batch, "preprocess_workers": int(
                env["PIXRAG_EMBEDDING__PREPROCESS_WORKERS"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cuda, cpu")
    ap.add_argument("--batch-size", type=int, default=256, help="[embedding] batch_size")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixrag-gpu-") as tmp:
        root = Path(tmp)
        model_dir = args.model_dir or root / "clip"
        if not (model_dir / "config.json").is_file():
            from tests.clipmodel import build_clip

            build_clip(model_dir, real_sizes=True)
        result: dict[str, Any] = {"cores": os.cpu_count()}
        try:
            import onnxruntime

            result["onnxruntime_providers"] = onnxruntime.get_available_providers()
        except ImportError:
            pass
        batches = [int(b) for b in args.batches.split(",") if b]
        result["forward"] = forward_alone(model_dir, args.device, batches, args.repeats)
        if args.images:
            result["index"] = end_to_end(model_dir, args.images, root, args.batch_size)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
