"""CLIP embedder: loads like a Hub model, normalised vectors, fast preprocessing == processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import ModelError
from core.models.clip import ClipEmbedder
from tests.cli.helpers import noise_image


@pytest.fixture(scope="module")
def clip(tiny_clip: Path) -> ClipEmbedder:
    return ClipEmbedder(str(tiny_clip), dtype="float32")


def test_vectors_are_normalised_and_shaped(clip: ClipEmbedder) -> None:
    imgs = [noise_image(i, (97, 61)) for i in range(3)]
    v = clip.embed_images(imgs)
    t = clip.embed_texts(["a red running shoe", "x" * 500])  # long text is truncated, not fatal
    assert v.shape == (3, clip.dim) and t.shape == (2, clip.dim)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert clip.embed_images([]).shape == (0, clip.dim)


@pytest.mark.parametrize("size", [(640, 480), (300, 900), (224, 224), (1280, 720), (50, 40)])
def test_fast_preprocessing_matches_the_processor(clip: ClipEmbedder,
                                                  size: tuple[int, int]) -> None:
    clip._load_parts()  # the processor, through transformers
    assert clip._fast is not None
    image = noise_image(7, size).resize(size)
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    for im in (image, Image.blend(image, gradient, 0.7)):
        fast = clip._fast.apply(im)
        slow = np.asarray(clip._processor(images=[im], return_tensors="np")["pixel_values"][0])
        assert fast.shape == slow.shape
        a = clip.embed_pixels(fast[None])[0]
        b = clip.embed_pixels(slow[None].astype(np.float32))[0]
        assert float(a @ b) > 0.999


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="PIXRAG_EMBEDDING__MODEL"):
        ClipEmbedder(str(tmp_path / "nope"))


def test_a_gpu_named_that_torch_cannot_use_is_a_config_error(
        tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # device = "cuda" without a usable GPU used to be an internal error at the first forward
    # pass (torch's "AssertionError: Torch not compiled with CUDA enabled").
    import torch

    from core.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as err:
        ClipEmbedder(str(tiny_clip), device="cuda")
    msg = str(err.value)
    assert msg.startswith('config embedding.device (or PIXRAG_EMBEDDING__DEVICE): "cuda" '
                          "cannot be used here: ")
    assert msg.endswith('set "auto" (the GPU when there is one, else the CPU) or "cpu"')
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match='"mps" cannot be used here: MPS needs'):
        ClipEmbedder(str(tiny_clip), device="mps")
    assert ClipEmbedder(str(tiny_clip), device="cpu").device == "cpu"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_staged_batches_give_the_same_vectors(tiny_clip: Path, dtype: str) -> None:
    # The GPU's input path (stacked into one reused host buffer, in fp16 when the model runs
    # in fp16), run here without page-locking: same vectors as the plain path, and the buffer
    # is kept for the next, smaller batch and replaced for a larger one.
    clip = ClipEmbedder(str(tiny_clip), dtype=dtype)
    pixels = list(clip.preprocess([noise_image(i, (320, 240)) for i in range(5)]))
    plain = ClipEmbedder(str(tiny_clip), dtype="float32").embed_pixels(np.stack(pixels))
    with clip._lock:
        staged = clip._staged(pixels, pin=False)
        buffer = clip._staging
        assert str(buffer.dtype) == f"torch.{dtype}" and buffer.shape[0] == 5
        tail = clip._staged(pixels[:2], pin=False)
        assert clip._staging is buffer
        clip._staged(pixels + pixels[:1], pin=False)
        assert clip._staging is not buffer and clip._staging.shape[0] == 6
    assert staged.shape == (5, clip.dim) and staged.dtype == np.float32
    cosine = np.sum(staged * plain, axis=1)
    assert cosine.min() > (0.9999 if dtype == "float32" else 0.99), cosine
    assert np.allclose(tail, staged[:2], atol=1e-6 if dtype == "float32" else 2e-3)
    # Memory that cannot be page-locked (here: no GPU at all; elsewhere a sandbox or a
    # driver that refuses) gives ordinary memory and a warning once, not a failed batch.
    with clip._lock:
        clip._staging = None
        pinned = clip._staged(pixels, pin=True)
    import torch

    if not torch.cuda.is_available():
        assert clip._pin_ok is False and not clip._staging.is_pinned()
    assert np.allclose(pinned, staged, atol=1e-6)
    # Off CUDA the list goes the plain way (numpy or torch on the CPU), same vectors.
    assert np.allclose(clip.embed_pixel_list(pixels), clip.embed_pixels(np.stack(pixels)))
    assert clip.embed_pixel_list([]).shape == (0, clip.dim)
