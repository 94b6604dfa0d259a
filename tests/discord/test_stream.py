"""/ask streams: the deferred reply is edited as the answer grows, then finished with sources.

The answer model is a fake OpenAI-compatible server (SSE) on 127.0.0.1:0.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from core.app import open_service
from core.config import Secrets, Settings
from tests.discord import payloads as P
from tests.discord.conftest import Harness, serving
from tests.discord.test_e2e import autoindex, post_image

DELTAS = ["It is ", "a red ", "square ", "[1]."]


@pytest.fixture
async def model_server() -> AsyncIterator[str]:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, text in enumerate(DELTAS):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0,
                     "model": "test", "choices": [{"index": 0, "delta": {"content": text},
                                                   "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if i < len(DELTAS) - 1:
                await asyncio.sleep(0.05)  # pacing like a real model, not synchronisation
        done = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "test",
                "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4,
                                         "total_tokens": 9}}
        await resp.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        return resp

    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    async with serving(app) as url:
        yield url


@pytest.fixture
async def service(settings: Settings, model_server: str) -> AsyncIterator[Any]:
    answer = settings.answer.model_copy(
        update={"provider": "openai-compatible", "base_url": model_server, "model": "test",
                "max_retries": 0}
    )
    async with open_service(settings.model_copy(update={"answer": answer}), Secrets({})) as svc:
        yield svc


async def test_ask_edits_the_reply_as_the_answer_streams(h: Harness) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    await autoindex(h, gid, ch)
    await post_image(h, gid, ch)

    payload = P.command("ask", [P.string_opt("question", "what is it?")], guild_id=gid,
                        channel_data=ch, uid=5)
    final = await h.final_edit(payload)
    edits = h.fake.matching("PATCH", f"/{payload['token']}/messages/@original")
    partial = [e.json["content"] for e in edits if e is not final]
    assert len(partial) >= 2, partial
    assert all(c.startswith("> what is it?\n") and c.endswith(" ▌") for c in partial)
    assert partial == sorted(partial, key=len)  # the reply only grows
    assert final.json["content"] == "> what is it?\nIt is a red square [1]."
    assert "[1]" in final.json["embeds"][0]["title"]
    assert final.files["files[0]"][0] == "thumb-1.jpg"


async def test_stream_edits_are_throttled(h: Harness) -> None:
    h.bot.stream_interval = 60.0  # nothing but the final edit fits in the window
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    await autoindex(h, gid, ch)
    await post_image(h, gid, ch)
    payload = P.command("ask", [P.string_opt("question", "anything?")], guild_id=gid,
                        channel_data=ch, uid=5)
    final = await h.final_edit(payload)
    edits = h.fake.matching("PATCH", f"/{payload['token']}/messages/@original")
    assert edits == [final]
    assert final.json["content"].endswith("It is a red square [1].")  # the model did stream
