"""OCR with RapidOCR 3.x (PP-OCR det/rec ONNX models shipped inside the wheel).

The engine is pinned to the bundled model files with explicit ``model_path`` values: with a
``model_path`` RapidOCR opens the file directly and never reaches its download code (without
one it would re-download when the file's checksum does not match). The angle classifier is
off: screenshots and slides are upright, and it costs time on every text line.

Most photos carry no text, and on them the full detector is nearly the whole cost (it runs
on the whole image, up to 2000 px, enlarging small ones to a 736 px short side). A gate runs
the same detector first at ``GATE_SCALE`` of that size (a quarter of the pixels) and looks at
the shape of what it finds: text lines are thin and long, whereas the textured areas of a
photo (foliage, clouds, grain) come out as large round blobs at that scale. No line-shaped
region: the image is not read. Any line-shaped region: the image has text.

When the text is large (slides, most screenshots: every line at least ``REUSE_PX`` tall at the
gate's scale), the regions the gate found are cut from the full-size image and recognised
directly: the full-size detector pass, most of a slide's OCR time, is skipped. Small text can
come out of the half-size detector partial or merged, so when any line is read with low
confidence the image is read in full after all. ``benchmarks/ocr_gate.py`` measures CPU and
the words each way loses against the full reader.

With ``int8`` (``[index] ocr_int8``, off by default) the gate's detector runs in 8 bits on
the CPU (``DET_INT8``, shipped in ``models/`` next to this module, made by
``scripts/quantize_ocr.py`` from the wheel's own detector): less than half the CPU of the fp32
detector, which is the whole cost of a photo without text, and the same words on slides and
screenshots, but it misses more signs in busy photos (measured: 72 of 80 against 77 of 80),
hence off by default. The full pass keeps the fp32 detector (in 8 bits it found fewer signs
still), and so does the recogniser (in 8 bits it misread about one word in a hundred more).

With ``onnxruntime-gpu`` installed and a CUDA device present, the sessions run on
``CUDAExecutionProvider`` with the fp32 models; anything else runs on the CPU, silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from core.errors import ModelError, ModelUnavailable

log = logging.getLogger(__name__)

#: Lines RapidOCR is less sure about than this are mostly junk (textures, icons, noise).
MIN_SCORE = 0.5
#: Below this size there is no legible text to find.
MIN_SIDE = 16
#: Larger images are downscaled first: detection time grows with pixels, and text that is
#: still legible at this size covers screenshots, slides and scanned pages.
MAX_SIDE = 2000
#: An image whose grey levels span less than this is blank (one colour): skip the detector.
_FLAT_RANGE = 8
#: Pixels of background added around every image (see _pad).
_MARGIN = 16

#: The gate's detector input relative to the full pass's (linear). At 0.5, 13 px UI text in a
#: full-HD screenshot still comes out as separate lines; at 0.33 it merges into one blob.
GATE_SCALE = 0.5
#: A detected region is line-shaped when its short side is at most this share of the image's
#: short side (a slide title is ~0.07, a sign in a photo ~0.08; texture blobs are 0.35-1) ...
GATE_MAX_LINE = 0.25
#: ... or when it is at least this many times longer than high, like a banner or a logo whose
#: one line fills the image (texture blobs measured 1.0-2.0).
GATE_MIN_ASPECT = 3.0
#: The gate keeps weaker regions than the full pass (0.5): a miss would lose text, a false
#: alarm only costs the full pass.
GATE_BOX_THRESH = 0.4

#: When every line the gate found is at least this tall at its scale, the text is large (slide
#: titles and bullets) and the gate's regions are read directly, without a full-size detector
#: pass (most of a slide's OCR time). 0 = always run the full pass.
REUSE_PX = 8.0
#: ... unless a long region (a line: at least this many times wider than high) is read with
#: less confidence than this: then the full pass runs after all (see _doubtful). Measured on
#: 111 slides and screenshots: lines read whole score 0.93 or more; lines the gate's box cut
#: short or merged (9-11 px text) 0.55-0.76.
DOUBT_ASPECT = 4.0
DOUBT_SCORE = 0.85
#: The 8-bit gate's boxes around small text are less exact (10-11 px text on a full-HD
#: screenshot came out cut short yet read with confidence 0.89): with it, only text at least
#: this tall at the gate's scale is read from its regions.
INT8_REUSE_PX = 12.0
#: ... or when a region this thick (full-size pixels, both sides) reads with low confidence:
#: several lines of small text merged into one block at the gate's scale. One line of text
#: that tall reads with high confidence; icons and bullets are smaller.
BLOB_PX = 64.0

_DET = "PP-OCRv6_det_small.onnx"
_REC = "PP-OCRv6_rec_small.onnx"
#: The detector above, quantized to int8 (see scripts/quantize_ocr.py), shipped with PixRAG.
DET_INT8 = "PP-OCRv6_det_small.int8.onnx"
SHIPPED_MODELS = Path(__file__).resolve().parent / "models"


def _bundled_models() -> Path:
    spec = find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise ModelUnavailable("OCR is unavailable: the rapidocr package is not installed")
    return Path(spec.origin).parent / "models"


class RapidReader:
    """``TextReader`` over RapidOCR. Thread-safe: one lock around the engine.

    RapidOCR's ``__call__`` mutates engine state (``update_params``) and its sessions are
    shared, so concurrent calls are serialised; run several readers for parallel OCR.
    """

    def __init__(self, *, min_score: float = MIN_SCORE, max_side: int = MAX_SIDE,
                 gate: bool = True, reuse_px: float = REUSE_PX, int8: bool = False,
                 threads: int = 0) -> None:
        self.min_score = min_score
        self.threads = threads  # onnxruntime's threads per session; 0 = its default (all)
        self.max_side = max_side
        self.gate = gate
        self.reuse_px = max(reuse_px, INT8_REUSE_PX) if int8 and reuse_px else reuse_px
        self.int8 = int8
        self.gate_detector: Path | None = None  # the gate's detector model, once loaded
        self._gate_session: Any = None
        self._engine: Any = None
        self._gate_post: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        # Caller holds self._lock.
        if self._engine is None:
            models = _bundled_models()
            for name in (_DET, _REC):
                if not (models / name).is_file():
                    raise ModelUnavailable(
                        f"OCR model {models / name} is missing: reinstall rapidocr")
            params = {
                # RapidOCR logs through its own handler (propagate=False) and warns on
                # every image without text: keep it to errors.
                "Global.log_level": "error",
                "Global.use_cls": False,
                "Global.text_score": self.min_score,
                "Global.max_side_len": self.max_side,
                "Det.model_path": str(models / _DET),
                "Rec.model_path": str(models / _REC),
            }
            if self.threads > 0:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
            cuda = _cuda_available()
            try:
                self._engine = _start_engine(params, cuda=cuda)
            except Exception as exc:  # a broken install surfaces as many different types
                if not cuda:
                    raise ModelUnavailable(f"OCR engine could not start: {exc}") from exc
                log.info("OCR on CUDA failed to start (%s): using the CPU", exc)
                cuda = False
                try:
                    self._engine = _start_engine(params, cuda=False)
                except Exception as exc2:
                    raise ModelUnavailable(f"OCR engine could not start: {exc2}") from exc2
            self._gate_session = self._start_gate_session(models, cuda)
            log.info("OCR engine ready (RapidOCR, %s, gate detector %s)",
                     "cuda" if cuda else "cpu", self.gate_detector)
        return self._engine

    def _start_gate_session(self, models: Path, cuda: bool) -> Any:
        """The gate's own 8-bit detector session on the CPU (when wanted and present); None
        means the gate runs the engine's fp32 detector."""
        self.gate_detector = models / _DET
        if not self.int8 or cuda:
            return None
        path = SHIPPED_MODELS / DET_INT8
        if not path.is_file():
            log.warning("OCR: %s is missing (a broken install?): the gate uses the fp32"
                        " detector", path)
            return None
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry(_SPIN, "0")  # see _quiet_threads
        if self.threads > 0:
            options.intra_op_num_threads = self.threads
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        self.gate_detector = path
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]

    def has_text(self, image: Image.Image) -> bool:
        """Whether ``image`` shows any text: the gate alone, at a fraction of a full read."""
        bgr = self._prepare(image)
        if bgr is None:
            return False
        with self._lock:
            return self._gate(bgr).has_text

    def _prepare(self, image: Image.Image) -> np.ndarray | None:
        """BGR pixels as the engine reads them, or None when there is nothing to read."""
        if min(image.size) < MIN_SIDE:
            return None
        rgb = _to_rgb(image)
        if max(rgb.size) > self.max_side:
            rgb = rgb.copy()
            # reducing_gap: a cheap integer reduction first, then LANCZOS (a 12 MP photo costs
            # a third of the CPU; the result is as sharp).
            rgb.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS,
                          reducing_gap=3.0)
        if _is_flat(rgb):
            return None
        pixels = _pad(np.asarray(rgb))
        # RapidOCR wants BGR like OpenCV.
        return np.ascontiguousarray(pixels[:, :, ::-1])

    def _gate(self, bgr: np.ndarray) -> _GateResult:
        # Caller holds self._lock.
        engine = self._load()
        try:
            import cv2
            from rapidocr.ch_ppocr_det.utils import DBPostProcess

            det = engine._load_det_model()  # the full pass's own session: loaded once
            if self._gate_post is None:
                self._gate_post = DBPostProcess(
                    thresh=float(engine.cfg.Det.thresh), box_thresh=GATE_BOX_THRESH,
                    unclip_ratio=float(engine.cfg.Det.unclip_ratio), use_dilation=True)
            # The full pass enlarges images whose short side is under `limit_side_len` and
            # never shrinks the others; the gate looks at GATE_SCALE of that size.
            h, w = bgr.shape[:2]
            scale = GATE_SCALE * max(1.0, int(engine.cfg.Det.limit_side_len) / min(h, w))
            size = (max(32, round(w * scale / 32) * 32), max(32, round(h * scale / 32) * 32))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            pixels = (small.astype(np.float32) / 255.0 - np.asarray(det.mean, np.float32)) \
                / np.asarray(det.std, np.float32)
            batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
            # Boxes in the full image's coordinates: the fast read crops them from it.
            run = self._gate_session or det.session
            boxes, _ = self._gate_post(run(batch), (h, w))
        except Exception as exc:  # onnxruntime / OpenCV errors on odd inputs
            raise ModelError(f"OCR failed on a {bgr.shape[1]}x{bgr.shape[0]} image: {exc}") from exc
        limit = GATE_MAX_LINE * min(h, w)
        found = False
        thinnest = float("inf")  # the thinnest line, in the gate's pixels
        for box in boxes:
            pts = np.asarray(box, dtype=np.float32)
            sides = sorted((float(np.linalg.norm(pts[0] - pts[1])),
                            float(np.linalg.norm(pts[0] - pts[3]))))
            if sides[0] <= limit or sides[1] >= GATE_MIN_ASPECT * sides[0]:
                found = True
                thinnest = min(thinnest, sides[0] * size[1] / h)
        return _GateResult(found, [np.asarray(b, dtype=np.float32) for b in boxes], thinnest)

    def read(self, image: Image.Image) -> str:
        """Text in ``image``: lines top-to-bottom, words left-to-right; "" when there is none."""
        bgr = self._prepare(image)
        if bgr is None:
            return ""
        with self._lock:
            gate = self._gate(bgr) if self.gate else None
            if gate is not None and not gate.has_text:
                return ""
            engine = self._load()
            try:
                boxes, txts, scores = self._read_lines(engine, bgr, gate)
            except Exception as exc:  # onnxruntime / OpenCV errors on odd inputs
                raise ModelError(
                    f"OCR failed on a {bgr.shape[1]}x{bgr.shape[0]} image: {exc}") from exc
        if boxes is None or txts is None or scores is None or len(txts) == 0:
            return ""
        kept = [
            (np.asarray(box, dtype=np.float32), txt.strip())
            for box, txt, score in zip(boxes, txts, scores, strict=False)
            if score >= self.min_score and txt.strip()
        ]
        return _reading_order(kept)

    def _read_lines(self, engine: Any, bgr: np.ndarray, gate: _GateResult | None
               ) -> tuple[Any, Any, Any]:
        """Boxes, texts and scores: from the gate's regions when the text is large, else (or
        when small text the gate half-saw reads badly) from a full pass."""
        first: tuple[list[np.ndarray], Any, Any] | None = None
        if gate is not None and self.reuse_px and gate.thinnest >= self.reuse_px:
            first = self._recognise(engine, bgr, gate.boxes)
            if not _doubtful(first[0], first[2]):
                return first
        result = engine(bgr)
        boxes, txts, scores = (getattr(result, "boxes", None), getattr(result, "txts", None),
                               getattr(result, "scores", None))
        if first is None:
            return boxes, txts, scores
        if boxes is None or txts is None or scores is None:
            boxes, txts, scores = [], [], []
        lines = _keep_confident(list(zip(boxes, txts, scores, strict=False)),
                                list(zip(*first, strict=False)))
        return [m[0] for m in lines], [m[1] for m in lines], [m[2] for m in lines]

    @staticmethod
    def _recognise(engine: Any, bgr: np.ndarray, boxes: list[np.ndarray]
                   ) -> tuple[list[np.ndarray], Any, Any]:
        """Read the lines the gate found, without a second detector pass."""
        from rapidocr.utils.process_img import get_rotate_crop_image

        if not boxes:
            return [], None, None
        crops = [get_rotate_crop_image(bgr, box.copy()) for box in boxes]
        rec = engine.recognize_txt(crops)
        return boxes, rec.txts, rec.scores


