"""The plain-torch text encoders give transformers' vectors, and are what a CPU search uses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from core.models.clip import ClipEmbedder
from core.models.lighttext import BertText, ClipText
from core.models.textembed import MiniLMEmbedder, bundled_model_dir

TEXTS = ["a photo of a cat", "psql: FATAL: password authentication failed for user \"app\"",
         "x", "déjà vu " * 60]  # the last one is truncated to the model's length


def _transformers_clip_text(folder: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPTextModelWithProjection

    cfg = CLIPConfig.from_pretrained(folder)
    sub = cfg.text_config
    sub.projection_dim = cfg.projection_dim
    model = CLIPTextModelWithProjection.from_pretrained(folder, config=sub).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        v = model(**enc).text_embeds.numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_clip_text_matches_transformers(tiny_clip: Path) -> None:
    clip = ClipEmbedder(str(tiny_clip), device="cpu", dtype="float32")
    ours = clip.embed_texts(TEXTS)
    assert clip._light_text is not None and clip._text_tower is None  # the plain path ran
    theirs = _transformers_clip_text(tiny_clip, TEXTS)
    assert np.allclose((ours * theirs).sum(1), 1.0, atol=1e-5)
    assert ours.shape == (len(TEXTS), clip.dim)


def test_minilm_matches_transformers() -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = bundled_model_dir()
    emb = MiniLMEmbedder()
    ours = emb.embed_batch(TEXTS)
    assert emb._light
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    enc = tok(TEXTS, padding=True, truncation=True, max_length=emb.max_tokens,
              return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    theirs = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.allclose((ours * theirs).sum(1), 1.0, atol=1e-5)


def test_unknown_architectures_fall_back(tmp_path: Path, tiny_clip: Path) -> None:
    import torch

    (tmp_path / "config.json").write_text('{"model_type": "roberta"}', encoding="utf-8")
    assert BertText.load(tmp_path) is None and ClipText.load(tmp_path, torch.float32) is None
    assert BertText.load(tiny_clip) is None  # a CLIP folder is not a BERT


@pytest.mark.parametrize("code", [
    "from core.models.clip import ClipEmbedder; import sys; "
    "c = ClipEmbedder(sys.argv[1], device='cpu'); c.embed_texts(['hello'])",
    "from core.models.textembed import MiniLMEmbedder; MiniLMEmbedder().embed_batch(['hi'])",
])
def test_text_search_models_do_not_import_transformers(code: str, tiny_clip: Path) -> None:
    import subprocess

    probe = code + "; import sys; assert 'transformers' not in sys.modules, 'imported'"
    proc = subprocess.run([sys.executable, "-c", probe, str(tiny_clip)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
