"""Encoders in plain torch and numpy: CLIP's text and image towers and BERT-style sentence
encoders (MiniLM).

A text search needs two small forward passes, and indexing one image tower, but importing
transformers' model stack costs 3-4 s of every cold start (its modelling utilities pull in
dynamo, distributed tensors, loss functions...). These architectures are a few dozen lines
each, so they are written out here and read the same ``model.safetensors``, ``tokenizer.json``
and processor files. Anything they do not recognise (another architecture, options these do
not implement, missing files) returns None from the loaders, and the caller uses transformers
as before. tests/core/test_lighttext.py checks them against transformers' outputs.

The encoders run on either of two array libraries, through the same code (``_TorchOps``,
``_NumpyOps``): a query of a few words is a few milliseconds of work in either, an image tens
of milliseconds, but importing torch alone costs a cold ``pixrag search`` 1.5 s. So a small
batch runs in numpy while nothing in the process has imported torch yet (see
:func:`use_numpy`); anything bigger (the passages and images of an index run), or anything
once torch is loaded, runs in torch, which is about 3x faster on batches. Both read the same
float32 weights; torch shares them when it runs in float32.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def read_json(path: Path) -> dict[str, Any]:
    """A model folder's JSON file as a dict; {} when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Tokens:
    """``tokenizer.json`` through the ``tokenizers`` library (what the fast tokenizers of
    transformers use underneath): ids and attention mask, right-padded to the longest."""

    def __init__(self, folder: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        pad = read_json(folder / "tokenizer_config.json").get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        pad_id = self._tok.token_to_id(pad) if isinstance(pad, str) else None
        self.pad_id = int(pad_id) if pad_id is not None else 0

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self._tok.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, enc in enumerate(encs):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return ids, mask


#: Items per batch that may run in numpy (queries: one text, a few with query expansion;
#: the image of an image query).
NUMPY_MAX_BATCH = 8


#: A process that keeps querying (an evaluation, a query-only host) is better off paying for
#: torch once: a query takes ~50 ms in numpy against ~23 ms in torch (ViT-B/32 text tower and
#: MiniLM, bf16, 2 cores), so the 1.5 s import pays for itself after about 60 queries.
NUMPY_MAX_CALLS = 64
_numpy_calls = 0


def use_numpy(batch: int) -> bool:
    """Whether a batch of this size runs in numpy: small, torch not imported yet (a cold
    search would pay 1.5 s to import it; once loaded, torch is as quick or quicker), and not
    yet ``NUMPY_MAX_CALLS`` batches run that way."""
    global _numpy_calls
    if batch > NUMPY_MAX_BATCH or "torch" in sys.modules or _numpy_calls >= NUMPY_MAX_CALLS:
        return False
    _numpy_calls += 1  # a race between threads only moves the switch by a batch
    return True


def batches_in_torch() -> None:
    """From now on every batch runs in torch: called when a process starts indexing, and by
    long-running ones (the bots) at start. Index batches may be small (one chat upload at a
    time), and in numpy an image costs 3-4x the CPU (130-160 ms against 30-45 ms for the
    ViT-B/32 tower on 2 cores): worth the import once there is more than a query to do."""
    import torch  # noqa: F401  (importing it is the switch, see use_numpy)


#: safetensors' element types that numpy reads directly (the file is little-endian).
_NP_TYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}


