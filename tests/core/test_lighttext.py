"""The plain encoders give transformers' vectors, and are what the CPU uses: a search
never imports transformers, nor does indexing images with a standard CLIP folder; a query
runs in numpy, so a cold search does not import torch either."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from core.models import lighttext
from core.models.clip import ClipEmbedder, _FastPreprocess, gpu_possible
from core.models.lighttext import BertText, ClipText, ClipVision, Tokens, processor_json
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


def _images() -> list[object]:
    from PIL import Image

    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            for h, w in ((300, 400), (640, 200), (32, 32), (1000, 750))]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_clip_images_match_transformers(tiny_clip: Path, dtype: str) -> None:
    ours = ClipEmbedder(str(tiny_clip), device="cpu", dtype=dtype)
    v = ours.embed_images(_images())
    assert ours._light_vision is not None and ours._vision_tower is None  # the plain path ran
    theirs = ClipEmbedder(str(tiny_clip), device="cpu", dtype=dtype)
    theirs._no_light_vision = True
    theirs._load_parts()
    w = theirs.embed_pixels(theirs.preprocess(_images()))
    assert theirs._vision_tower is not None
    assert np.allclose((v * w).sum(1), 1.0, atol=1e-5)
    # The recipe read from the JSON is the one transformers' processor reads.
    a, b = ours._json_fast, theirs._fast
    assert a is not None and b is not None
    assert (a.side, a.crop_h, a.crop_w, a.resample, a.scale) == \
        (b.side, b.crop_h, b.crop_w, b.resample, b.scale)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.std, b.std)


def test_hub_style_preprocessor_json_is_read(tmp_path: Path, tiny_clip: Path) -> None:
    """The Hub's CLIP folders carry ``preprocessor_config.json`` with plain int sizes."""
    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip, folder)
    nested = json.loads((folder / "processor_config.json").read_text())["image_processor"]
    side = nested["crop_size"]["height"]
    flat = {"feature_extractor_type": "CLIPFeatureExtractor", "size": side, "crop_size": side,
            "do_resize": True, "do_center_crop": True, "do_normalize": True, "resample": 3,
            "image_mean": nested["image_mean"], "image_std": nested["image_std"]}
    (folder / "preprocessor_config.json").write_text(json.dumps(flat))
    fast = _FastPreprocess.from_json(processor_json(folder))
    assert fast is not None and (fast.side, fast.crop_h, fast.scale) == (side, side, 1 / 255)
    clip = ClipEmbedder(str(folder), device="cpu", dtype="float32")
    assert clip.embed_images(_images()).shape == (4, clip.dim)
    assert clip._light_vision is not None


def test_other_preprocessing_goes_through_transformers(tmp_path: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip, folder)
    doc = json.loads((folder / "processor_config.json").read_text())
    doc["image_processor"]["do_center_crop"] = False  # squash, not crop: not the plain recipe
    doc["image_processor"]["size"] = {"height": 32, "width": 32}
    (folder / "processor_config.json").write_text(json.dumps(doc))
    assert _FastPreprocess.from_json(processor_json(folder)) is None
    clip = ClipEmbedder(str(folder), device="cpu", dtype="float32")
    v = clip.embed_images(_images())
    assert clip._light_vision is None and clip._vision_tower is not None
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


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
    assert ClipVision.load(tmp_path, torch.float32) is None


