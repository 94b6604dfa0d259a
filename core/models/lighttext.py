"""Encoders in plain torch: CLIP's text and image towers and BERT-style sentence encoders
(MiniLM).

A text search needs two small forward passes, and indexing one image tower, but importing
transformers' model stack costs 3-4 s of every cold start (its modelling utilities pull in
dynamo, distributed tensors, loss functions...). These architectures are a few dozen lines
each, so they are written out here and read the same ``model.safetensors``, ``tokenizer.json``
and processor files. Anything they do not recognise (another architecture, options these do
not implement, missing files) returns None from the loaders, and the caller uses transformers
as before. tests/core/test_lighttext.py checks them against transformers' outputs.
"""

from __future__ import annotations

import json
import logging
import math
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

    def __call__(self, texts: list[str]) -> tuple[Any, Any]:
        import torch

        encs = self._tok.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, enc in enumerate(encs):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)


def _weights(path: Path, prefix: str, keys: list[str], dtype: Any) -> dict[str, Any] | None:
    from safetensors import safe_open

    out: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as f:
        present = set(f.keys())
        for key in keys:
            if prefix + key not in present:
                return None
            out[key] = f.get_tensor(prefix + key).to(dtype)
    return out


def _act(name: str) -> Any:
    import torch

    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return torch.nn.functional.gelu
    return None


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


