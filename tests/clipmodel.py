"""Build a random-weight CLIP on disk, loadable exactly like ``openai/clip-vit-base-patch32``.

Real weights cannot be downloaded here; random weights exercise the same code path (config,
tokenizer, image processor, ``from_pretrained``) and, at real sizes, the same throughput.
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    # Same byte->unicode table as GPT-2/CLIP BPE, so every byte has a token.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def build_clip(
    out: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    projection: int = 16,
    image_size: int = 32,
    patch: int = 8,
    real_sizes: bool = False,
    seed: int = 0,
) -> Path:
    """Write a CLIP model + processor to ``out``. ``real_sizes`` uses ViT-B/32 dimensions."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    out.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab_tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    vocab = {tok: i for i, tok in enumerate(vocab_tokens)}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(str(out), model_max_length=77)

    if real_sizes:
        text_cfg = {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
                    "intermediate_size": 2048}
        vision_cfg = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072, "image_size": 224, "patch_size": 32}
        projection, image_size = 512, 224
    else:
        text_cfg = {"hidden_size": hidden, "num_hidden_layers": layers,
                    "num_attention_heads": heads, "intermediate_size": hidden * 2}
        vision_cfg = {"hidden_size": hidden, "num_hidden_layers": layers,
                      "num_attention_heads": heads, "intermediate_size": hidden * 2,
                      "image_size": image_size, "patch_size": patch}
    text_cfg.update(vocab_size=len(vocab), max_position_embeddings=77,
                    bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = CLIPConfig(text_config=text_cfg, vision_config=vision_cfg,
                        projection_dim=projection)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(str(out))
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(out))
    return out


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1])
    build_clip(target, real_sizes="--real-sizes" in sys.argv)
    print(target)
