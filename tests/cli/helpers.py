"""Helpers shared by the CLI and service tests: distinct images, settings, running ``pixrag``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.config import Settings, load_settings

#: Random CLIP weights make cosine scores meaningless, so the CLIP floors are lowered where a
#: test needs results that only the CLIP signal can give (near duplicates need no relaxing).
RELAXED = {"PIXRAG_RETRIEVAL__MIN_CLIP": "-1", "PIXRAG_RETRIEVAL__MIN_CLIP_IMAGE": "-1"}

#: Environment variables a test must never inherit from the developer's shell.
_PRIVATE = ("ANTHROPIC_", "OPENAI_", "PIXRAG_", "DISCORD_", "SLACK_")


def noise_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Random pixels: every seed gives a different perceptual hash (solid colours would all
    collapse into one near-duplicate group)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def noise_bytes(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    noise_image(seed, size).save(buf, fmt)
    return buf.getvalue()


def write_images(folder: Path, n: int, *, prefix: str = "img", seed: int = 0,
                 size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = "jpg" if fmt == "JPEG" else fmt.lower()
    out = []
    for i in range(n):
        p = folder / f"{prefix}{i}.{ext}"
        p.write_bytes(noise_bytes(seed + i, size, fmt))
        out.append(p)
    return out


def make_settings(data_dir: Path, model: Path, **env: str) -> Settings:
    """Settings for a service test: OCR off (1.5 s an image here), no answer model."""
    base = {"PIXRAG_EMBEDDING__MODEL": str(model), "PIXRAG_ANSWER__PROVIDER": "none",
            "PIXRAG_INDEX__OCR": "false"}
    return load_settings(None, environ={**base, **env}, data_dir=data_dir)


def cli_env(data_dir: Path, model: Path | str, **extra: str) -> dict[str, str]:
    """Environment for a ``pixrag`` subprocess: isolated data dir, tiny model, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE)}
    env.update({
        "PIXRAG_DATA_DIR": str(data_dir),
        "PIXRAG_EMBEDDING__MODEL": str(model),
        "PIXRAG_ANSWER__PROVIDER": "none",
        "PIXRAG_INDEX__OCR": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "PYTHONWARNINGS": "ignore",
    })
    env.update(extra)
    return env


def pixrag_cmd(script: bool = False) -> list[str]:
    """``python -m bot.cli`` or the installed console script (same ``main``)."""
    if script:
        exe = Path(sys.executable).parent / "pixrag"
        assert exe.exists(), f"console script missing: {exe}"
        return [str(exe)]
    return [sys.executable, "-m", "bot.cli"]


def run_cli(args: Sequence[str], env: Mapping[str, str], *, cwd: Path, timeout: float = 180,
            script: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pixrag_cmd(script), *args], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a ``--json`` command prints on stdout."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line, got stdout={proc.stdout!r} " \
                            f"stderr={proc.stderr[-2000:]!r}"
    return json.loads(lines[0])


HIT_KEYS = {"id", "source", "kind", "score", "page", "thumbnail", "signals"}
