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
    CitationFilter,
    Prompt,
    build_prompt,
    parse_citations,
    source_listing,
)
from core.answer.retry import REASON_CHARS, Failure, RetryBudget, redact
from core.config import AnswerSettings
from core.errors import AnswerError, ProviderUnavailable
from core.types import Answer, Hit, Turn, Usage

log = logging.getLogger(__name__)

Status = Literal["ok", "no_sources", "unavailable", "no_model"]


class TransientFailure(ProviderUnavailable):
    """An outage: timeout, connection error, 429 or 5xx (worth another attempt), a malformed
    or empty reply, or the answer's deadline. ``str(exc)`` is fixed text; the provider's own
    words are in ``failure.reason``, for the log."""

    def __init__(self, message: str, failure: Failure) -> None:
        self.failure = failure
        super().__init__(message)


class RequestRejected(AnswerError):
    """The provider refused the request (bad key, unknown model, bad request): no retry."""

    def __init__(self, message: str, failure: Failure) -> None:
        self.failure = failure
        super().__init__(message)


def failure_error(provider: str, model: str, failure: Failure) -> AnswerError:
    """The core error for a classified SDK failure (raise it ``from`` the SDK error).

    The message never carries the provider's error body (it can echo prompts, keys or
    internal detail): it names the provider, the model and the HTTP status only.
    """
    status = f" (HTTP {failure.status})" if failure.status else ""
    if failure.kind in ("transient", "malformed", "deadline"):
        return TransientFailure(f"{provider} ({model}) is unavailable{status}", failure)
    if failure.kind == "auth":
        return RequestRejected(f"{provider} rejected the API key{status}", failure)
    return RequestRejected(
        f"{provider} rejected the request for model {model!r}{status}; "
        "the operator has the details in the log",
        failure,
    )


def malformed_failure(exc: BaseException, secret: str | None = None) -> Failure:
    """A reply the SDK could not read: a plain JSON body where a stream was asked for, SSE
    data that is not JSON, a stream cut short. The SDKs raise whatever their parser hit
    (AssertionError, ValueError, a transport error...), so backends map any of them here."""
    detail = redact(str(exc), secret)[:REASON_CHARS]
    return Failure("malformed", f"malformed response ({type(exc).__name__}: {detail})")


class Backend(Protocol):
    """One provider's client. ``run`` yields text deltas, then one :class:`Usage`; with
    ``stream=False`` it makes one plain request and yields its whole text, then the usage.

    Every error leaves ``run`` as :class:`TransientFailure` or :class:`RequestRejected`.
    """

    provider: str
    model: str
    key_env: str  # the environment variable holding its key ("" when none)

    def run(self, prompt: Prompt, max_tokens: int, *, stream: bool = True
            ) -> AsyncGenerator[str | Usage, None]: ...

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


def _log_give_up(backend: Backend, failure: Failure, attempts: int) -> None:
    """The detail of a failure the user only sees as a fixed sentence."""
    if failure.kind == "auth":
        _log_key_rejected(backend)
    elif failure.kind == "fatal":
        log.warning("%s (%s) refused the request: %s", backend.provider, backend.model,
                    failure.reason)
    else:
        log.warning("%s (%s) unavailable after %d attempt(s): %s", backend.provider,
                    backend.model, attempts, failure.reason)


async def _bounded(
    backend: Backend, prompt: Prompt, settings: AnswerSettings, deadline: float,
    *, stream: bool = True,
) -> AsyncGenerator[str | Usage, None]:
    """``backend.run`` with time limits: the whole attempt ends at ``deadline`` (loop time),
    and at most ``timeout_s`` may pass between two pieces of text. The SDK's own read timeout
    does not cover the second: a server sending keep-alive pings or empty deltas resets it
    forever. Only the awaits are bounded, never the consumer's work between items.
    """
    loop = asyncio.get_running_loop()
    gap_s = settings.timeout_s
    async with contextlib.aclosing(backend.run(prompt, settings.max_tokens,
                                               stream=stream)) as items:
        while True:
            limit = asyncio.timeout_at(min(deadline, loop.time() + gap_s))
            try:
                async with limit:
                    item = await anext(items)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if not limit.expired():
                    raise
                if loop.time() >= deadline:
                    failure = Failure("deadline", f"no complete answer within "
                                                  f"deadline_s={settings.deadline_s:g} s")
                else:
                    failure = Failure("transient", f"nothing received for {gap_s:g} s")
                raise failure_error(backend.provider, backend.model, failure) from exc
            yield item


#: Characters one token may stand for, generously (English averages about 4; runs of spaces
#: or dashes in code are longer). A server that ignores ``max_tokens`` and streams on (a
#: runaway loop in a local model, a hostile endpoint) is cut at ``max_tokens`` times this.
CHARS_PER_TOKEN = 16
CUT_NOTE = "\n\n[answer cut: longer than [answer] max_tokens allows]"


def max_chars(settings: AnswerSettings) -> int:
    """The longest text an answer (or caption) may have."""
    return settings.max_tokens * CHARS_PER_TOKEN


