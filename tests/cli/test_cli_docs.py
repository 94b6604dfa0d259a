"""The docs a user reads stay true: the command-line contract covers every command and option,
nothing points outside the repository, the images carry what the docs promise, and the bundled
text model is the published one."""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import pytest

from bot.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CLI_MD = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")

#: sentence-transformers/all-MiniLM-L6-v2 as published on the Hugging Face Hub (file SHA-256,
#: the LFS object id the Hub shows for each file).
PUBLISHED_MINILM = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_cli_md_covers_every_command_and_option() -> None:
    for name, parser in _subparsers().items():
        assert f"`{name}" in CLI_MD, f"command {name} not in docs/CLI.md"
        for action in parser._actions:
            for opt in action.option_strings:
                if opt in ("-h", "--help"):
                    continue
                assert f"`{opt}" in CLI_MD, f"{name} {opt} not in docs/CLI.md"
    assert "`--version`" in CLI_MD


def test_help_names_only_real_variables() -> None:
    from core.config import SECRET_NAMES

    texts = [build_parser().format_help()] + [p.format_help() for p in _subparsers().values()]
    for text in texts:
        for name in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", " ".join(text.split())):
            assert name in SECRET_NAMES or name.startswith("PIXRAG_"), name


def test_compare_presets_are_the_same_in_help_docs_and_code() -> None:
    from core.evaluate import DEFAULT_COMPARE, PRESETS

    action = next(a for a in _subparsers()["eval"]._actions if "--compare" in a.option_strings)
    help_text = " ".join((action.help or "").split())
    assert f"({', '.join(PRESETS)})" in help_text
    assert f"with no CONFIG: {', '.join(DEFAULT_COMPARE)})" in help_text
    assert f"Without CONFIGs: `{' '.join(DEFAULT_COMPARE)}`" in CLI_MD
    for name in PRESETS:
        assert f"`{name}`" in CLI_MD, name


def test_readme_links_the_contract() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/CLI.md)" in readme
    assert "--data-dir /tmp/pixrag-eval index eval/images" in readme
    assert "https://download.pytorch.org/whl/cpu" in readme
    assert PUBLISHED_MINILM["model.safetensors"] in readme
    assert "weighted reciprocal rank," not in readme  # score fusion is the default


def _product_text() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "eval" / "README.md",
             *(ROOT / "benchmarks").glob("*"), ROOT / "Dockerfile", ROOT / "Dockerfile.gpu",
             ROOT / "config.example.toml", *(ROOT / "scripts").glob("*")]
    for package in ("core", "bot", "eval", "benchmarks"):
        files += (ROOT / package).rglob("*.py")
    return [f for f in files if f.is_file()]


@pytest.mark.parametrize("pattern", [
    r"\.\./shared", r"/work/", r"\bissue #?\d+", r"\bacceptance\b", r"MODELS\.md",
    r"huggingface-cli download",
])
def test_nothing_points_outside_the_repository(pattern: str) -> None:
    hits = []
    for f in _product_text():
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line, re.IGNORECASE):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_relative_links_in_docs_resolve() -> None:
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_images_carry_what_the_docs_promise() -> None:
    cpu = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    gpu = (ROOT / "Dockerfile.gpu").read_text(encoding="utf-8")
    for text in (cpu, gpu):
        assert 'HEALTHCHECK' in text and 'CMD ["pixrag", "health"]' in text
        assert "EXPOSE 3000" in text
        assert '"torch==${TORCH_VERSION}"' in text and "ARG TORCH_VERSION=2." in text
        assert "ARG CLIP_MODEL=" in text and "COPY models/ /models/" in text
        assert "--uid 1000" in text and "USER 1000:1000" in text
        assert "WORKDIR /app" in text  # DOCKER.md: /app/config.toml is ./config.toml
    assert "https://download.pytorch.org/whl/cpu" in cpu
    assert "FROM nvidia/cuda:" in gpu and "-runtime-" in gpu
    assert "https://download.pytorch.org/whl/cu" in gpu
    assert (ROOT / "models" / "README.md").is_file()


def test_bundled_text_model_is_the_published_one() -> None:
    from core.models.textembed import bundled_model_dir

    folder = bundled_model_dir()
    for name, sha in PUBLISHED_MINILM.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert digest == sha, f"{folder / name} differs from the published file"
