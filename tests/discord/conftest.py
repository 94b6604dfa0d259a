"""Fixtures: a fake Discord on 127.0.0.1:0 and the real bot (real discord.py, real core)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import pytest
import yarl
from aiohttp import web

from bot.discord import convert
from bot.discord.app import PixragBot, build_bot
from core.config import Settings
from tests.discord import payloads as P
from tests.discord.fakediscord import APP_ID, FakeDiscord, Recorded

TIMEOUT = 20.0


async def eventually(cond: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``cond`` until it is truthy (for state with no network signal), with a timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


class Harness:
    """The running bot and the fake it talks to, with helpers to drive interactions."""

    def __init__(self, fake: FakeDiscord, bot: PixragBot) -> None:
        self.fake = fake
        self.bot = bot

    @property
    def service(self) -> Any:
        return self.bot.service

    async def add_guild(self, gid: int, channels: list[dict[str, Any]]) -> None:
        await self.fake.dispatch("GUILD_CREATE", P.guild(gid, channels))
        await eventually(lambda: self.bot.get_guild(gid) is not None)

    async def send(self, payload: dict[str, Any]) -> int:
        """Dispatch an INTERACTION_CREATE; returns the request index to wait from."""
        start = len(self.fake.requests)
        await self.fake.dispatch("INTERACTION_CREATE", payload)
        return start

    async def callback(self, payload: dict[str, Any]) -> Recorded:
        start = await self.send(payload)
        return await self.fake.wait_for(
            lambda r: r.path.startswith(f"/interactions/{payload['id']}/"), start=start
        )

    async def reply(self, payload: dict[str, Any]) -> Recorded:
        """The user-visible answer: an immediate reply (callback type 4) or, after a defer,
        the first followup (read both with ``reply_json``)."""
        start = await self.send(payload)
        hook = f"/webhooks/{APP_ID}/{payload['token']}"
        return await self.fake.wait_for(
            lambda r: (r.path.startswith(f"/interactions/{payload['id']}/")
                       and (r.json or {}).get("type") == 4)
            or (r.method == "POST" and r.path == hook), start=start)

    async def followup(self, payload: dict[str, Any]) -> Recorded:
        start = await self.send(payload)
        return await self.wait_followup(payload, start)

    async def wait_followup(self, payload: dict[str, Any], start: int = 0) -> Recorded:
        path = f"/webhooks/{APP_ID}/{payload['token']}"
        return await self.fake.wait_for(
            lambda r: r.method == "POST" and r.path == path, start=start
        )

    async def final_edit(self, payload: dict[str, Any]) -> Recorded:
        """The PATCH of @original that carries the buttons (the finished answer)."""
        start = await self.send(payload)
        path = f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
        return await self.fake.wait_for(
            lambda r: r.method == "PATCH" and r.path == path
            and bool((r.json or {}).get("components")),
            start=start,
        )


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", f"{server.base}/api/v10")
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        yarl.URL(f"ws://127.0.0.1:{server.port}/gateway"),
    )
    monkeypatch.setattr(convert, "ALLOWED_CDN_PREFIXES", (f"{server.base}/cdn/",))
    yield server
    await server.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Random tiny-CLIP scores mean nothing: turn the CLIP relevance floors off so any indexed
    item is found (these tests are about the adapter, not about retrieval quality)."""
    retrieval = settings.retrieval.model_copy(update={"min_clip": -1.0, "min_clip_image": -1.0})
    return settings.model_copy(update={"retrieval": retrieval})


def discord_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"discord": settings.discord.model_copy(update=overrides)}
    )


@pytest.fixture
async def start_bot(
    fake: FakeDiscord, service: Any, settings: Settings
) -> AsyncIterator[Callable[..., Any]]:
    """``await start_bot(sync=False, **discord_settings)`` -> a connected :class:`Harness`."""
    running: list[tuple[PixragBot, asyncio.Task[None]]] = []

    async def start(*, sync: bool = False, **overrides: Any) -> Harness:
        overrides.setdefault("rate_per_minute", 1000)
        bot = build_bot(service, discord_settings(settings, **overrides), sync=sync)
        bot._connection.guild_ready_timeout = 0.05  # READY lists no guilds: don't wait 2 s
        bot.stream_interval = 0.0
        task = asyncio.create_task(bot.start("fake-token"))
        running.append((bot, task))
        done, _ = await asyncio.wait(
            {task, asyncio.ensure_future(bot.wait_until_ready())},
            timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()  # raises the start-up error
        assert bot.is_ready(), "bot did not become ready"
        return Harness(fake, bot)

    yield start
    for bot, task in running:
        failed = task.done()  # a start-up error, already raised to the test
        await bot.close()
        if failed:
            continue
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
async def h(start_bot: Callable[..., Any]) -> Harness:
    return await start_bot()


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free local port for the block; yields its ``/v1`` base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
