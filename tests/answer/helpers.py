"""Helpers shared by the answer tests: settings per provider, collecting a stream, and
reading what a recorded request carried in either wire format."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from core.answer import Answerer
from core.config import AnswerSettings, Secrets
from core.types import Answer
from tests.answer.conftest import KEY
from tests.answer.fakellm import FakeLLM, Recorded

MODEL_PROVIDERS = ("anthropic", "openai", "openai-compatible")


def settings_for(provider: str, fake: FakeLLM, **overrides: Any) -> AnswerSettings:
    values: dict[str, Any] = {
        "provider": provider,
        "base_url": fake.anthropic_url if provider == "anthropic" else fake.openai_url,
        "timeout_s": 5.0,
        "max_retries": 2,
        "max_wait_s": 5.0,
    }
    if provider == "openai-compatible":
        values["model"] = "llava:13b"
    values.update(overrides)
    return AnswerSettings(**values)


def secrets_for(provider: str) -> Secrets:
    if provider == "anthropic":
        return Secrets({"ANTHROPIC_API_KEY": KEY})
    if provider == "openai":
        return Secrets({"OPENAI_API_KEY": KEY})
    return Secrets({})


async def collect(answerer: Answerer, question: str, sources: Any, **kw: Any
                  ) -> tuple[list[str], Answer]:
    """All deltas and the one final Answer; checks the stream's shape on the way."""
    deltas: list[str] = []
    finals: list[Answer] = []
    async with asyncio.timeout(20):
        async for item in answerer.stream(question, sources, **kw):
            assert not finals, "nothing may follow the final Answer"
            if isinstance(item, Answer):
                finals.append(item)
            else:
                assert isinstance(item, str)
                deltas.append(item)
    assert len(finals) == 1
    assert "".join(deltas) == finals[0].text
    return deltas, finals[0]


def system_prompt(rec: Recorded) -> str:
    if rec.path == "/v1/messages":
        return rec.body["system"]
    first = rec.body["messages"][0]
    assert first["role"] == "system"
    return first["content"]


def chat_messages(rec: Recorded) -> list[dict[str, Any]]:
    """Messages without the OpenAI system message."""
    msgs = rec.body["messages"]
    return msgs if rec.path == "/v1/messages" else [m for m in msgs if m["role"] != "system"]


def parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def texts(message: dict[str, Any]) -> str:
    return "\n".join(p["text"] for p in parts(message) if p["type"] == "text")


def images(message: dict[str, Any]) -> list[bytes]:
    out = []
    for p in parts(message):
        if p["type"] == "image":
            assert p["source"]["media_type"] == "image/jpeg"
            out.append(base64.b64decode(p["source"]["data"]))
        elif p["type"] == "image_url":
            prefix = "data:image/jpeg;base64,"
            assert p["image_url"]["url"].startswith(prefix)
            out.append(base64.b64decode(p["image_url"]["url"][len(prefix):]))
    return out
