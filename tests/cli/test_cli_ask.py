"""`pixrag ask --json` through the real entry point against local fake Anthropic/OpenAI servers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from bot.cli import main
from tests.answer.fakellm import FakeLLM, Reply
from tests.cli.helpers import write_images

KEY = "sk-test-never-print-me-0123456789"


@pytest.fixture
def library(tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docs"
    write_images(folder, 2)
    (folder / "pricing.md").write_text(
        "# Pricing\n\nThe enterprise plan costs $40 per seat per month, billed yearly.\n")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tiny_clip))
    monkeypatch.setenv("PIXRAG_INDEX__OCR", "false")
    monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "none")
    assert main(["index", str(folder), "--json"]) == 0
    return folder


async def _ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    # main() runs its own event loop (asyncio.run): give it a thread while ours serves the fake.
    rc = await asyncio.to_thread(main, ["ask", *argv, "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_ask_with_a_model_cites_sources(library: Path, provider: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeLLM(Reply(deltas=["Enterprise is ", "$40 per seat [1]."])) as llm:
        monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", provider)
        url = llm.anthropic_url if provider == "anthropic" else llm.openai_url
        monkeypatch.setenv("PIXRAG_ANSWER__BASE_URL", url)
        monkeypatch.setenv(f"{provider.upper()}_API_KEY", KEY)
        rc, doc = await _ask(capsys, "how much is the enterprise plan per seat?")
        assert len(llm.requests) == 1
        sent = json.dumps(llm.requests[0].body)
    assert rc == 0
    assert set(doc) >= {"answer", "citations", "sources", "provider"}
    assert doc["provider"] == provider
    assert doc["answer"] == "Enterprise is $40 per seat [1]."
    assert doc["citations"] == [1]
    assert doc["sources"][0]["source"].endswith("pricing.md")
    assert "enterprise plan per seat" in sent and "$40 per seat" in sent
    assert KEY not in json.dumps(doc)
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_ask_when_the_model_keeps_failing(library: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeLLM(Reply(status=500)) as llm:
        monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "openai-compatible")
        monkeypatch.setenv("PIXRAG_ANSWER__BASE_URL", llm.openai_url)
        monkeypatch.setenv("PIXRAG_ANSWER__MODEL", "local-vlm")
        monkeypatch.setenv("PIXRAG_ANSWER__MAX_RETRIES", "2")
        monkeypatch.setenv("PIXRAG_ANSWER__MAX_WAIT_S", "5")
        rc, doc = await _ask(capsys, "enterprise seat price?")
        attempts = len(llm.requests)
    assert rc == 0  # a graceful answer, with the sources
    assert attempts == 3
    assert doc["status"] == "unavailable"
    assert "unavailable" in doc["answer"]
    assert doc["sources"] and doc["provider"] == "openai-compatible"


async def test_ask_without_any_key_says_so(library: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = await _ask(capsys, "enterprise seat price?")
    assert rc == 0
    assert doc["provider"] == "none"
    assert "No answer model is configured" in doc["answer"]
    assert doc["sources"][0]["source"].endswith("pricing.md")


@pytest.mark.parametrize("reply", [Reply(hang=True), Reply(pings=True)], ids=["hang", "pings"])
async def test_ask_ends_by_the_deadline_with_the_sources(
    library: Path, reply: Reply, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with FakeLLM(reply) as llm:
        monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "openai-compatible")
        monkeypatch.setenv("PIXRAG_ANSWER__BASE_URL", llm.openai_url)
        monkeypatch.setenv("PIXRAG_ANSWER__MODEL", "local-vlm")
        monkeypatch.setenv("PIXRAG_ANSWER__DEADLINE_S", "2")  # timeout_s stays at 60
        started = time.monotonic()
        # Without a deadline this never returns: stop waiting long before the default 60 s.
        rc, doc = await asyncio.wait_for(_ask(capsys, "enterprise seat price?"), 30)
        elapsed = time.monotonic() - started
    assert rc == 0
    assert doc["status"] == "unavailable" and "unavailable" in doc["answer"]
    assert doc["sources"] and doc["sources"][0]["source"].endswith("pricing.md")
    # Start-up (models, index) plus the 2 s deadline.
    assert elapsed < 12


@pytest.mark.parametrize("shape", ["json", "invalid", "truncated"])
async def test_ask_with_a_malformed_reply_shows_the_sources(
    library: Path, shape: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with FakeLLM(Reply(shape=shape)) as llm:  # type: ignore[arg-type]
        monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "anthropic")
        monkeypatch.setenv("PIXRAG_ANSWER__BASE_URL", llm.anthropic_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        capsys.readouterr()
        rc = await asyncio.to_thread(main, ["ask", "enterprise seat price?"])  # streamed
        out = capsys.readouterr()
    assert rc == 0
    assert "internal error" not in out.out + out.err
    assert "The model is unavailable right now" in out.out
    assert "Sources:" in out.out and "pricing.md" in out.out


async def test_ask_about_a_screenshot_gives_the_model_its_text(
        library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # "what is this error?": the error's words, read from the screenshot, reach the model as
    # text, also a model that reads no images ([answer] max_images = 0).
    from tests.corpus import png_bytes, text_image

    shot = tmp_path / "shot.png"
    shot.write_bytes(png_bytes(text_image("Error 0x80070005\nAccess denied")))
    monkeypatch.setenv("PIXRAG_INDEX__OCR", "true")
    monkeypatch.setenv("PIXRAG_ANSWER__MAX_IMAGES", "0")
    async with FakeLLM(Reply(deltas=["A permissions error."])) as llm:
        monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "openai-compatible")
        monkeypatch.setenv("PIXRAG_ANSWER__BASE_URL", llm.openai_url)
        monkeypatch.setenv("PIXRAG_ANSWER__MODEL", "text-only")
        rc, doc = await _ask(capsys, "what is this error?", "--image", str(shot))
        sent = json.dumps(llm.requests[0].body)
    assert rc == 0 and doc["answer"] == "A permissions error."
    assert "0x80070005" in sent and "Access denied" in sent
    assert "image_url" not in sent