def _weights(path: Path, prefix: str, keys: list[str]) -> dict[str, np.ndarray] | None:
    """float32 arrays of ``keys`` (after ``prefix``) from a safetensors file; None when one is
    missing or not a float. float32 tensors are views of a private memory map of the file:
    nothing is read until used, the page cache is shared, and torch can use the same memory."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(size))
        except ValueError as exc:
            raise ValueError(f"{path.name} is not a safetensors file") from exc
        if not isinstance(header, dict):
            raise ValueError(f"{path.name} is not a safetensors file")
        # Copy-on-write: writable arrays (torch.from_numpy wants them), never written back.
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out: dict[str, np.ndarray] = {}
    for key in keys:
        meta = header.get(prefix + key)
        if not isinstance(meta, dict):
            return None
        try:
            kind, shape = str(meta["dtype"]), [int(n) for n in meta["shape"]]
            begin, end = (8 + size + int(o) for o in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: bad entry for {prefix + key}") from exc
        if kind == "BF16":  # numpy has no bfloat16: it is float32's upper half
            raw = np.frombuffer(mapped, dtype="<u2", count=(end - begin) // 2, offset=begin)
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        elif kind in _NP_TYPES:
            arr = np.frombuffer(mapped, dtype=_NP_TYPES[kind],
                                count=(end - begin) // np.dtype(_NP_TYPES[kind]).itemsize,
                                offset=begin).astype(np.float32, copy=False)
        else:
            return None
        out[key] = arr.reshape(shape)
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26; numpy has no erf): exact GELU's
    error stays far below float32 rounding of the layers around it."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
        -1.453152027 + t * 1.061405429)))) * np.exp(-a * a)
    return np.copysign(y, x)


class _NumpyOps:
    """The handful of tensor operations the encoders use, in numpy (float32)."""

    name = "numpy"

    @staticmethod
    def linear(x: Any, w: Any, b: Any = None) -> Any:
        y = x @ w.T
        return y if b is None else y + b

    @staticmethod
    def layer_norm(x: Any, w: Any, b: Any, eps: float) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = np.square(x - mean).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w + b

    @staticmethod
    def heads(x: Any, heads: int) -> Any:
        n, seq, dim = x.shape
        return x.reshape(n, seq, heads, dim // heads).transpose(0, 2, 1, 3)

    @staticmethod
    def merge(a: Any) -> Any:
        n, heads, seq, hd = a.shape
        return a.transpose(0, 2, 1, 3).reshape(n, seq, heads * hd)

    @staticmethod
    def attention(q: Any, k: Any, v: Any, *, causal: bool = False, keep: Any = None) -> Any:
        s = (q @ k.swapaxes(-1, -2)) * np.float32(1.0 / math.sqrt(q.shape[-1]))
        if causal:
            seq = s.shape[-1]
            s = np.where(np.tril(np.ones((seq, seq), dtype=bool)), s, -np.inf)
        if keep is not None:
            s = np.where(keep, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        return (s / s.sum(-1, keepdims=True)) @ v

    @staticmethod
    def gelu(x: Any) -> Any:
        return 0.5 * x * (1.0 + _erf(x * np.float32(1 / math.sqrt(2))))

    @staticmethod
    def quick_gelu(x: Any) -> Any:
        return x / (1.0 + np.exp(-1.702 * x))

    @staticmethod
    def rows(h: Any, at: np.ndarray) -> Any:
        return h[np.arange(len(at)), at]

    @staticmethod
    def patch_embed(x: Any, w: Any, patch: int) -> Any:
        """A convolution whose stride is its kernel: each patch's pixels times the kernel."""
        n, c, height, width = x.shape
        gh, gw = height // patch, width // patch
        x = x.reshape(n, c, gh, patch, gw, patch).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(n, gh * gw, c * patch * patch) @ w.reshape(w.shape[0], -1).T

    @staticmethod
    def prepend(x: Any, token: Any) -> Any:
        n, _, dim = x.shape
        return np.concatenate([np.broadcast_to(token, (n, 1, dim)), x], axis=1)

    @staticmethod
    def mask(keep: np.ndarray) -> Any:
        return keep.astype(bool)[:, None, None, :]


class _TorchOps:
    """The same operations in torch (whatever dtype the weights are in)."""

    name = "torch"

    def __init__(self) -> None:
        import torch
        from torch.nn import functional as F  # noqa: N812

        self.torch, self.F = torch, F

    def linear(self, x: Any, w: Any, b: Any = None) -> Any:
        return self.F.linear(x, w, b)

    def layer_norm(self, x: Any, w: Any, b: Any, eps: float) -> Any:
        return self.F.layer_norm(x, (x.shape[-1],), w, b, eps)

    @staticmethod
    def heads(x: Any, heads: int) -> Any:
        n, seq, dim = x.shape
        return x.view(n, seq, heads, dim // heads).transpose(1, 2)

    @staticmethod
    def merge(a: Any) -> Any:
        n, heads, seq, hd = a.shape
        return a.transpose(1, 2).reshape(n, seq, heads * hd)

    def attention(self, q: Any, k: Any, v: Any, *, causal: bool = False,
                  keep: Any = None) -> Any:
        return self.F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=causal,
                                                   scale=1.0 / math.sqrt(q.shape[-1]))

    def gelu(self, x: Any) -> Any:
        return self.F.gelu(x)

    def quick_gelu(self, x: Any) -> Any:
        return x * self.torch.sigmoid(1.702 * x)

    def rows(self, h: Any, at: np.ndarray) -> Any:
        return h[self.torch.arange(len(at)), self.torch.from_numpy(at)]

    def patch_embed(self, x: Any, w: Any, patch: int) -> Any:
        return self.F.conv2d(x, w, stride=patch).flatten(2).transpose(1, 2)

    def prepend(self, x: Any, token: Any) -> Any:
        n, _, dim = x.shape
        return self.torch.cat([token.expand(n, 1, dim), x], dim=1)

    def mask(self, keep: np.ndarray) -> Any:
        return self.torch.from_numpy(keep).bool()[:, None, None, :]