def _clip_encoder(h: Any, w: dict[str, Any], layers: int, heads: int, eps: float, act: Any,
                  *, causal: bool) -> Any:
    """CLIP's pre-norm transformer layers (the same in both towers)."""
    from torch.nn import functional as F  # noqa: N812

    n, seq, dim = h.shape
    hd = dim // heads
    for i in range(layers):
        p = f"encoder.layers.{i}."
        x = F.layer_norm(h, (dim,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
        q, k, v = (F.linear(x, w[f"{p}self_attn.{t}_proj.weight"],
                            w[f"{p}self_attn.{t}_proj.bias"])
                   .view(n, seq, heads, hd).transpose(1, 2) for t in "qkv")
        # Text: causal attention; padding sits after the end token, so no query that matters
        # ever sees it (the pooled position is the end token). Images: every patch sees all.
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        a = a.transpose(1, 2).reshape(n, seq, dim)
        h = h + F.linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
        x = F.layer_norm(h, (dim,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        x = F.linear(act(F.linear(x, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
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
            or _act(str(cfg.get("hidden_act", "quick_gelu"))) is None):
        return None
    return {**defaults, **cfg}


def _clip_weights(folder: Path, tower: str, keys: list[str], projection: str, dtype: Any
                  ) -> dict[str, Any] | None:
    """A tower's weights (its own keys, the shared layer keys) and its projection."""
    path = folder / "model.safetensors"
    try:
        w = _weights(path, tower, keys, dtype)
        proj = _weights(path, "", [projection], dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        log.info("plain CLIP tower unavailable (%s): using transformers", exc)
        return None
    if w is None or proj is None:
        return None
    w.update(proj)
    return w


class _ClipTower:
    def __init__(self, cfg: dict[str, Any], w: dict[str, Any]) -> None:
        self.cfg, self.w = cfg, w
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-5))
        self.act = _act(str(cfg.get("hidden_act", "quick_gelu")))


class ClipText(_ClipTower):
    """CLIP's text transformer and projection -> unnormalised text embeddings."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, Any], eos_id: int) -> None:
        super().__init__(cfg, w)
        self.eos_id = eos_id

    @classmethod
    def load(cls, folder: Path, dtype: Any) -> ClipText | None:
        cfg = _clip_tower(folder, "text_config",
                          {"num_hidden_layers": 12, "num_attention_heads": 8})
        if cfg is None or not (folder / "tokenizer.json").is_file():
            return None
        keys = ["embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                "final_layer_norm.weight", "final_layer_norm.bias"]
        keys += _clip_layer_keys(int(cfg["num_hidden_layers"]))
        w = _clip_weights(folder, "text_model.", keys, "text_projection.weight", dtype)
        return None if w is None else cls(cfg, w, int(cfg.get("eos_token_id", 2)))

    def __call__(self, ids: Any, mask: Any) -> Any:
        import torch
        from torch.nn import functional as F  # noqa: N812

        w = self.w
        n, seq = ids.shape
        h = w["embeddings.token_embedding.weight"][ids] + \
            w["embeddings.position_embedding.weight"][:seq]
        dim = h.shape[-1]
        h = _clip_encoder(h, w, self.layers, self.heads, self.eps, self.act, causal=True)
        h = F.layer_norm(h, (dim,), w["final_layer_norm.weight"], w["final_layer_norm.bias"],
                         self.eps)
        if self.eos_id == 2:  # old configs: the end token has the highest id
            at = ids.to(torch.int).argmax(dim=-1)
        else:
            at = (ids.to(torch.int) == self.eos_id).int().argmax(dim=-1)
        pooled = h[torch.arange(n), at]
        return F.linear(pooled, w["text_projection.weight"])


class ClipVision(_ClipTower):
    """CLIP's vision transformer and projection -> unnormalised image embeddings, for pixel
    input at the size the model was trained on (what the standard preprocessing makes)."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, Any]) -> None:
        super().__init__(cfg, w)
        self.patch = int(cfg["patch_size"])
        self.side = int(cfg["image_size"])  # the pixel input it takes (side x side)

    @classmethod
    def load(cls, folder: Path, dtype: Any) -> ClipVision | None:
        cfg = _clip_tower(folder, "vision_config",
                          {"num_hidden_layers": 12, "num_attention_heads": 12,
                           "patch_size": 32, "image_size": 224})
        if cfg is None:
            return None
        keys = ["embeddings.patch_embedding.weight", "embeddings.class_embedding",
                "embeddings.position_embedding.weight", "pre_layrnorm.weight",
                "pre_layrnorm.bias", "post_layernorm.weight", "post_layernorm.bias"]
        keys += _clip_layer_keys(int(cfg["num_hidden_layers"]))
        w = _clip_weights(folder, "vision_model.", keys, "visual_projection.weight", dtype)
        grid = int(cfg["image_size"]) // int(cfg["patch_size"])
        if w is None or w["embeddings.position_embedding.weight"].shape[0] != grid * grid + 1:
            return None
        return cls(cfg, w)

    def __call__(self, pixels: Any) -> Any:
        import torch
        from torch.nn import functional as F  # noqa: N812

        w = self.w
        x = F.conv2d(pixels, w["embeddings.patch_embedding.weight"], stride=self.patch)
        x = x.flatten(2).transpose(1, 2)  # n x patches x dim
        n, _, dim = x.shape
        cls_token = w["embeddings.class_embedding"].expand(n, 1, dim)
        h = torch.cat([cls_token, x], dim=1)
        if h.shape[1] != w["embeddings.position_embedding.weight"].shape[0]:
            raise ValueError(f"pixel input {tuple(pixels.shape)} does not fit the model")
        h = h + w["embeddings.position_embedding.weight"]
        h = F.layer_norm(h, (dim,), w["pre_layrnorm.weight"], w["pre_layrnorm.bias"], self.eps)
        h = _clip_encoder(h, w, self.layers, self.heads, self.eps, self.act, causal=False)
        pooled = F.layer_norm(h[:, 0], (dim,), w["post_layernorm.weight"],
                              w["post_layernorm.bias"], self.eps)
        return F.linear(pooled, w["visual_projection.weight"])


def processor_json(folder: Path) -> dict[str, Any]:
    """The image processor's settings from a model folder: ``preprocessor_config.json`` (the
    Hub's CLIP models), else the ``image_processor`` part of ``processor_config.json`` (what
    recent transformers write); {} when neither is there."""
    flat = read_json(folder / "preprocessor_config.json")
    if flat:
        return flat
    nested = read_json(folder / "processor_config.json").get("image_processor")
    return nested if isinstance(nested, dict) else {}


class BertText:
    """A BERT encoder (MiniLM and friends) -> last hidden states."""

    def __init__(self, cfg: dict[str, Any], w: dict[str, Any]) -> None:
        self.cfg, self.w = cfg, w
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))

    @classmethod
    def load(cls, folder: Path) -> BertText | None:
        import torch

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
                w = _weights(weights, prefix, keys, torch.float32)
            except (OSError, ValueError, RuntimeError) as exc:
                log.info("plain text encoder unavailable (%s): using transformers", exc)
                return None
            if w is not None:
                return cls({"num_hidden_layers": 12, "num_attention_heads": 12, **cfg}, w)
        return None

    def __call__(self, ids: Any, mask: Any) -> Any:
        from torch.nn import functional as F  # noqa: N812

        w = self.w
        n, seq = ids.shape
        h = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq]
             + w["embeddings.token_type_embeddings.weight"][0])
        dim = h.shape[-1]
        h = F.layer_norm(h, (dim,), w["embeddings.LayerNorm.weight"],
                         w["embeddings.LayerNorm.bias"], self.eps)
        hd = dim // self.heads
        keep = mask[:, None, None, :].bool()  # padding is never attended to
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (F.linear(h, w[f"{p}attention.self.{t}.weight"],
                                w[f"{p}attention.self.{t}.bias"])
                       .view(n, seq, self.heads, hd).transpose(1, 2)
                       for t in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                               scale=1.0 / math.sqrt(hd))
            a = a.transpose(1, 2).reshape(n, seq, dim)
            a = F.linear(a, w[p + "attention.output.dense.weight"],
                         w[p + "attention.output.dense.bias"])
            h = F.layer_norm(a + h, (dim,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], self.eps)
            x = F.gelu(F.linear(h, w[p + "intermediate.dense.weight"],
                                w[p + "intermediate.dense.bias"]))
            x = F.linear(x, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            h = F.layer_norm(x + h, (dim,), w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], self.eps)
        return h
