"""Bounded time and broken servers: the deadline, silent streams, malformed replies.

Every case ends in a graceful answer (status "unavailable", the sources listed) within the
configured time, never in an exception from inside an SDK.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.answer import Answerer, build_answerer, build_captioner
from core.answer.prompt import UNAVAILABLE_TEXT
from core.config import IndexSettings, load_settings
from core.errors import AnswerError, ProviderUnavailable, public_message
from core.types import Hit
from tests.answer.conftest import make_image
from tests.answer.fakellm import FakeLLM, Reply
from tests.answer.helpers import MODEL_PROVIDERS, collect, secrets_for, settings_for

Make = Callable[..., Answerer]
SHAPES = ("json", "invalid", "truncated", "garbage", "empty")


@pytest.fixture
async def make(fake: FakeLLM) -> AsyncIterator[Make]:
    built: list[Answerer] = []

    def _make(provider: str, **overrides: Any) -> Answerer:
        answerer = build_answerer(settings_for(provider, fake, **overrides),
                                  secrets_for(provider))
        built.append(answerer)
        return answerer

    yield _make
    for answerer in built:
        await answerer.aclose()


def assert_graceful(answer: Any, hits: list[Hit]) -> None:
    assert answer.status == "unavailable"
    assert UNAVAILABLE_TEXT in answer.text
    assert "[1] diagram.png: ERROR 42" in answer.text and "[3] notes.md" in answer.text
    assert answer.sources == hits and answer.citations == [1, 2, 3]


def test_deadline_setting_defaults_and_env() -> None:
    assert load_settings(None, environ={}).answer.deadline_s == 90
    env = {"PIXRAG_ANSWER__DEADLINE_S": "2.5"}
    assert load_settings(None, environ=env).answer.deadline_s == 2.5


@pytest.mark.parametrize("provider", MODEL_PROVIDERS)
async def test_server_that_never_answers_stops_at_the_deadline(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit]
) -> None:
    fake.default = Reply(hang=True)
    started = time.monotonic()
    # The per-request timeout alone would allow 4 x 30 s here.
    _, answer = await collect(make(provider, timeout_s=30, max_retries=3, deadline_s=1.0),
                              "q", hits)
    elapsed = time.monotonic() - started
    assert_graceful(answer, hits)
    assert 0.9 <= elapsed < 2.5
    assert len(fake.requests) == 1


@pytest.mark.parametrize("provider", MODEL_PROVIDERS)
async def test_keep_alive_pings_without_content_stop_at_the_deadline(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit], caplog: Any
) -> None:
    # Pings every 50 ms keep the SDK's read timeout from ever firing.
    fake.default = Reply(pings=True)
    started = time.monotonic()
    _, answer = await collect(make(provider, timeout_s=30, deadline_s=1.0), "q", hits)
    assert_graceful(answer, hits)
    assert time.monotonic() - started < 2.5
    assert any(r.levelno == logging.WARNING and "deadline_s=1 s" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_silence_between_pieces_is_bounded_and_retried(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit]
) -> None:
    fake.script(Reply(pings=True), Reply(deltas=["Second try [1]."]))
    started = time.monotonic()
    _, answer = await collect(make(provider, timeout_s=0.4, deadline_s=10), "q", hits)
    assert answer.status == "ok" and answer.text == "Second try [1]."
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_partial_text_then_silence_keeps_the_text(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit]
) -> None:
    never = asyncio.Event()  # the server sends one delta, then waits on this forever
    fake.script(Reply(deltas=["Partial ", "rest"], gate=never))
    deltas, answer = await collect(make(provider, timeout_s=30, deadline_s=1.0), "q", hits)
    assert deltas[0] == "Partial "
    assert answer.text.startswith("Partial \n\n" + UNAVAILABLE_TEXT)
    assert answer.status == "unavailable" and len(fake.requests) == 1


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_back_off_never_outlasts_the_deadline(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit]
) -> None:
    # Ten retries 0.6 s apart would take 6 s; the deadline allows 3 s.
    fake.default = Reply(status=503, headers={"retry-after-ms": "600"})
    started = time.monotonic()
    _, answer = await collect(
        make(provider, max_retries=10, max_wait_s=60, deadline_s=3.0), "q", hits)
    assert_graceful(answer, hits)
    assert time.monotonic() - started < 3.6
    assert 2 <= len(fake.requests) <= 5


@pytest.mark.parametrize("provider", MODEL_PROVIDERS)
@pytest.mark.parametrize("shape", SHAPES)
async def test_malformed_replies_are_outages(
    provider: str, shape: str, make: Make, fake: FakeLLM, hits: list[Hit], caplog: Any
) -> None:
    fake.default = Reply(deltas=[]) if shape == "empty" else Reply(shape=shape)  # type: ignore[arg-type]
    _, answer = await collect(make(provider), "q", hits)
    assert_graceful(answer, hits)
    # Not retried: a server answering like this does it every time.
    assert len(fake.requests) == 1
    if shape == "truncated":
        assert answer.text.startswith("Part\n\n" + UNAVAILABLE_TEXT)
    else:
        assert answer.text.startswith(UNAVAILABLE_TEXT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unavailable after 1 attempt" in w for w in warnings)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_provider_error_text_is_logged_not_shown(
    provider: str, make: Make, fake: FakeLLM, hits: list[Hit], caplog: Any
) -> None:
    detail = "upstream pool exhausted at /srv/llm/worker-3.sock"
    fake.default = Reply(status=500, message=detail, headers={"retry-after-ms": "1"})
    deltas, answer = await collect(make(provider, max_retries=1), "q", hits)
    assert_graceful(answer, hits)
    assert detail not in answer.text and not [d for d in deltas if detail in d]
    assert any(detail in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    fake.default = Reply(status=404, message=f"model not found; {detail}")
    with pytest.raises(AnswerError) as err:
        await collect(make(provider, model="nope"), "q", hits)
    shown = public_message(err.value)
    assert shown is not None and "HTTP 404" in shown and "'nope'" in shown
    assert detail not in shown and "model not found" not in shown
    assert any(detail in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and "refused the request" in r.getMessage())


# -- captions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["anthropic", "openai", "openai-compatible"])
async def test_caption_is_a_plain_request_that_survives_broken_streaming(
    provider: str, fake: FakeLLM, tmp_path: Path
) -> None:
    """Some compatible servers answer a streaming request with a plain JSON body; a caption
    never streams, so it works with them."""
    fake.default = Reply(shape="json", deltas=["A slide ", "about pricing."])
    settings = settings_for(provider, fake)
    captioner = build_captioner(IndexSettings(captions=True), settings, secrets_for(provider))
    assert captioner is not None
    try:
        text, usage = await captioner.caption(make_image(tmp_path / "x.png", (64, 64)).read_bytes())
    finally:
        await captioner.aclose()
    assert text == "A slide about pricing." and usage.input_tokens == 42
    assert [r.body.get("stream", False) for r in fake.requests] == [False]


@pytest.mark.parametrize("provider", ["anthropic", "openai", "openai-compatible"])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "json"] + ["pings"])
async def test_caption_failures_are_clear_per_image_errors(
    provider: str, shape: str, fake: FakeLLM, tmp_path: Path
) -> None:
    if shape == "empty":
        fake.default = Reply(deltas=[" "])
    elif shape == "pings":
        fake.default = Reply(pings=True)
    else:
        fake.default = Reply(shape=shape)  # type: ignore[arg-type]
    settings = settings_for(provider, fake, timeout_s=30, deadline_s=1.0)
    captioner = build_captioner(IndexSettings(captions=True), settings, secrets_for(provider))
    assert captioner is not None
    jpeg = make_image(tmp_path / "x.png", (64, 64)).read_bytes()
    started = time.monotonic()
    try:
        with pytest.raises(ProviderUnavailable) as err:
            await captioner.caption(jpeg)
    finally:
        await captioner.aclose()
    assert time.monotonic() - started < 2.5
    assert str(err.value).startswith(f"{provider} (") and "unavailable" in str(err.value)


async def test_indexing_survives_a_broken_caption_model(
    fake: FakeLLM, tmp_path: Path, tiny_clip: Path, caplog: Any
) -> None:
    from core.app import open_service

    fake.default = Reply(shape="garbage")  # a 200 text/plain body
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "anthropic",
           "PIXRAG_ANSWER__BASE_URL": fake.anthropic_url, "PIXRAG_INDEX__CAPTIONS": "true",
           "PIXRAG_INDEX__OCR": "false"}
    settings = load_settings(None, environ=env, data_dir=tmp_path / "data")
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "a.png", (120, 80))
    make_image(folder / "b.png", (80, 120))
    async with open_service(settings, secrets_for("anthropic")) as svc:
        report = await svc.index_paths([folder], "local")
    assert sorted(Path(i.source).name for i in report.indexed) == ["a.png", "b.png"]
    assert report.failed == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("caption failed for" in w and "anthropic" in w for w in warnings) == 2