class ReaderPool:
    """``TextReader`` over several engines, for reads in parallel (``[index] ocr_workers``):
    each read takes a free engine, waiting for one when all are busy. Engines start on demand,
    so a single query's read loads one."""

    def __init__(self, make: Callable[[], RapidReader], size: int) -> None:
        self._make = make
        self.size = size
        self.readers: list[RapidReader] = []  # every engine started so far
        self._free: queue.SimpleQueue[RapidReader] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> str:
        reader = self._take()
        try:
            return reader.read(image)
        finally:
            self._free.put(reader)

    def _take(self) -> RapidReader:
        with self._lock:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                if len(self.readers) < self.size:
                    self.readers.append(self._make())
                    return self.readers[-1]
        return self._free.get()


def _doubtful(boxes: list[np.ndarray], scores: Any) -> bool:
    """A text line (long box) or a thick block read with low confidence: at the gate's scale
    small text comes out as partial lines, lines cut short, or several lines merged into one
    block, which the recogniser garbles (measured on 9-11 px text on a full-HD screenshot);
    icons and bullets, which also score low, are neither long nor thick."""
    for box, score in zip(boxes, scores if scores is not None else (), strict=False):
        if float(score) >= DOUBT_SCORE:
            continue
        height = float(np.linalg.norm(box[0] - box[3]))
        width = float(np.linalg.norm(box[0] - box[1]))
        if width >= DOUBT_ASPECT * max(height, 1.0) or min(width, height) >= BLOB_PX:
            return True
    return False