@pytest.mark.parametrize("code", [
    "from core.models.clip import ClipEmbedder; import sys; "
    "c = ClipEmbedder(sys.argv[1], device='cpu'); c.embed_texts(['hello'])",
    "from core.models.textembed import MiniLMEmbedder; MiniLMEmbedder().embed_batch(['hi'])",
    "from core.models.clip import ClipEmbedder; import sys; from PIL import Image; "
    "c = ClipEmbedder(sys.argv[1], device='cpu'); c.embed_images([Image.new('RGB', (64, 48))])",
])
def test_cpu_models_do_not_import_transformers(code: str, tiny_clip: Path) -> None:
    import subprocess

    probe = code + "; import sys; assert 'transformers' not in sys.modules, 'imported'"
    proc = subprocess.run([sys.executable, "-c", probe, str(tiny_clip)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def test_text_towers_agree_in_numpy_and_torch(tiny_clip: Path) -> None:
    clip = ClipText.load(tiny_clip, "float32")
    assert clip is not None
    ids, mask = Tokens(tiny_clip, 77)(TEXTS)
    in_numpy = clip(ids, mask, "numpy")
    assert clip._pt is None  # torch was not needed
    in_torch = clip(ids, mask, "torch")
    assert np.all(_cos(in_numpy, in_torch) > 1 - 1e-5)
    assert np.all(_cos(in_numpy, _transformers_clip_text(tiny_clip, TEXTS)) > 1 - 1e-5)

    folder = bundled_model_dir()
    bert = BertText.load(folder)
    assert bert is not None
    ids, mask = Tokens(folder, 256)(TEXTS)  # padded: the mask must hide the padding
    a, b = bert(ids, mask, "numpy"), bert(ids, mask, "torch")
    real = mask.astype(bool)
    assert np.all(_cos(a[real], b[real]) > 1 - 1e-5)


def test_image_tower_agrees_in_numpy_and_torch(tiny_clip: Path) -> None:
    clip = ClipEmbedder(str(tiny_clip), device="cpu", dtype="float32")
    pixels = clip.preprocess(_images())
    tower = ClipVision.load(tiny_clip, "float32")
    assert tower is not None
    in_numpy = tower(pixels, "numpy")
    assert tower._pt is None
    in_torch = tower(pixels, "torch")
    assert np.all(_cos(in_numpy, in_torch) > 1 - 1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        tower(pixels[:, :, :8, :8], "numpy")


def test_queries_run_in_numpy_and_batches_in_torch(monkeypatch: pytest.MonkeyPatch,
                                                   tiny_clip: Path) -> None:
    # In this process torch is imported (the tests use it), which alone sends every batch to
    # torch; pretend it is not, as in a cold `pixrag search`.
    monkeypatch.setattr(lighttext, "use_numpy", lambda n: n <= lighttext.NUMPY_MAX_BATCH)
    clip = ClipEmbedder(str(tiny_clip), device="cpu", dtype="bfloat16")
    query = clip.embed_texts(TEXTS[:2])
    tower = clip._light_text
    assert tower is not None and tower._pt is None and tower.w is not None  # numpy ran
    assert np.all(_cos(query, _transformers_clip_text(tiny_clip, TEXTS[:2])) > 1 - 1e-5)
    many = clip.embed_texts(TEXTS * 3)  # more than a query's worth: torch, in bfloat16
    assert tower._pt is not None and tower.w is None  # the float32 copy is gone
    assert np.all(_cos(many[:2], query) > 0.999)
    assert tower.backend(1) == "torch"  # from now on, torch only

    minilm = MiniLMEmbedder()
    one = minilm.embed_batch(TEXTS[:1])
    assert minilm._model._pt is None  # numpy
    both = MiniLMEmbedder().embed_batch(TEXTS * 3)  # torch
    assert np.all(_cos(one, both[:1]) > 1 - 1e-5)


def test_weights_read_from_every_float_type(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16),
               "c": torch.randn(2, 2).to(torch.float16), "n": torch.arange(4)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    w = lighttext._weights(path, "", ["a", "b", "c"])
    assert w is not None
    for key in "abc":
        assert w[key].dtype == np.float32
        assert np.array_equal(w[key], tensors[key].float().numpy())
    assert lighttext._weights(path, "", ["a", "missing"]) is None
    assert lighttext._weights(path, "", ["n"]) is None  # integers: not a float weight
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(ValueError, match="not a safetensors file"):
        lighttext._weights(tmp_path / "bad.safetensors", "", ["a"])


@pytest.mark.skipif(gpu_possible(), reason="a GPU may be here: device auto imports torch")
def test_cold_queries_do_not_import_torch(tmp_path: Path, tiny_clip: Path) -> None:
    """`pixrag search` and `similar` in a fresh process: the answer comes without torch or
    transformers (imported, they cost a cold search 1.5 s and 3-4 s), with the hits torch
    gives. Indexing, even of a few images, runs its batches in torch (3-4x less CPU)."""
    import subprocess

    from tests.cli.helpers import cli_env, json_out, write_images

    write_images(tmp_path / "in", 3)
    env = cli_env(tmp_path / "data", tiny_clip, PIXRAG_RETRIEVAL__MIN_CLIP="-1")
    probe = ("import sys; {first}from bot.cli import main; code = main(sys.argv[1:]); "
             "assert ('torch' in sys.modules) == {torch}, 'torch imported: {torch}?'; "
             "assert 'transformers' not in sys.modules, 'transformers imported'; "
             "sys.exit(code)")

    def run(args: tuple[str, ...], *, preload: bool, torch: bool) -> object:
        code = probe.format(first="import torch; " if preload else "", torch=torch)
        proc = subprocess.run([sys.executable, "-c", code, *args, "--json"],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json_out(proc)

    run(("index", str(tmp_path / "in")), preload=False, torch=True)

    def search(torch: bool, args: tuple[str, ...] = ("search", "a photo")
               ) -> list[dict[str, object]]:
        doc = run(args, preload=torch, torch=torch)
        assert isinstance(doc, dict)
        return list(doc["results"])

    cold, warm = search(torch=False), search(torch=True)
    assert [h["id"] for h in cold] == [h["id"] for h in warm]
    assert np.allclose([h["score"] for h in cold], [h["score"] for h in warm], atol=1e-4)
    assert len(cold) == 3
    # An image query too: its CLIP vector comes from the numpy image tower.
    image = str(tmp_path / "in" / "img1.png")
    cold, warm = search(torch=False, args=("similar", image)), \
        search(torch=True, args=("similar", image))
    assert cold[0]["source"] == warm[0]["source"] == image
    assert [h["id"] for h in cold] == [h["id"] for h in warm]
    assert np.allclose([h["score"] for h in cold], [h["score"] for h in warm], atol=1e-4)


def test_a_process_that_keeps_querying_moves_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh process (nothing imports it here)
    monkeypatch.setattr(lighttext, "_numpy_calls", 0)
    assert all(lighttext.use_numpy(1) for _ in range(lighttext.NUMPY_MAX_CALLS))
    assert not lighttext.use_numpy(1)  # enough queries to pay for torch's import
    monkeypatch.setattr(lighttext, "_numpy_calls", 0)
    assert not lighttext.use_numpy(lighttext.NUMPY_MAX_BATCH + 1)  # a batch: torch


@pytest.mark.skipif(gpu_possible(), reason="a GPU may be here: device auto imports torch")
def test_long_running_processes_import_torch_at_start(tmp_path: Path, tiny_clip: Path) -> None:
    """The bots call start_background: torch is imported then, in the background, not by
    the first upload or the 65th query."""
    import subprocess

    from tests.cli.helpers import cli_env

    code = ("import asyncio, sys\n"
            "from core.app import open_service\n"
            "from core.config import Secrets, load_settings\n"
            "async def main():\n"
            "    async with open_service(load_settings(None), Secrets({})) as svc:\n"
            "        assert 'torch' not in sys.modules, 'imported before'\n"
            "        await svc.start_background()\n"
            "    assert 'torch' in sys.modules, 'not imported'\n"
            "asyncio.run(main())\n")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path / "d", tiny_clip),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
