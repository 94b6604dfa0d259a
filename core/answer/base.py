"""The shared answer loop: prompt, streaming, bounded retries, graceful fallback, accounting.

Provider specifics live in a :class:`Backend` (one SDK client, wire format, error mapping);
this module never looks at which provider it is talking to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Literal, Protocol

from core.answer.images import downscale, prepare_images
from core.answer.prompt import (
    NO_SOURCES_TEXT,
    UNAVAILABLE_TEXT,
    Prompt,
    build_prompt,
    parse_citations,
    source_listing,
)
from core.answer.retry import Failure, RetryBudget
from core.config import AnswerSettings
from core.errors import AnswerError, ProviderUnavailable
from core.types import Answer, Hit, Turn, Usage

log = logging.getLogger(__name__)

Status = Literal["ok", "no_sources", "unavailable", "no_model"]


class TransientFailure(ProviderUnavailable):
    """Timeout, connection error, 429 or 5xx: worth another attempt."""

    def __init__(self, message: str, failure: Failure) -> None:
        self.failure = failure
        super().__init__(message)


class RequestRejected(AnswerError):
    """The provider refused the request (bad key, unknown model, bad request): no retry."""

    def __init__(self, message: str, failure: Failure) -> None:
        self.failure = failure
        super().__init__(message)


def failure_error(provider: str, model: str, failure: Failure) -> AnswerError:
    """The core error for a classified SDK failure (raise it ``from`` the SDK error)."""
    if failure.kind == "transient":
        return TransientFailure(f"{provider} ({model}) is unavailable: {failure.reason}", failure)
    if failure.kind == "auth":
        return RequestRejected(f"{provider} rejected the API key ({failure.reason})", failure)
    return RequestRejected(
        f"{provider} rejected the request for model {model!r}: {failure.reason}", failure
    )


class Backend(Protocol):
    """One provider's client. ``run`` yields text deltas, then one :class:`Usage`.

    SDK errors leave ``run`` as :class:`TransientFailure` or :class:`RequestRejected`.
    """

    provider: str
    model: str
    key_env: str  # the environment variable holding its key ("" when none)

    def run(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str | Usage, None]: ...

    async def aclose(self) -> None: ...


async def _sleep_before_retry(backend: Backend, failure: Failure, delay: float, n: int) -> None:
    log.info(
        "%s (%s): %s; retry %d in %.2f s", backend.provider, backend.model, failure.reason, n, delay
    )
    await asyncio.sleep(delay)


def _log_key_rejected(backend: Backend) -> None:
    log.warning(
        "%s rejected the API key%s: check it. Replying without a generated answer.",
        backend.provider,
        f" in {backend.key_env}" if backend.key_env else "",
    )


async def complete(
    backend: Backend, prompt: Prompt, settings: AnswerSettings
) -> tuple[str, Usage]:
    """One non-interactive call with retries; raises AnswerError/ProviderUnavailable at the end."""
    budget = RetryBudget(settings.max_retries, settings.max_wait_s)
    while True:
        chunks: list[str] = []
        usage = Usage()
        try:
            async with contextlib.aclosing(backend.run(prompt, settings.max_tokens)) as items:
                async for item in items:
                    if isinstance(item, Usage):
                        usage = item
                    else:
                        chunks.append(item)
            return "".join(chunks), usage
        except (TransientFailure, RequestRejected) as exc:
            delay = budget.next_delay(exc.failure)
            if delay is None:
                if exc.failure.kind == "auth":
                    _log_key_rejected(backend)
                raise
            await _sleep_before_retry(backend, exc.failure, delay, budget.retries)


class ModelAnswerer:
    """An :class:`~core.answer.Answerer` over any :class:`Backend`."""

    def __init__(self, backend: Backend, settings: AnswerSettings) -> None:
        self._backend = backend
        self._settings = settings
        self.provider = backend.provider
        self.model = backend.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r})"

    async def aclose(self) -> None:
        await self._backend.aclose()

    async def stream(
        self,
        question: str,
        sources: Sequence[Hit],
        *,
        query_image: bytes | None = None,
        history: Sequence[Turn] = (),
    ) -> AsyncIterator[str | Answer]:
        """Yield text deltas as the model writes them, then exactly one final Answer.

        The deltas always add up to ``Answer.text``. Outages end in status "unavailable";
        only a request the provider refuses as invalid (unknown model, ...) raises AnswerError.
        """
        hits = list(sources)
        if not hits and query_image is None:
            answer = self._answer(NO_SOURCES_TEXT, hits, "no_sources", [], Usage())
            yield answer.text
            yield answer
            return

        s = self._settings
        images = await asyncio.to_thread(prepare_images, hits, s.max_images, s.max_image_px)
        query_jpeg = None
        if query_image is not None:
            query_jpeg = await downscale(query_image, s.max_image_px, "attached image")
        prompt = build_prompt(question, hits, images, query_image=query_jpeg, history=history)

        budget = RetryBudget(s.max_retries, s.max_wait_s)
        chunks: list[str] = []
        usage = Usage()
        while True:
            try:
                async with contextlib.aclosing(self._backend.run(prompt, s.max_tokens)) as items:
                    async for item in items:
                        if isinstance(item, Usage):
                            usage = item
                        elif item:
                            chunks.append(item)
                            yield item
                break
            except (TransientFailure, RequestRejected) as exc:
                failure = exc.failure
                # Text already shown cannot be taken back, so a broken stream is not retried.
                delay = None if chunks else budget.next_delay(failure)
                if delay is not None:
                    await _sleep_before_retry(self._backend, failure, delay, budget.retries)
                    continue
                if failure.kind == "fatal" and not chunks:
                    log.warning("%s", exc)
                    raise
                if failure.kind == "auth":
                    _log_key_rejected(self._backend)
                else:
                    log.warning(
                        "%s (%s) unavailable after %d attempt(s): %s",
                        self.provider, self.model, budget.retries + 1, failure.reason,
                    )
                tail = _unavailable_text(hits)
                if chunks:
                    tail = "\n\n" + tail
                yield tail
                text = "".join(chunks) + tail
                numbers = list(range(1, len(hits) + 1))
                yield self._answer(text, hits, "unavailable", numbers, usage)
                return

        text = "".join(chunks)
        yield self._answer(text, hits, "ok", parse_citations(text, len(hits)), usage)

    def _answer(
        self, text: str, hits: list[Hit], status: Status, citations: list[int], usage: Usage
    ) -> Answer:
        log.info(
            "answer provider=%s model=%s status=%s sources=%d input_tokens=%d output_tokens=%d",
            self.provider, self.model, status, len(hits), usage.input_tokens, usage.output_tokens,
        )
        return Answer(
            text=text, citations=citations, sources=hits, provider=self.provider,
            model=self.model, status=status, usage=usage,
        )


def _unavailable_text(hits: Sequence[Hit]) -> str:
    if not hits:
        return "The model is unavailable right now; please try again later."
    return f"{UNAVAILABLE_TEXT}\n{source_listing(hits)}"