def _keep_confident(full: list[tuple[Any, str, float]], gate: list[tuple[Any, str, float]]
                    ) -> list[tuple[Any, str, float]]:
    """The full pass's lines, plus the gate's confident ones it missed or read in part.

    The full pass is not a superset: on a textured photo it can miss a sign's large letters,
    or read part of them, where the half-size gate read the line whole and with confidence.
    """
    lines = list(full)
    for box, txt, score in gate:
        if float(score) < DOUBT_SCORE or not txt.strip():
            continue
        over = [line for line in lines if _overlaps(box, line[0])]
        if all(line[1].strip() in txt and len(line[1].strip()) < len(txt.strip())
               for line in over):
            lines = [line for line in lines if not any(line is o for o in over)]
            lines.append((box, txt, score))
    return lines


def _overlaps(a: Any, b: Any) -> bool:
    """Whether the bounding rectangles of two boxes share at least half of the smaller one."""
    (ax0, ay0), (ax1, ay1) = np.min(a, axis=0), np.max(a, axis=0)
    (bx0, by0), (bx1, by1) = np.min(b, axis=0), np.max(b, axis=0)
    w = min(ax1, bx1) - max(ax0, bx0)
    h = min(ay1, by1) - max(ay0, by0)
    if w <= 0 or h <= 0:
        return False
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return float(w * h) >= 0.5 * max(float(smaller), 1.0)


