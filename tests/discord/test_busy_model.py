"""Many users at once while the answer model is stuck for some of them: nobody waits behind
the stuck answers, every reply goes to its own interaction, the event loop stays responsive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.discord import messages
from core.app import open_service
from core.config import Secrets, Settings
from tests.discord import payloads as P
from tests.discord.conftest import Harness, serving
from tests.discord.fakediscord import APP_ID
from tests.discord.test_e2e import EPHEMERAL, autoindexed_channel, post_image


@pytest.fixture
async def stuck() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def model_server(stuck: asyncio.Event) -> AsyncIterator[str]:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        question = json.dumps(body["messages"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if "STUCK" in question:
            await stuck.wait()
        text = "answer for " + ("stuck" if "STUCK" in question else "quick")
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "t",
                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serving(app) as url:
        yield url
        stuck.set()


@pytest.fixture
async def service(settings: Settings, model_server: str) -> AsyncIterator[Any]:
    answer = settings.answer.model_copy(update={
        "provider": "openai-compatible", "base_url": model_server, "model": "t",
        "max_retries": 0, "deadline_s": 30.0})
    async with open_service(settings.model_copy(update={"answer": answer}), Secrets({})) as svc:
        yield svc


def _final(h: Harness, payload: dict[str, Any]) -> Any:
    path = f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
    return next((r for r in h.fake.requests if r.method == "PATCH" and r.path == path
                 and (r.json or {}).get("components")), None)


async def test_stuck_answers_do_not_hold_up_other_users(h: Harness, stuck) -> None:
    gid, ch = await autoindexed_channel(h)
    await post_image(h, gid, ch)
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            lag = max(lag, loop.time() - t - 0.01)

    tick = asyncio.create_task(ticker())
    slow = [P.command("ask", [P.string_opt("question", f"STUCK {n}")], guild_id=gid,
                      channel_data=ch, uid=100 + n) for n in range(3)]
    quick = [P.command("ask", [P.string_opt("question", f"what is {n}?")], guild_id=gid,
                       channel_data=ch, uid=200 + n) for n in range(15)]
    searches = [P.command("search", [P.string_opt("query", f"red {n}")], guild_id=gid,
                          channel_data=ch, uid=300 + n) for n in range(15)]
    for p in slow:
        await h.send(p)
    await asyncio.sleep(0.2)
    for p in quick + searches:
        await h.send(p)
    for p in quick:
        await h.fake.wait_for(lambda r, p=p: _final(h, p) is not None, timeout=20)
        body = _final(h, p).json
        assert "answer for quick" in body["content"], body["content"]
    for p in searches:
        await h.fake.wait_for(lambda r, p=p: r.method == "POST"
                              and r.path == f"/webhooks/{APP_ID}/{p['token']}", timeout=20)
    assert all(_final(h, p) is None for p in slow)  # still waiting on the model
    stuck.set()
    for p in slow:
        await h.fake.wait_for(lambda r, p=p: _final(h, p) is not None, timeout=20)
        assert "answer for stuck" in _final(h, p).json["content"]
    tick.cancel()
    assert lag < 1.0, lag


async def test_answer_cut_off_by_a_restart_is_told_so(h: Harness) -> None:
    h.bot.deps.drain_s = 0.5
    gid, ch = await autoindexed_channel(h)
    await post_image(h, gid, ch)  # something to answer from: the model is asked
    ask = P.command("ask", [P.string_opt("question", "STUCK forever")], guild_id=gid,
                    channel_data=ch, uid=7)
    start = await h.send(ask)
    await h.fake.wait_for(lambda r: r.path.startswith(f"/interactions/{ask['id']}/"),
                          start=start)
    await asyncio.sleep(0.3)  # the model has the question and is stuck on it
    await h.bot.close()
    told = await h.wait_followup(ask, start)
    assert told.json["content"] == messages.STOPPING and told.json["flags"] & EPHEMERAL