_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}  # config name -> ops method


class _Encoder:
    """Float32 numpy weights, and the same in torch (in the model's dtype) once a batch runs
    there; afterwards everything runs in torch, and the numpy copy is dropped unless torch
    shares it (float32)."""

    def __init__(self, w: dict[str, np.ndarray], dtype: str = "float32") -> None:
        self.w: dict[str, np.ndarray] | None = w
        self.dtype = dtype  # the torch dtype's name
        self._pt: dict[str, Any] | None = None
        self._ops: _TorchOps | None = None

    def backend(self, batch: int) -> str:
        return "numpy" if self._pt is None and self.w is not None and use_numpy(batch) \
            else "torch"

    def torch_weights(self) -> tuple[_TorchOps, dict[str, Any]]:
        if self._pt is None or self._ops is None:
            self._ops = _TorchOps()
            torch = self._ops.torch
            dtype = getattr(torch, self.dtype)
            assert self.w is not None
            self._pt = {k: torch.from_numpy(v).to(dtype) for k, v in self.w.items()}
            if dtype != torch.float32:
                self.w = None
        return self._ops, self._pt

    def run(self, forward: Any, backend: str, *args: np.ndarray) -> np.ndarray:
        """``forward(ops, weights, *args)`` on ``backend``, as a float32 numpy array."""
        if backend == "numpy" and self.w is not None:
            return np.asarray(forward(_NumpyOps, self.w, *args), dtype=np.float32)
        ops, w = self.torch_weights()
        with ops.torch.inference_mode():
            return forward(ops, w, *args).float().numpy()


def _clip_layer_keys(layers: int) -> list[str]:
    keys: list[str] = []
    for i in range(layers):
        p = f"encoder.layers.{i}."
        keys += [p + n for n in (
            "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight",
            "layer_norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
            "mlp.fc2.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
            "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
            "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias")]
    return keys