def _log_cut(backend: Backend, settings: AnswerSettings) -> None:
    log.warning("%s (%s) sent more text than max_tokens=%d allows: cut at %d characters",
                backend.provider, backend.model, settings.max_tokens, max_chars(settings))


def _take(text: str, shown: bool, room: int) -> tuple[str, int, bool]:
    """What of a piece of the answer to show, the room left after it, and whether the answer
    is cut there (longer than ``max_tokens`` allows)."""
    if not shown:
        # Blanks before the answer are dropped: a reply of only blanks is then the empty
        # reply it is, not blanks shown in front of the "unavailable" note.
        text = text.lstrip()
    if len(text) > room:
        return text[:room] + CUT_NOTE, 0, True
    return text, room - len(text), False


def _empty(backend: Backend) -> TransientFailure:
    """A reply that ended without any text (some servers answer a stream this way when the
    model crashed, or a proxy dropped the body): an outage like any other."""
    return TransientFailure(f"{backend.provider} ({backend.model}) is unavailable",
                            Failure("malformed", "empty response: no text"))


async def complete(
    backend: Backend, prompt: Prompt, settings: AnswerSettings
) -> tuple[str, Usage]:
    """One non-interactive call with retries, within ``deadline_s``; raises AnswerError /
    ProviderUnavailable (fixed text, detail logged) at the end. An empty reply is an outage.

    Nobody watches the text arrive, so it is a plain (non-streaming) request: every
    compatible server and proxy answers those, including some that mangle streams."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.deadline_s
    budget = RetryBudget(settings.max_retries, settings.max_wait_s)
    while True:
        chunks: list[str] = []
        usage = Usage()
        try:
            async with contextlib.aclosing(_bounded(backend, prompt, settings, deadline,
                                                    stream=False)) as items:
                async for item in items:
                    if isinstance(item, Usage):
                        usage = item
                    else:
                        chunks.append(item)
            text = "".join(chunks)
            if not text.strip():
                raise _empty(backend)
            if len(text) > max_chars(settings):
                _log_cut(backend, settings)
                text = text[: max_chars(settings)]
            return text, usage
        except (TransientFailure, RequestRejected) as exc:
            delay = budget.next_delay(exc.failure, deadline - loop.time())
            if delay is None:
                _log_give_up(backend, exc.failure, budget.retries + 1)
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
        query_text: str = "",
        history: Sequence[Turn] = (),
    ) -> AsyncIterator[str | Answer]:
        """Yield text deltas as the model writes them, then exactly one final Answer.
        ``query_text``: the text read from ``query_image`` (OCR), given to the model with it.

        The deltas always add up to ``Answer.text``. Outages (errors, malformed or empty
        replies, ``deadline_s`` running out) end in status "unavailable"; only a request the
        provider refuses as invalid (unknown model, ...) raises AnswerError.
        """
        loop = asyncio.get_running_loop()
        # One clock for the whole answer: preparing images, connecting, retries, streaming.
        deadline = loop.time() + self._settings.deadline_s
        hits = list(sources)
        if not hits and query_image is None:
            answer = self._answer(NO_SOURCES_TEXT, hits, "no_sources", [], Usage())
            yield answer.text
            yield answer
            return

        s = self._settings
        images = await asyncio.to_thread(prepare_images, hits, s.max_images, s.max_image_px)
        query_jpeg = None
        if query_image is not None and s.max_images > 0:
            # max_images = 0 is a model that reads no images: it gets the image's text only.
            query_jpeg = await downscale(query_image, s.max_image_px, "attached image")
        prompt = build_prompt(question, hits, images, query_image=query_jpeg,
                              query_text=query_text, history=history)

        budget = RetryBudget(s.max_retries, s.max_wait_s)
        chunks: list[str] = []
        room = max_chars(s)  # characters the answer may still take
        usage = Usage()
        while True:
            try:
                bounded = _bounded(self._backend, prompt, s, deadline)
                cited = CitationFilter(len(hits))
                async with contextlib.aclosing(bounded) as items:
                    async for item in items:
                        if isinstance(item, Usage):
                            usage = item
                            continue
                        text, room, cut = _take(cited.feed(item), bool(chunks), room)
                        if text:
                            chunks.append(text)
                            yield text
                        if cut:  # the rest is not read: closing drops it
                            _log_cut(self._backend, s)
                            break
                    else:
                        text, room, cut = _take(cited.flush(), bool(chunks), room)
                        if text:
                            chunks.append(text)
                            yield text
                        if cut:
                            _log_cut(self._backend, s)
                if not "".join(chunks).strip():
                    raise _empty(self._backend)
                break
            except (TransientFailure, RequestRejected) as exc:
                failure = exc.failure
                # Text already shown cannot be taken back, so a broken stream is not retried.
                delay = None if chunks else budget.next_delay(failure, deadline - loop.time())
                if delay is not None:
                    await _sleep_before_retry(self._backend, failure, delay, budget.retries)
                    continue
                _log_give_up(self._backend, failure, budget.retries + 1)
                if failure.kind == "fatal" and not chunks:
                    raise
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

