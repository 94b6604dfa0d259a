"""Fixtures: a fake Slack, the real app on top of it (Socket Mode or HTTP), test images."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from PIL import Image, ImageDraw
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.app import build_app, serve_http, serve_socket
from bot.slack.download import FileHosts
from core.config import Secrets, Settings
from core.types import Origin, Upload
from tests.slack.fakeslack import APP_TOKEN, BOT_TOKEN, FakeSlack

SIGNING_SECRET = "s3cret-signing"
#: The fake serves files over plain http on 127.0.0.1; production never allows that.
TEST_FILE_HOSTS = FileHosts(hosts=frozenset({"127.0.0.1"}), schemes=frozenset({"http"}))


def png(color: tuple[int, int, int] = (200, 30, 30), size: int = 64, mark: int = 0) -> bytes:
    """A small PNG; ``mark`` draws a shape so different marks give different images."""
    img = Image.new("RGB", (size, size), color)
    draw = ImageDraw.Draw(img)
    draw.rectangle((mark % 5 * 8, mark % 3 * 10, 30 + mark * 3, 40), fill=(20, 20, 220))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def upload(name: str, data: bytes, *, channel: str = "C1", message: str = "1690000000.000001",
           author: str = "U1", private: bool = False, file_id: str = "FX1") -> Upload:
    """An upload as the adapter would build it (for seeding the index)."""
    link = f"https://test.slack.com/archives/{channel}/p{message.replace('.', '')}"
    origin = Origin(platform="slack", channel=channel, message=message, attachment=file_id,
                    author=author, private=private, link=link)
    return Upload(name=name, data=data, source=link, origin=origin)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    server = await FakeSlack().start()
    yield server
    await server.stop()


@pytest.fixture
def web_client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)


@pytest.fixture
def secrets() -> Secrets:
    return Secrets({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN,
                    "SLACK_SIGNING_SECRET": SIGNING_SECRET})


def slack_settings(settings: Settings, **slack: Any) -> Settings:
    return settings.model_copy(update={"slack": settings.slack.model_copy(update=slack)})


async def drain_listeners(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
                          timeout: float = 20.0) -> None:
    """Let bolt's background listeners (they run after the ack) finish before servers stop.

    Errors they log now land in the teardown phase, which the shared ERROR-log fixture does
    not look at: check them here.
    """
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and "run_ack_function_asynchronously"
               in getattr(t.get_coro(), "__qualname__", "")]
    if pending:
        _, still = await asyncio.wait(pending, timeout=timeout)
        assert not still, f"{len(still)} Slack listener(s) still running after {timeout} s"
    if request.node.get_closest_marker("allow_error_logs"):
        return
    errors = [r for r in caplog.get_records("teardown") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("ERROR logged by a Slack listener after the test body:\n" + "\n".join(
            f"{r.name}: {r.getMessage()}" for r in errors))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def socket_app(
    fake: FakeSlack, service: Any, settings: Settings, secrets: Secrets,
    web_client: AsyncWebClient, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Callable[..., Awaitable[FakeSlack]]]:
    """Start the app in Socket Mode against the fake (optionally with other [slack] settings)."""
    tasks: list[asyncio.Task[None]] = []

    async def start(*, file_hosts: FileHosts = TEST_FILE_HOSTS, **slack: Any) -> FakeSlack:
        app = build_app(service, slack_settings(settings, **slack), secrets, client=web_client,
                        file_hosts=file_hosts)
        tasks.append(asyncio.create_task(serve_socket(app, APP_TOKEN)))
        await fake.wait_connected()
        return fake

    yield start
    await drain_listeners(request, caplog)
    for task in tasks:
        await _stop(task)


@pytest.fixture
async def http_app(
    fake: FakeSlack, service: Any, settings: Settings, secrets: Secrets,
    web_client: AsyncWebClient, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[str]:
    """The app in HTTP mode on 127.0.0.1:<random>; yields its events URL."""
    app = build_app(service, settings, secrets, client=web_client, file_hosts=TEST_FILE_HOSTS)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, started=bound.set_result))
    port = await asyncio.wait_for(bound, 10)
    yield f"http://127.0.0.1:{port}/slack/events"
    await drain_listeners(request, caplog)
    await _stop(task)
