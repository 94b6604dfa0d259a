"""CLIP image/text embedder (Hugging Face transformers), from a Hub id or a local folder.

Device and precision are picked once: CUDA (fp16), then Apple MPS (fp16), then CPU (bf16 when the
CPU has native bf16 instructions: ~2x faster here with cosine >= 0.9999 against fp32, else fp32).
Preprocessing (:meth:`ClipEmbedder.preprocess`) is separate from the forward pass
(:meth:`ClipEmbedder.embed_pixels`) so the ingestion pipeline can overlap the two.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ModelError, ModelUnavailable
from core.machine import gpu_possible
from core.models.lighttext import processor_json, read_json

#: transformers sets torch's process-wide default dtype while it builds a model: two models
#: loading at once in two threads (CLIP in bf16, the text model in fp32) would corrupt
#: each other's weights' dtype. Every model load holds this lock.
LOAD_LOCK = threading.Lock()

log = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX); otherwise bf16 is slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_device(requested: str = "auto") -> str:
    if requested in ("cuda", "mps"):
        _require_device(requested)
    if requested != "auto":
        return requested
    if not gpu_possible():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _require_device(device: str) -> None:
    """A GPU asked for by name that torch cannot use is a config error now, not torch's
    AssertionError at the first forward pass."""
    import torch

    from core.errors import ConfigError

    if device == "cuda" and not torch.cuda.is_available():
        why = ("this PyTorch is a CPU build" if torch.version.cuda is None else
               "no NVIDIA GPU or driver is visible (a container needs --gpus)")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                  and torch.backends.mps.is_available()):
        why = "MPS needs an Apple-silicon Mac and a PyTorch built for it"
    else:
        return
    raise ConfigError("embedding.device (or PIXRAG_EMBEDDING__DEVICE)",
                      f'"{device}" cannot be used here: {why}; set "auto" (the GPU when there '
                      'is one, else the CPU) or "cpu"')


def dtype_name(device: str, requested: str = "auto") -> str:
    """The torch dtype's name for ``device``: ``requested``, or the fast one it supports."""
    if requested != "auto":
        return requested
    if device in ("cuda", "mps"):
        return "float16"
    return "bfloat16" if cpu_has_bf16() else "float32"


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1] \
        or Path(model).expanduser().exists()


def _missing_model_message(model: str, why: str) -> str:
    # A missing local folder: the hint downloads the default model into that folder.
    # `hf` is huggingface_hub's current CLI (`huggingface-cli` is gone from it).
    hub_id, folder = ("openai/clip-vit-base-patch32", model) if _looks_local(model) \
        else (model, "/models/clip")
    return (
        f"cannot load the CLIP model {model!r}: {why.rstrip('.')}. On a machine with internet "
        f"a Hub model is downloaded on first use; offline, download it once elsewhere "
        f"(`hf download {hub_id} --local-dir {folder}`), copy the folder here "
        f"and point the config at it: [embedding] model = \"{folder}\" "
        f"(or PIXRAG_EMBEDDING__MODEL={folder})."
    )


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached, or None when it can (or a proxy decides).

    One quick TCP connect instead of huggingface_hub's five retries with back-off (~25 s of
    warnings) before the same verdict on a machine without network."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=5).close()
    except OSError as exc:
        return f"the Hugging Face Hub ({constants.ENDPOINT}) is unreachable " \
               f"({exc.strerror or type(exc).__name__}) and the model is not in the local cache"
    return None