@dataclass(frozen=True)
class _GateResult:
    has_text: bool
    boxes: list[np.ndarray]  # every region found, in the full image's pixels
    thinnest: float  # the thinnest line-shaped region's height at the gate's scale (px)


def _cuda_available() -> bool:
    """onnxruntime-gpu installed and a CUDA device present (cheap: no session is made)."""
    try:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return False
    except Exception:  # no usable onnxruntime: the engine reports it
        return False
    # The GPU build lists the provider on machines without a GPU too: ask the driver.
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 \
            and count.value > 0
    except OSError:
        return False


def _start_engine(params: dict[str, Any], *, cuda: bool) -> Any:
    from rapidocr import RapidOCR

    _quiet_threads()
    if cuda:
        params = {**params, "EngineConfig.onnxruntime.use_cuda": True}
    return RapidOCR(params=params)


#: onnxruntime's session option that keeps its intra-op threads spinning between runs.
_SPIN = "session.intra_op.allow_spinning"


def _quiet_threads() -> None:
    """Make RapidOCR's sessions (created lazily, on first use) let their threads sleep between
    runs. By default onnxruntime's threads spin-wait for the next run, and OCR runs in bursts
    (Python pre- and post-processing between a detector and a recogniser run, between images):
    the spinning took a core from CLIP and the text encoder. Measured on 30 photos and 10
    slides, 2 cores (benchmarks/ocr_threads.py): 18-25 % less CPU, the same text. RapidOCR has
    no setting for it, so its session options are wrapped once; on a version without that
    hook, nothing changes."""
    try:
        from rapidocr.inference_engine.onnxruntime import main as ort_main

        cls = ort_main.OrtInferSession
        base = cls.__dict__["_init_sess_opts"].__func__
    except (ImportError, AttributeError, KeyError):
        log.debug("OCR: cannot set the thread options of this RapidOCR version")
        return
    if getattr(base, "quiet_threads", False):
        return

    def options(cfg: Any) -> Any:
        opts = base(cfg)
        opts.add_session_config_entry(_SPIN, "0")
        return opts

    options.quiet_threads = True  # type: ignore[attr-defined]
    cls._init_sess_opts = staticmethod(options)  # type: ignore[method-assign]


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white: transparent screenshots/logos would otherwise turn black-on-black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _pad(pixels: np.ndarray) -> np.ndarray:
    """Add a margin in the background colour: the detector splits or garbles words that touch
    the image edge (tightly cropped screenshots), e.g. "Transparent I t logo text"."""
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = np.median(edges, axis=0).astype(np.uint8)
    h, w, c = pixels.shape
    out = np.empty((h + 2 * _MARGIN, w + 2 * _MARGIN, c), dtype=np.uint8)
    out[:] = fill
    out[_MARGIN : _MARGIN + h, _MARGIN : _MARGIN + w] = pixels
    return out