def _clip_encoder(ops: Any, h: Any, w: dict[str, Any], layers: int, heads: int, eps: float,
                  act: str, *, causal: bool) -> Any:
    """CLIP's pre-norm transformer layers (the same in both towers)."""
    activation = getattr(ops, act)
    for i in range(layers):
        p = f"encoder.layers.{i}."
        x = ops.layer_norm(h, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
        q, k, v = (ops.heads(ops.linear(x, w[f"{p}self_attn.{t}_proj.weight"],
                                        w[f"{p}self_attn.{t}_proj.bias"]), heads)
                   for t in "qkv")
        # Text: causal attention; padding sits after the end token, so no query that matters
        # ever sees it (the pooled position is the end token). Images: every patch sees all.
        a = ops.merge(ops.attention(q, k, v, causal=causal))
        h = h + ops.linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
        x = ops.layer_norm(h, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        x = ops.linear(activation(ops.linear(x, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                       w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        h = h + x
    return h


def _clip_tower(folder: Path, part: str, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """One tower's settings (``text_config`` or ``vision_config``) of a CLIP folder with
    safetensors weights and an activation implemented here; None otherwise."""
    config = read_json(folder / "config.json")
    cfg = config.get(part)
    if (config.get("model_type") != "clip" or not isinstance(cfg, dict)
            or not (folder / "model.safetensors").is_file()
            or str(cfg.get("hidden_act", "quick_gelu")) not in _ACTS):
        return None
    return {**defaults, **cfg}


def _clip_weights(folder: Path, tower: str, keys: list[str], projection: str
                  ) -> dict[str, np.ndarray] | None:
    """A tower's weights (its own keys, the shared layer keys) and its projection."""
    path = folder / "model.safetensors"
    try:
        w = _weights(path, tower, keys)
        proj = _weights(path, "", [projection])
    except (OSError, ValueError, RuntimeError) as exc:
        log.info("plain CLIP tower unavailable (%s): using transformers", exc)
        return None
    if w is None or proj is None:
        return None
    w.update(proj)
    return w


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


class _ClipTower(_Encoder):
    def __init__(self, cfg: dict[str, Any], w: dict[str, np.ndarray], dtype: Any) -> None:
        super().__init__(w, _dtype_name(dtype))
        self.cfg = cfg
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-5))
        self.act = _ACTS[str(cfg.get("hidden_act", "quick_gelu"))]


class ClipText(_ClipTower):
    """CLIP's text transformer and projection -> unnormalised text embeddings."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, np.ndarray], eos_id: int,
                 dtype: Any = "float32") -> None:
        super().__init__(cfg, w, dtype)
        self.eos_id = eos_id

    @classmethod
    def load(cls, folder: Path, dtype: Any = "float32") -> ClipText | None:
        """``dtype``: torch's, for batches that run there (a torch dtype or its name)."""
        cfg = _clip_tower(folder, "text_config",
                          {"num_hidden_layers": 12, "num_attention_heads": 8})
        if cfg is None or not (folder / "tokenizer.json").is_file():
            return None
        keys = ["embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                "final_layer_norm.weight", "final_layer_norm.bias"]
        keys += _clip_layer_keys(int(cfg["num_hidden_layers"]))
        w = _clip_weights(folder, "text_model.", keys, "text_projection.weight")
        return None if w is None else cls(cfg, w, int(cfg.get("eos_token_id", 2)), dtype)

    def __call__(self, ids: np.ndarray, mask: np.ndarray, backend: str = "") -> np.ndarray:
        """Token ids and mask (as :class:`Tokens` makes them) -> embeddings; ``backend``:
        "numpy" or "torch", by default :meth:`backend`'s choice."""
        # The pooled position: the end token (old configs: the highest id).
        at = ids.argmax(-1) if self.eos_id == 2 else (ids == self.eos_id).argmax(-1)
        return self.run(self._forward, backend or self.backend(len(ids)), ids, at)

    def _forward(self, ops: Any, w: dict[str, Any], ids: np.ndarray, at: np.ndarray) -> Any:
        seq = ids.shape[1]
        if ops.name == "torch":
            ids = ops.torch.from_numpy(ids)
        h = w["embeddings.token_embedding.weight"][ids] + \
            w["embeddings.position_embedding.weight"][:seq]
        h = _clip_encoder(ops, h, w, self.layers, self.heads, self.eps, self.act, causal=True)
        h = ops.layer_norm(h, w["final_layer_norm.weight"], w["final_layer_norm.bias"],
                           self.eps)
        return ops.linear(ops.rows(h, at), w["text_projection.weight"])


class ClipVision(_ClipTower):
    """CLIP's vision transformer and projection -> unnormalised image embeddings, for pixel
    input at the size the model was trained on (what the standard preprocessing makes)."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, np.ndarray], dtype: Any) -> None:
        super().__init__(cfg, w, dtype)
        self.patch = int(cfg["patch_size"])
        self.side = int(cfg["image_size"])  # the pixel input it takes (side x side)

    @classmethod
    def load(cls, folder: Path, dtype: Any = "float32") -> ClipVision | None:
        """``dtype``: torch's, for batches that run there (a torch dtype or its name)."""
        cfg = _clip_tower(folder, "vision_config",
                          {"num_hidden_layers": 12, "num_attention_heads": 12,
                           "patch_size": 32, "image_size": 224})
        if cfg is None:
            return None
        keys = ["embeddings.patch_embedding.weight", "embeddings.class_embedding",
                "embeddings.position_embedding.weight", "pre_layrnorm.weight",
                "pre_layrnorm.bias", "post_layernorm.weight", "post_layernorm.bias"]
        keys += _clip_layer_keys(int(cfg["num_hidden_layers"]))
        w = _clip_weights(folder, "vision_model.", keys, "visual_projection.weight")
        grid = int(cfg["image_size"]) // int(cfg["patch_size"])
        if w is None or w["embeddings.position_embedding.weight"].shape[0] != grid * grid + 1:
            return None
        return cls(cfg, w, dtype)

    def __call__(self, pixels: np.ndarray, backend: str = "") -> np.ndarray:
        """Pixels (n x 3 x side x side, float32) -> embeddings; ``backend``: "numpy" or
        "torch", by default :meth:`backend`'s choice (numpy for a query image or two)."""
        if tuple(pixels.shape[-2:]) != (self.side, self.side):
            raise ValueError(f"pixel input {tuple(pixels.shape)} does not fit the model")
        return self.run(self._forward, backend or self.backend(len(pixels)), pixels)

    def _forward(self, ops: Any, w: dict[str, Any], pixels: np.ndarray) -> Any:
        if ops.name == "torch":
            torch = ops.torch
            x: Any = torch.from_numpy(pixels).to(getattr(torch, self.dtype))
        else:
            x = pixels
        h = ops.prepend(ops.patch_embed(x, w["embeddings.patch_embedding.weight"], self.patch),
                        w["embeddings.class_embedding"])
        h = h + w["embeddings.position_embedding.weight"]
        h = ops.layer_norm(h, w["pre_layrnorm.weight"], w["pre_layrnorm.bias"], self.eps)
        h = _clip_encoder(ops, h, w, self.layers, self.heads, self.eps, self.act, causal=False)
        pooled = ops.layer_norm(h[:, 0], w["post_layernorm.weight"], w["post_layernorm.bias"],
                                self.eps)
        return ops.linear(pooled, w["visual_projection.weight"])


def processor_json(folder: Path) -> dict[str, Any]:
    """The image processor's settings from a model folder: ``preprocessor_config.json`` (the
    Hub's CLIP models), else the ``image_processor`` part of ``processor_config.json`` (what
    recent transformers write); {} when neither is there."""
    flat = read_json(folder / "preprocessor_config.json")
    if flat:
        return flat
    nested = read_json(folder / "processor_config.json").get("image_processor")
    return nested if isinstance(nested, dict) else {}


class BertText(_Encoder):
    """A BERT encoder (MiniLM and friends) -> last hidden states (float32 throughout)."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> None:
        super().__init__(w)
        self.cfg = cfg
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))

    @classmethod
    def load(cls, folder: Path) -> BertText | None:
        cfg = read_json(folder / "config.json")
        weights = folder / "model.safetensors"
        if (cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu"
                or cfg.get("position_embedding_type", "absolute") != "absolute"
                or not weights.is_file() or not (folder / "tokenizer.json").is_file()):
            return None
        keys = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                "embeddings.LayerNorm.bias"]
        for i in range(int(cfg.get("num_hidden_layers", 12))):
            p = f"encoder.layer.{i}."
            keys += [p + n for n in (
                "attention.self.query.weight", "attention.self.query.bias",
                "attention.self.key.weight", "attention.self.key.bias",
                "attention.self.value.weight", "attention.self.value.bias",
                "attention.output.dense.weight", "attention.output.dense.bias",
                "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
                "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias")]
        for prefix in ("", "bert."):
            try:
                w = _weights(weights, prefix, keys)
            except (OSError, ValueError, RuntimeError) as exc:
                log.info("plain text encoder unavailable (%s): using transformers", exc)
                return None
            if w is not None:
                return cls({"num_hidden_layers": 12, "num_attention_heads": 12, **cfg}, w)
        return None

    def __call__(self, ids: np.ndarray, mask: np.ndarray, backend: str = "") -> np.ndarray:
        """Token ids and mask (as :class:`Tokens` makes them) -> last hidden states."""
        return self.run(self._forward, backend or self.backend(len(ids)), ids, mask)

    def _forward(self, ops: Any, w: dict[str, Any], ids: np.ndarray, mask: np.ndarray) -> Any:
        seq = ids.shape[1]
        keep = ops.mask(mask)  # padding is never attended to
        if ops.name == "torch":
            ids = ops.torch.from_numpy(ids)
        h = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq]
             + w["embeddings.token_type_embeddings.weight"][0])
        h = ops.layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                           self.eps)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (ops.heads(ops.linear(h, w[f"{p}attention.self.{t}.weight"],
                                            w[f"{p}attention.self.{t}.bias"]), self.heads)
                       for t in ("query", "key", "value"))
            a = ops.merge(ops.attention(q, k, v, keep=keep))
            a = ops.linear(a, w[p + "attention.output.dense.weight"],
                           w[p + "attention.output.dense.bias"])
            h = ops.layer_norm(a + h, w[p + "attention.output.LayerNorm.weight"],
                               w[p + "attention.output.LayerNorm.bias"], self.eps)
            x = ops.gelu(ops.linear(h, w[p + "intermediate.dense.weight"],
                                    w[p + "intermediate.dense.bias"]))
            x = ops.linear(x, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            h = ops.layer_norm(x + h, w[p + "output.LayerNorm.weight"],
                               w[p + "output.LayerNorm.bias"], self.eps)
        return h