class ClipEmbedder:
    """Implements :class:`core.protocols.ImageEmbedder`. Thread-safe for one caller at a time
    per method; the service runs the forward passes in a single dedicated thread."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto") -> None:
        self.model_id = model
        self.device = pick_device(device)
        self.dtype_name = dtype_name(self.device, dtype)
        source = str(Path(model).expanduser()) if _looks_local(model) else model
        if _looks_local(model) and not Path(source).is_dir():
            raise ModelUnavailable(_missing_model_message(model, f"folder {source} does not exist"))
        self._source = source
        self._lock = threading.Lock()
        self._parts_lock = threading.Lock()
        self._parts_loaded = False
        # Each tower is loaded when first used: a text search never loads the image side.
        self._vision_tower: Any = None
        self._text_tower: Any = None
        self._light_text: Any = None
        self._light_tokens: Any = None
        self._light_vision: Any = None
        self._no_light_text = self._no_light_vision = False  # tried: not this model
        self._json_fast: _FastPreprocess | None = None
        self._json_checked = False
        self._fast: _FastPreprocess | None = None
        self._staging: Any = None  # the host buffer batches go to the GPU from (_staged)
        self._pin_ok = True  # False once page-locking failed: ordinary memory from then on
        self.input_side = 224  # the pixel input's side, set from the processor's settings
        # A model folder on disk (a local folder, or the Hub cache) whose config says CLIP:
        # transformers (3-4 s of imports) is needed only for a tower or a preprocessing recipe
        # the plain ones in core.models.lighttext do not cover, or on a GPU.
        self._folder = _model_folder(model, source)
        config = read_json(self._folder / "config.json") if self._folder else {}
        projection = config.get("projection_dim")
        if config.get("model_type") == "clip" and isinstance(projection, int) and projection > 0:
            self.dim = projection
        else:
            self._load_parts()
            self.dim = int(self._config.projection_dim)

    @property
    def dtype(self) -> Any:
        """The torch dtype of the forward passes (imports torch)."""
        import torch

        return getattr(torch, self.dtype_name)

    def _load_parts(self) -> None:
        """Config, image processor and tokenizer through transformers (once)."""
        if self._parts_loaded:  # every image batch passes here: no lock once loaded
            return
        with self._parts_lock:
            if self._parts_loaded:
                return
            with LOAD_LOCK:  # transformers' lazy first import is not thread-safe either
                from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil
            source = self._source
            try:
                with LOAD_LOCK:
                    config = self._load(CLIPConfig, source)
                    # The PIL processor directly: without torchvision AutoProcessor warns and
                    # falls back.
                    processor = self._load(CLIPImageProcessorPil, source)
                    tokenizer = self._load(AutoTokenizer, source)
            except ModelError:
                raise
            except OSError as exc:
                raise ModelUnavailable(_missing_model_message(self.model_id, _short(exc))) from exc
            except (ValueError, KeyError) as exc:
                raise ModelUnavailable(f"{self.model_id!r} is not a CLIP model folder: "
                                 f"{_short(exc)}") from exc
            self._config = config
            self._processor = processor
            self._tokenizer = tokenizer
            size = processor.crop_size or {}
            self.input_side = int(size.get("height", 224)) if isinstance(size, dict) else 224
            self._fast = _FastPreprocess.from_processor(processor)
            self._parts_loaded = True

    def _tower(self, which: str) -> Any:
        """The image or text tower with its projection (caller holds ``self._lock``)."""
        current = self._vision_tower if which == "vision" else self._text_tower
        if current is not None:
            return current
        self._load_parts()
        from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

        cls = CLIPVisionModelWithProjection if which == "vision" else \
            CLIPTextModelWithProjection
        # The tower's own config must carry the model's projection size (it lives on the
        # top-level CLIP config; the sub-config's default, 512, would not fit the weights).
        sub = copy.deepcopy(self._config.vision_config if which == "vision"
                            else self._config.text_config)
        sub.projection_dim = self._config.projection_dim
        from transformers.utils import logging as hf_logging

        try:
            with LOAD_LOCK:
                # Loading one tower from a whole-CLIP checkpoint reports the other tower's
                # weights as "unexpected": expected here, and not worth a screen of warnings.
                hf_logging.set_verbosity_error()
                tower = self._load(cls, self._source, dtype=self.dtype, config=sub)
        except OSError as exc:
            raise ModelUnavailable(_missing_model_message(self.model_id, _short(exc))) from exc
        except (ValueError, KeyError) as exc:
            raise ModelUnavailable(f"{self.model_id!r} is not a CLIP model folder: "
                             f"{_short(exc)}") from exc
        tower.to(self.device)
        tower.eval()
        log.info("CLIP %s %s tower loaded on %s (%s), dim %d", self.model_id, which,
                 self.device, str(self.dtype).removeprefix("torch."), self.dim)
        if which == "vision":
            self._vision_tower = tower
        else:
            self._text_tower = tower
        return tower

    @staticmethod
    def _load(cls: Any, source: str, **kwargs: Any) -> Any:
        # Try the local cache first: offline, an online attempt can stall on DNS/timeouts.
        if not Path(source).is_dir() and os.environ.get("HF_HUB_OFFLINE") != "1":
            try:
                return cls.from_pretrained(source, local_files_only=True, **kwargs)
            except OSError:
                pass
            why = _hub_unreachable()
            if why is not None:
                raise ModelUnavailable(_missing_model_message(source, why))
        return cls.from_pretrained(source, **kwargs)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Resize/crop/normalise to model input (float32, N x 3 x S x S). CPU only, no lock."""
        # A cheap integer box reduction first, keeping the short side >= 2x the input side:
        # the processor's bicubic resize of a full photo costs 2x more (10 vs 5 ms for
        # 1280x960) for the same vectors (cosine > 0.9999, benchmarks/embed_throughput.py).
        fast = self._light_preprocess()
        if fast is None:
            self._load_parts()
            fast = self._fast
        small = [_shrink(im, 2 * self.input_side) for im in images]
        if fast is not None:
            return np.stack([fast.apply(im) for im in small])
        out = self._processor(images=small, return_tensors="np")
        return np.asarray(out["pixel_values"], dtype=np.float32)

    def _light_preprocess(self) -> _FastPreprocess | None:
        """The standard recipe read from the model folder's JSON, without importing
        transformers; None when the folder's settings are anything else (the processor then)."""
        if not self._json_checked:
            with self._parts_lock:
                if not self._json_checked:
                    fast = _FastPreprocess.from_json(processor_json(self._folder)) \
                        if self._folder is not None else None
                    if fast is not None:
                        self.input_side = fast.crop_h
                    self._json_fast = fast
                    self._json_checked = True
        return self._json_fast

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            light = self._light_image()
            if light is not None and tuple(pixels.shape[-2:]) == (light.side, light.side):
                return _normalise_np(light(pixels))
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(pixels).to(self.device, dtype=self.dtype)
                tower = self._tower("vision")
                return _normalise(tower(pixel_values=x).image_embeds)

    def embed_pixel_list(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`embed_pixels` for single images' pixels (each 3 x S x S), as the
        micro-batcher collects them. On CUDA they go to the GPU through :meth:`_staged`."""
        if not pixels:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.device != "cuda":
            return self.embed_pixels(np.stack(pixels))
        with self._lock:
            return self._staged(pixels, pin=True)

    def _staged(self, pixels: Sequence[np.ndarray], *, pin: bool) -> np.ndarray:
        """One forward pass whose input is stacked straight into a page-locked host buffer,
        in the model's half precision when it runs in fp16, and copied to the device in one
        asynchronous transfer: pageable memory is copied twice by the driver and moves at a
        fraction of the bus's speed, and fp32 doubles the bytes. The buffer is kept for the
        next batch (allocating page-locked memory is slow); reusing it is safe because the
        result's copy back, on the same stream, waits for this batch to finish. Caller holds
        ``self._lock``; ``pin`` is False only where there is no GPU to pin for."""
        import torch

        stage_dtype = torch.float16 if self.dtype_name == "float16" else torch.float32
        shape = (len(pixels), *pixels[0].shape)
        buf = self._staging
        if buf is None or buf.shape[0] < shape[0] or tuple(buf.shape[1:]) != shape[1:] \
                or buf.dtype != stage_dtype:
            buf = None
            if pin and self._pin_ok:
                try:
                    buf = torch.empty(shape, dtype=stage_dtype, pin_memory=True)
                except RuntimeError as exc:  # a sandbox or driver that refuses to lock pages
                    log.warning("page-locked memory is unavailable (%s): batches go to the GPU"
                                " from ordinary memory", _short(exc))
                    self._pin_ok = False
            if buf is None:
                buf = torch.empty(shape, dtype=stage_dtype)
            self._staging = buf
        host = buf[: shape[0]]
        np.stack(pixels, out=host.numpy())  # the cast to fp16, if any, happens in the copy
        with torch.inference_mode():
            # Asynchronous only from page-locked memory: from ordinary memory the copy must
            # finish before the buffer may be written again.
            x = host.to(self.device, non_blocking=host.is_pinned()).to(self.dtype)
            tower = self._tower("vision")
            return _normalise(tower(pixel_values=x).image_embeds)

    def _light_image(self) -> Any:
        """The plain image tower (numpy or torch, see core.models.lighttext), when it covers
        this model and its preprocessing is the standard recipe (CPU only; caller holds
        ``self._lock``); None means transformers."""
        if self._light_vision is not None:
            return self._light_vision
        if (self._folder is None or self.device != "cpu" or self._vision_tower is not None
                or self._no_light_vision or self._light_preprocess() is None):
            return None
        from core.models.lighttext import ClipVision

        with LOAD_LOCK:
            light = ClipVision.load(self._folder, self.dtype_name)
        if light is None or light.side != self.input_side:
            self._no_light_vision = True
            return None
        log.info("CLIP %s image tower loaded on cpu (numpy for a query image, torch %s for"
                 " batches), dim %d", self.model_id, self.dtype_name, self.dim)
        self._light_vision = light
        return light

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(self.preprocess(images))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            light = self._light()
            if light is not None:
                ids, mask = self._light_tokens(list(texts))
                return _normalise_np(light(ids, mask))
            return self._embed_texts_transformers(texts)

    def _embed_texts_transformers(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            self._load_parts()
            # Pad to the longest text in the batch, not to 77: 3-7x faster on CPU.
            tok = self._tokenizer(list(texts), padding=True, truncation=True, max_length=77,
                                  return_tensors="pt")
            tower = self._tower("text")
            out = tower(input_ids=tok["input_ids"].to(self.device),
                        attention_mask=tok["attention_mask"].to(self.device))
            return _normalise(out.text_embeds)

    def _light(self) -> Any:
        """The plain text tower (numpy or torch, see core.models.lighttext), when it covers
        this model (CPU only; caller holds ``self._lock``); None means transformers."""
        if self._light_text is not None:
            return self._light_text
        if (self._folder is None or self.device != "cpu" or self._text_tower is not None
                or self._no_light_text):
            return None
        from core.models.lighttext import ClipText, Tokens

        with LOAD_LOCK:
            light = ClipText.load(self._folder, self.dtype_name)
            if light is None:
                self._no_light_text = True  # not this model: never try again
                return None
            self._light_tokens = Tokens(self._folder, 77)
        log.info("CLIP %s text tower loaded on cpu (numpy for queries, torch %s for batches),"
                 " dim %d", self.model_id, self.dtype_name, self.dim)
        self._light_text = light
        return light


def _model_folder(model: str, source: str) -> Path | None:
    """The folder holding the model's files, without a network call: a local folder, or the
    Hub cache's snapshot when config, weights and tokenizer are all cached."""
    if _looks_local(model):
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model, "config.json")
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    need = ("model.safetensors", "tokenizer.json")
    return folder if all((folder / n).is_file() for n in need) else None