def _is_flat(image: Image.Image) -> bool:
    small = image.convert("L")
    small.thumbnail((64, 64))
    lo, hi = cast(tuple[int, int], small.getextrema())  # one band ("L"): (min, max)
    return hi - lo < _FLAT_RANGE


Entry = tuple[float, float, float, float, str]  # x0, y0, x1, y1, text


def _reading_order(items: list[tuple[np.ndarray, str]]) -> str:
    """Blocks first (recursive XY-cut), then lines top-down and boxes left-right.

    Slides put a title beside or above columns of bullets; reading plain y-order interleaves
    them ("Retention / Customers using 3+ ... / Deep Dive:"), which blurs the passage embedding
    and loses the title. Cutting at wide column gutters and full-width row gaps keeps blocks
    whole.
    """
    if not items:
        return ""
    entries: list[Entry] = []
    for box, txt in items:
        xs, ys = box[:, 0], box[:, 1]
        entries.append((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()), txt))
    heights = sorted(max(e[3] - e[1], 1.0) for e in entries)
    line_h = heights[len(heights) // 2]
    blocks: list[list[Entry]] = []
    _xy_cut(entries, line_h, blocks, depth=0)
    return "\n".join(_lines(b) for b in blocks if b)


def _gaps(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Empty intervals between the union of ``spans`` (sorted, merged)."""
    spans = sorted(spans)
    out = []
    end = spans[0][1]
    for a, b in spans[1:]:
        if a > end:
            out.append((end, a))
        end = max(end, b)
    return out


def _xy_cut(entries: list[Entry], line_h: float, out: list[list[Entry]], depth: int) -> None:
    if len(entries) <= 1 or depth > 12:
        out.append(entries)
        return
    if max(e[1] for e in entries) < min(e[3] for e in entries):
        out.append(entries)  # one line: its parts stay together however far apart
        return
    # Columns: a vertical gutter at least two line heights wide that no box crosses.
    col_gaps = [g for g in _gaps([(e[0], e[2]) for e in entries]) if g[1] - g[0] >= 2 * line_h]
    if col_gaps:
        gap = max(col_gaps, key=lambda g: g[1] - g[0])
        cut = (gap[0] + gap[1]) / 2
        _xy_cut([e for e in entries if e[2] <= cut], line_h, out, depth + 1)
        _xy_cut([e for e in entries if e[0] > cut], line_h, out, depth + 1)
        return
    # Rows: split at every full-width horizontal gap, then look for columns inside each row.
    row_gaps = _gaps([(e[1], e[3]) for e in entries])
    if not row_gaps:
        out.append(entries)
        return
    cuts = [(a + b) / 2 for a, b in row_gaps] + [float("inf")]
    rows: list[list[Entry]] = [[] for _ in cuts]
    for e in entries:
        centre = (e[1] + e[3]) / 2
        rows[next(i for i, c in enumerate(cuts) if centre < c)].append(e)
    for row in rows:
        if len(row) == len(entries):  # no progress: a leaf
            out.append(row)
        elif row:
            _xy_cut(row, line_h, out, depth + 1)


def _lines(entries: list[Entry]) -> str:
    """Group boxes into lines by vertical overlap, order lines top-down and boxes left-right."""
    rows = sorted(((e[1] + e[3]) / 2, max(e[3] - e[1], 1.0), e[0], e[4]) for e in entries)
    lines: list[list[tuple[float, float, float, str]]] = []
    for entry in rows:
        if lines:
            line = lines[-1]
            centre = sum(e[0] for e in line) / len(line)
            height = sum(e[1] for e in line) / len(line)
            # Same line when the centres are within half a line height (tolerates slight skew).
            if abs(entry[0] - centre) <= 0.5 * min(height, entry[1]):
                line.append(entry)
                continue
        lines.append([entry])
    return "\n".join(" ".join(e[3] for e in sorted(line, key=lambda e: e[2])) for line in lines)
