"""Image embedding throughput: a naive fp32 one-at-a-time loop vs the ingestion pipeline.

    python benchmarks/embed_throughput.py [--images 96] [--ocr-images 12] [--json out.json]

Both sides see the same synthetic 1280x960 JPEG photos and the same model folder: a
random-weight CLIP with the real ViT-B/32 sizes (built once by ``tests/clipmodel.py`` into
``--model-dir`` and reused), which runs exactly as fast as ``openai/clip-vit-base-patch32``.

- naive: the notebook way. For each file: PIL open + convert("RGB"), ``CLIPProcessor`` on that
  one image, ``CLIPModel.get_image_features`` in fp32, normalise.
- pipeline: ``open_service`` + ``PixRAG.index_paths([folder])`` end to end (read, decode,
  thumbnail, perceptual hash, preprocessing in the decode pool, micro-batched forward passes
  in the model's dtype, blob/Chroma/SQLite writes), OCR and captions off. A second, smaller
  run with OCR on shows the full indexing cost per image.
- stages: each step of the pipeline timed alone, single-threaded, on a few images, and the
  forward pass alone in fp32/bf16 at batch 1 and 32: what each idea buys.

Both sides get one warm-up forward pass outside the timed region. On a shared machine wall
times are noisy; the ratio pipeline/naive comes from the same run and is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

SIZE = (1280, 960)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


# inputs ---------------------------------------------------------------------------------------
def photo(i: int, size: tuple[int, int] = SIZE, *, text: bool = False) -> Image.Image:
    """A deterministic photo-like image: smooth colour field, noise, blurred shapes."""
    rng = np.random.default_rng(1000 + i)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(80, 400, 3)
    ph = rng.uniform(0, 6.3, 3)
    base = np.stack([128 + 90 * np.sin(x / f[0] + ph[0]), 128 + 80 * np.cos(y / f[1] + ph[1]),
                     128 + 70 * np.sin((x + y) / f[2] + ph[2])], axis=-1)
    noise = rng.normal(0, 18, (h, w, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 16))):
        cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(30, 220))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        box = (cx - r, cy - r, cx + r, cy + int(r * rng.uniform(0.5, 1.5)))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(2))
    if text:  # a sign in the photo, for the OCR run
        d = ImageDraw.Draw(img)
        try:
            font: Any = ImageFont.truetype(FONT, 40)
        except OSError:
            font = ImageFont.load_default(size=40)
        d.rectangle((80, h - 180, 80 + 760, h - 80), fill=(245, 245, 240))
        d.text((100, h - 160), f"Platform {i % 9 + 1}: trains to Lyon", font=font,
               fill=(20, 20, 20))
    return img


def make_images(folder: Path, n: int, *, text_every: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"photo_{i:04d}.jpg"
        photo(i, text=bool(text_every) and i % text_every == 0).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def ensure_model(model_dir: Path) -> Path:
    processor_files = ("processor_config.json", "preprocessor_config.json")
    if (model_dir / "config.json").is_file() and any(
            (model_dir / f).is_file() for f in processor_files):
        return model_dir
    from tests.clipmodel import build_clip

    print(f"building a random ViT-B/32-sized CLIP in {model_dir} (once)...", flush=True)
    return build_clip(model_dir, real_sizes=True)


# helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def timed(out: dict[str, float]) -> Iterator[None]:
    """Wall seconds and process CPU seconds (all threads) of the block."""
    t, c = time.perf_counter(), time.process_time()
    yield
    out["wall_s"] = time.perf_counter() - t
    out["cpu_s"] = time.process_time() - c


def per_image(fn: Callable[[Any], Any], items: list[Any], repeat: int = 1) -> float:
    """Median milliseconds per call of ``fn`` over ``items``."""
    times = []
    for _ in range(repeat):
        for it in items:
            t = time.perf_counter()
            fn(it)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def machine() -> dict[str, Any]:
    import torch

    from core.models.clip import cpu_has_bf16

    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16": cpu_has_bf16(), "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_start": round(os.getloadavg()[0], 2)}


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# naive ----------------------------------------------------------------------------------------
def run_naive(model_dir: Path, paths: list[Path]) -> dict[str, Any]:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torchvision not available": the notebook sees it too
        processor = CLIPProcessor.from_pretrained(str(model_dir))
        model = CLIPModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    prep_ms: list[float] = []
    fwd_ms: list[float] = []

    def embed(path: Path) -> np.ndarray:
        t = time.perf_counter()
        image = Image.open(path).convert("RGB")
        inputs = processor(images=image, return_tensors="pt")
        t2 = time.perf_counter()
        with torch.no_grad():
            feats = model.get_image_features(**inputs)
        v = getattr(feats, "pooler_output", feats)
        out = (v / v.norm(dim=-1, keepdim=True))[0].numpy()
        prep_ms.append((t2 - t) * 1000)
        fwd_ms.append((time.perf_counter() - t2) * 1000)
        return out

    embed(paths[0])  # warm-up
    prep_ms.clear()
    fwd_ms.clear()
    res: dict[str, Any] = {"load_avg": round(os.getloadavg()[0], 2)}
    with timed(res):
        vecs = [embed(p) for p in paths]
    res["decode_preprocess_ms"] = statistics.median(prep_ms)
    res["forward_ms"] = statistics.median(fwd_ms)
    # Load stretches some images a lot (batch-1 forward passes stall when a core is taken):
    # the median image is the naive loop's speed on a quiet machine.
    res["median_images_per_s"] = 1000 / statistics.median(
        a + b for a, b in zip(prep_ms, fwd_ms, strict=True))
    res["images"] = len(vecs)
    res["images_per_s"] = len(vecs) / res["wall_s"]
    res["cpu_ms_per_image"] = 1000 * res["cpu_s"] / len(vecs)
    return res


# pipeline -------------------------------------------------------------------------------------
def settings_for(data: Path, model_dir: Path, *, ocr: bool, workers: int | None = None) -> Any:
    from core.config import Settings

    embedding: dict[str, Any] = {"model": str(model_dir)}
    if workers:
        embedding["preprocess_workers"] = workers
    return Settings.model_validate({
        "data_dir": str(data), "log_level": "WARNING",
        "embedding": embedding,
        "index": {"ocr": ocr, "captions": False},
        "answer": {"provider": "none"},
    })


async def run_pipeline(model_dir: Path, folder: Path, data: Path, n: int, *,
                       ocr: bool, workers: int | None = None) -> dict[str, Any]:
    from core.app import open_service
    from core.config import Secrets

    settings = settings_for(data, model_dir, ocr=ocr, workers=workers)
    res: dict[str, Any] = {"ocr": ocr}
    t = time.perf_counter()
    async with open_service(settings, Secrets({})) as service:
        res["open_s"] = time.perf_counter() - t
        c = service.c
        res["dtype"] = str(c.clip.dtype).removeprefix("torch.")
        # Warm-up forward pass (oneDNN kernels), like the naive side gets.
        side = c.clip.input_side
        await c.run(c.pools.model, c.clip.embed_pixels, np.zeros((2, 3, side, side), np.float32))
        busy = instrument(c)
        res["load_avg"] = round(os.getloadavg()[0], 2)
        with timed(res):
            report = await service.index_paths([folder], "bench")
        batches = c.clip_images.batches
    # Seconds each executor spent running work: where the time goes inside the pipeline.
    res["pool_busy_ms_per_image"] = {k: round(1000 * v / n, 1) for k, v in sorted(busy.items())}
    if report.failed or len(report.indexed) != n:
        raise SystemExit(f"pipeline indexed {len(report.indexed)}/{n}: {report.failed[:3]}")
    res["images"] = n
    res["images_per_s"] = n / res["wall_s"]
    res["cpu_ms_per_image"] = 1000 * res["cpu_s"] / n
    res["forward_batches"] = batches
    res["mean_batch"] = n / max(batches, 1)
    return res


def instrument(c: Any) -> dict[str, float]:
    """Count the wall seconds each pool spends on work (c.run and the CLIP batcher)."""
    import threading

    busy: dict[str, float] = {}
    lock = threading.Lock()
    names = {id(getattr(c.pools, k)): k for k in ("model", "text", "decode", "ocr", "store")}

    def wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def timed_fn(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                with lock:
                    busy[name] = busy.get(name, 0.0) + time.perf_counter() - t
        return timed_fn

    orig = c.run

    async def run(pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return await orig(pool, wrap(fn, names.get(id(pool), "other")), *args)

    c.run = run
    c.clip_images._fn = wrap(c.clip_images._fn, "model")
    return busy


# stages ---------------------------------------------------------------------------------------
def run_stages(model_dir: Path, paths: list[Path], batch: int) -> dict[str, Any]:
    """Each step alone, single caller, median ms per image."""
    from core.config import IndexSettings
    from core.ingest import WORK_SIDE, _thumb_source
    from core.media import neardup
    from core.media.imageio import Limits, load_image, to_jpeg
    from core.models.clip import ClipEmbedder

    limits = Limits.from_settings(IndexSettings())
    sample = paths[:8]
    blobs = [p.read_bytes() for p in sample]
    images = [load_image(b, "x.jpg", limits, max_side=WORK_SIDE).image for b in blobs]
    st: dict[str, Any] = {}
    st["decode_ms"] = per_image(lambda b: load_image(b, "x.jpg", limits, max_side=WORK_SIDE), blobs)
    st["thumbnail_ms"] = per_image(lambda im: to_jpeg(_thumb_source(im, 384), 384), images)
    st["phash_ms"] = per_image(neardup.hash_image, images)
    bf = ClipEmbedder(str(model_dir))
    st["preprocess_ms"] = per_image(lambda im: bf.preprocess([im]), images)
    pixels = np.concatenate([bf.preprocess([im]) for im in images])
    big = np.concatenate([pixels] * (batch // len(pixels) + 1))[:batch]
    dtypes = {"bf16": bf} if str(bf.dtype) == "torch.bfloat16" else {}
    dtypes["fp32"] = bf if str(bf.dtype) == "torch.float32" else ClipEmbedder(
        str(model_dir), dtype="float32")
    for name, emb in dtypes.items():
        emb.embed_pixels(pixels[:2])  # warm-up
        one = per_image(lambda i, e=emb: e.embed_pixels(pixels[i:i + 1]), list(range(len(pixels))))
        many = per_image(lambda _, e=emb: e.embed_pixels(big), [0, 1]) / batch
        st[f"forward_{name}_b1_img_s"] = 1000 / one
        st[f"forward_{name}_b{batch}_img_s"] = 1000 / many
    return st


# report ---------------------------------------------------------------------------------------
def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"\n{m['cpu']}: {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads,"
          f" native bf16: {m['bf16']}; load average {m['load_avg_start']} at start,"
          f" {r['load_avg_end']} at end")
    print(f"{r['images']} JPEG photos {SIZE[0]}x{SIZE[1]}, random CLIP with ViT-B/32 sizes\n")
    print(f"{'path':44} {'images/s':>9} {'wall s':>7} {'CPU ms/img':>11} {'load':>5}")
    rows = [("naive: PIL + CLIPProcessor + fp32, batch 1", r["naive"])] if "naive" in r else []
    rows += [(f"pipeline: index_paths, OCR off ({r['pipeline']['dtype']})", r["pipeline"])]
    if "pipeline_ocr" in r:
        rows.append((f"pipeline: index_paths, OCR on ({r['pipeline_ocr']['images']} imgs)",
                     r["pipeline_ocr"]))
    for name, x in rows:
        print(f"{name:44} {x['images_per_s']:9.1f} {x['wall_s']:7.1f} {x['cpu_ms_per_image']:11.0f}"
              f" {x['load_avg']:5.1f}")
    p = r["pipeline"]
    if "naive" in r:
        n = r["naive"]
        print(f"\nratio pipeline/naive (same run): {r['ratio']:.2f}x"
              f"  (CPU per image: {r['cpu_ratio']:.2f}x less)")
        print(f"naive, median per image: open+convert+CLIPProcessor"
              f" {n['decode_preprocess_ms']:.0f} ms, forward {n['forward_ms']:.0f} ms"
              f" = {n['median_images_per_s']:.1f} images/s at the median image;"
              f" ratio against that: {r['ratio_vs_naive_median']:.2f}x")
    print(f"pipeline forward passes: {p['forward_batches']} (mean batch {p['mean_batch']:.1f});"
          f" pool busy ms per image: {p['pool_busy_ms_per_image']}")
    if "stages" in r:
        s = r["stages"]
        print("\nstages alone, one caller, median ms per image:")
        for k in ("decode_ms", "thumbnail_ms", "phash_ms", "preprocess_ms"):
            print(f"  {k.removesuffix('_ms'):28} {s[k]:7.1f}")
        print("forward pass alone, images/s:")
        for k, v in s.items():
            if k.startswith("forward_"):
                print(f"  {k.removeprefix('forward_').removesuffix('_img_s'):28} {v:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--ocr-images", type=int, default=12,
                    help="images in the OCR-on run (every 4th has a text sign); 0 skips it")
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/pixrag-bench-clip"))
    ap.add_argument("--batch", type=int, default=32, help="batch for the forward-only figures")
    ap.add_argument("--preprocess-workers", type=int, default=None,
                    help="[embedding] preprocess_workers for the pipeline (default: the setting's)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads for both sides (default: torch's, = cores)")
    ap.add_argument("--no-naive", action="store_true", help="pipeline only (for tuning)")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage timings")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    model_dir = ensure_model(args.model_dir)
    r: dict[str, Any] = {"machine": machine(), "images": args.images, "size": list(SIZE)}
    with tempfile.TemporaryDirectory(prefix="pixrag-bench-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "photos", args.images)
        if not args.no_naive:
            r["naive"] = run_naive(model_dir, paths)
        r["pipeline"] = asyncio.run(run_pipeline(model_dir, root / "photos", root / "data",
                                                 args.images, ocr=False,
                                                 workers=args.preprocess_workers))
        if not args.no_naive:
            r["ratio"] = r["pipeline"]["images_per_s"] / r["naive"]["images_per_s"]
            r["cpu_ratio"] = r["naive"]["cpu_ms_per_image"] / r["pipeline"]["cpu_ms_per_image"]
            r["ratio_vs_naive_median"] = (r["pipeline"]["images_per_s"]
                                          / r["naive"]["median_images_per_s"])
        if args.ocr_images:
            make_images(root / "ocr", args.ocr_images, text_every=4)
            r["pipeline_ocr"] = asyncio.run(run_pipeline(
                model_dir, root / "ocr", root / "data-ocr", args.ocr_images, ocr=True))
        if not args.no_stages:
            r["stages"] = run_stages(model_dir, paths, args.batch)
    r["load_avg_end"] = round(os.getloadavg()[0], 2)
    print_report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