@dataclass(frozen=True)
class _FastPreprocess:
    """The standard CLIP recipe (short side -> S bicubic, centre crop, scale, normalise) in
    PIL + numpy: ~1.5 ms per image instead of ~7 for the generic processor, same vectors
    (tests/core/test_clip.py checks them against the processor). Used only when the
    processor's config is exactly that recipe; anything else goes through the processor."""

    side: int
    crop_h: int
    crop_w: int
    resample: int
    scale: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_processor(cls, p: Any) -> _FastPreprocess | None:
        try:
            size, crop = p.size, p.crop_size
            short = size["shortest_edge"] if isinstance(size, dict) else size.shortest_edge
            ch = crop["height"] if isinstance(crop, dict) else crop.height
            cw = crop["width"] if isinstance(crop, dict) else crop.width
            standard = (p.do_resize and p.do_center_crop and p.do_rescale and p.do_normalize
                        and short and ch and cw)
            if not standard:
                return None
            return cls(int(short), int(ch), int(cw), int(p.resample), float(p.rescale_factor),
                       np.asarray(p.image_mean, dtype=np.float32).reshape(3, 1, 1),
                       np.asarray(p.image_std, dtype=np.float32).reshape(3, 1, 1))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _FastPreprocess | None:
        """The same recipe from the processor's JSON settings (``core.models.lighttext.
        processor_json``), read the way transformers' CLIP processor reads them; None unless
        it is a CLIP processor whose sizes, mean and std are all given."""
        kind = str(d.get("image_processor_type") or d.get("feature_extractor_type") or "")
        if not kind.startswith(("CLIPImageProcessor", "CLIPFeatureExtractor")):
            return None
        try:
            size, crop = d["size"], d["crop_size"]
            short = size if isinstance(size, int) else size["shortest_edge"]
            ch, cw = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
            flags = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
            if not all(d.get(f, True) is True for f in flags):
                return None
            mean = np.asarray(d["image_mean"], dtype=np.float32).reshape(3, 1, 1)
            std = np.asarray(d["image_std"], dtype=np.float32).reshape(3, 1, 1)
            return cls(int(short), int(ch), int(cw), int(d.get("resample", 3)),
                       float(d.get("rescale_factor", 1 / 255)), mean, std)
        except (KeyError, TypeError, ValueError):
            return None

    def apply(self, image: Image.Image) -> np.ndarray:
        im = image if image.mode == "RGB" else image.convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = self.side, int(self.side * h / w)
        else:
            nw, nh = int(self.side * w / h), self.side
        im = im.resize((nw, nh), Image.Resampling(self.resample))
        top, left = (nh - self.crop_h) // 2, (nw - self.crop_w) // 2
        im = im.crop((left, top, left + self.crop_w, top + self.crop_h))
        arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) * self.scale
        return (arr - self.mean) / self.std


def _shrink(image: Image.Image, min_side: int) -> Image.Image:
    """Box-reduce by the largest integer factor that keeps the short side >= ``min_side``."""
    factor = min(image.size) // min_side
    return image.reduce(factor) if factor > 1 and image.mode in ("RGB", "RGBA", "L") else image


def _normalise(t: Any) -> np.ndarray:
    return _normalise_np(t.float().cpu().numpy())


def _normalise_np(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
