"""Answers: Claude, GPT-4o, any OpenAI-compatible server, or no model at all.

``build_answerer`` picks the implementation from ``[answer] provider`` through the
:data:`PROVIDERS` registry; nothing else in PixRAG branches on the provider name.
``auto`` takes the first of anthropic, openai, openai-compatible whose key (or base_url) is
configured, else ``none``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.answer.base import Backend, ModelAnswerer
from core.answer.caption import ModelCaptioner
from core.answer.expand import ModelQueryExpander
from core.answer.nomodel import NoModelAnswerer
from core.config import AnswerSettings, IndexSettings, RetrievalSettings, Secrets
from core.errors import ConfigError
from core.types import Answer, Hit, Turn

__all__ = [
    "PROVIDERS",
    "Answerer",
    "ModelAnswerer",
    "ModelCaptioner",
    "NoModelAnswerer",
    "DeferredAnswerer",
    "build_answerer",
    "build_captioner",
    "build_expander",
    "resolve_provider",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Answerer(Protocol):
    """Streams an answer: ``str`` deltas as the model writes them, then one final Answer."""

    provider: str  # "anthropic" | "openai" | "openai-compatible" | "none"
    model: str

    def stream(
        self,
        question: str,
        sources: Sequence[Hit],
        *,
        query_image: bytes | None = None,
        query_text: str = "",
        history: Sequence[Turn] = (),
    ) -> AsyncIterator[str | Answer]: ...

    async def aclose(self) -> None: ...


# (settings, api key or None, model or "" for the default) -> backend
BackendFactory = Callable[[AnswerSettings, "str | None", str], Backend]


@dataclass(frozen=True)
class Provider:
    key_env: str = ""  # environment variable with the API key
    key_required: bool = False
    base_url_required: bool = False
    model_required: bool = False
    make: BackendFactory | None = None  # None: no model (retrieval only)


# The SDKs are imported when a backend is made (a second or more each): commands that never
# ask a model do not pay for them.
def _anthropic(s: AnswerSettings, key: str | None, model: str) -> Backend:
    from core.answer.claude import AnthropicBackend

    assert key is not None  # key_required
    return AnthropicBackend(s, key, model)


def _openai(s: AnswerSettings, key: str | None, model: str) -> Backend:
    from core.answer.openai_chat import OpenAIBackend

    return OpenAIBackend(s, key, model)


def _compatible(s: AnswerSettings, key: str | None, model: str) -> Backend:
    from core.answer.openai_chat import OpenAIBackend

    return OpenAIBackend(s, key, model, provider="openai-compatible", use_max_tokens=True)


PROVIDERS: dict[str, Provider] = {
    "anthropic": Provider("ANTHROPIC_API_KEY", key_required=True, make=_anthropic),
    "openai": Provider("OPENAI_API_KEY", key_required=True, make=_openai),
    # A local server (Ollama, vLLM...) usually needs no key; OPENAI_API_KEY is sent if set.
    "openai-compatible": Provider(
        "OPENAI_API_KEY", base_url_required=True, model_required=True, make=_compatible
    ),
    "none": Provider(),
}
AUTO_ORDER = ("anthropic", "openai", "openai-compatible", "none")


def _usable(p: Provider, settings: AnswerSettings, secrets: Secrets) -> bool:
    if p.key_required and not secrets.get(p.key_env):
        return False
    return not (p.base_url_required and not settings.base_url)


def resolve_provider(settings: AnswerSettings, secrets: Secrets) -> str:
    """The provider ``settings.provider`` means here (``auto`` resolved)."""
    if settings.provider != "auto":
        return settings.provider
    return next(n for n in AUTO_ORDER if _usable(PROVIDERS[n], settings, secrets))


def _check(settings: AnswerSettings, secrets: Secrets, model: str) -> str:
    """The provider name, or ConfigError naming what is missing (no SDK imported)."""
    name = resolve_provider(settings, secrets)
    p = PROVIDERS[name]
    if p.make is None:
        return name
    key = secrets.get(p.key_env) if p.key_env else None
    if p.key_required and not key:
        raise ConfigError(p.key_env, f'not set: [answer] provider = "{name}" needs this API key '
                                     "in the environment")
    if p.base_url_required and not settings.base_url:
        raise ConfigError("answer.base_url (or PIXRAG_ANSWER__BASE_URL)",
                          f'required for provider "{name}": the server URL, e.g. '
                          "http://localhost:11434/v1")
    if p.model_required and not (model or settings.model):
        raise ConfigError("answer.model (or PIXRAG_ANSWER__MODEL)",
                          f'required for provider "{name}": the model name the server serves')
    return name


def _backend(settings: AnswerSettings, secrets: Secrets, model: str) -> Backend | None:
    name = _check(settings, secrets, model)
    p = PROVIDERS[name]
    if p.make is None:
        return None
    key = secrets.get(p.key_env) if p.key_env else None
    backend = p.make(settings, key, model)
    log.info("answer model: %s %s%s (configured provider %s)", backend.provider, backend.model,
             f" at {settings.base_url}" if settings.base_url else "", settings.provider)
    return backend


def build_answerer(settings: AnswerSettings, secrets: Secrets) -> Answerer:
    """The configured Answerer; ConfigError (naming the env var/key) when it cannot work."""
    backend = _backend(settings, secrets, "")
    if backend is None:
        log.info("no answer model configured: replies list the sources found")
        return NoModelAnswerer()
    return ModelAnswerer(backend, settings)


class DeferredAnswerer:
    """The configured Answerer, made on the first question. The configuration is checked at
    once (a missing key is an error before anything loads); the provider's SDK is imported
    only when a command really asks a model."""

    def __init__(self, settings: AnswerSettings, secrets: Secrets) -> None:
        self.provider = _check(settings, secrets, "")
        self.model = settings.model
        self._settings = settings
        self._secrets = secrets
        self._real: Answerer | None = None

    def _answerer(self) -> Answerer:
        if self._real is None:
            self._real = build_answerer(self._settings, self._secrets)
            self.model = self._real.model
        return self._real

    def stream(self, question: str, sources: Sequence[Hit], *,
               query_image: bytes | None = None, query_text: str = "",
               history: Sequence[Turn] = ()) -> AsyncIterator[str | Answer]:
        return self._answerer().stream(question, sources, query_image=query_image,
                                       query_text=query_text, history=history)

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()


def build_expander(
    retrieval: RetrievalSettings, answer: AnswerSettings, secrets: Secrets
) -> ModelQueryExpander | None:
    """A query expander over the answer model, or None when expansion is off or no answer
    provider is configured."""
    if not retrieval.expand_queries:
        return None
    backend = _backend(answer, secrets, "")
    if backend is None:
        log.warning("query expansion is enabled but no answer model is configured: off")
        return None
    return ModelQueryExpander(backend, answer, retrieval.expand_timeout_s)


def build_captioner(
    index: IndexSettings, answer: AnswerSettings, secrets: Secrets
) -> ModelCaptioner | None:
    """A Captioner using ``index.caption_model`` (default: the answer model), or None when
    captions are off or no answer provider is configured."""
    if not index.captions:
        return None
    backend = _backend(answer, secrets, index.caption_model)
    if backend is None:
        log.warning("captions are enabled but no answer model is configured: no captions")
        return None
    return ModelCaptioner(backend, answer)
