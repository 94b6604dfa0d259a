"""The Slack app: ``build_app`` wires listeners to the service, ``run_slack`` serves it.

Socket Mode (default) needs ``SLACK_APP_TOKEN`` + ``SLACK_BOT_TOKEN`` and no public URL;
HTTP mode (``[slack] mode = "http"``) needs ``SLACK_SIGNING_SECRET`` and serves
``POST /slack/events`` (events, commands and interactivity) on ``[slack] host``/``port``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import backfill, commands, events, interactive, render
from bot.slack import messages as msg
from bot.slack.deps import Deps
from core.config import Secrets, Settings
from core.errors import ConfigError, PixragError, RateLimited
from core.ratelimit import RateLimiter
from core.service import PixRAG

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def _require(secrets: Secrets, name: str, why: str) -> str:
    value = secrets.get(name)
    if not value:
        raise ConfigError(name, f"environment variable not set ({why}); see docs/SLACK.md")
    return value


def build_app(
    service: PixRAG,
    settings: Settings,
    secrets: Secrets,
    *,
    client: AsyncWebClient | None = None,
) -> AsyncApp:
    """An AsyncApp with every listener registered; ``client`` overrides the Web API client."""
    if client is None:
        client = AsyncWebClient(token=_require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-"))
    token = client.token or _require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-")
    app = AsyncApp(
        client=client,
        # Socket Mode requests are not signed; bolt skips verification for them.
        signing_secret=secrets.get("SLACK_SIGNING_SECRET") or "",
        name="pixrag",
    )
    deps = Deps(
        service=service,
        settings=settings,
        limiter=RateLimiter(settings.slack.rate_per_minute),
        token=token,
    )
    events.register(app, deps)
    commands.register(app, deps)
    interactive.register(app, deps)
    backfill.register(app, deps)

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        """The one error handler: safe errors are shown, anything else is logged."""
        if isinstance(error, RateLimited):
            text = msg.RATE_LIMITED.format(error=render.escape(str(error)))
            log.info("rate limited: %s", _describe(body))
        elif isinstance(error, PixragError):
            text = msg.ERROR.format(error=render.escape(str(error)))
            log.info("%s for %s: %s", type(error).__name__, _describe(body), error)
        else:
            text = msg.APOLOGY
            log.error("unexpected error handling %s", _describe(body), exc_info=error)
        await _tell_user(client, body, respond, text)

    return app


def _describe(body: Mapping[str, Any]) -> str:
    """Enough to find the request in logs, without message text or tokens."""
    event = body.get("event") or {}
    kind = event.get("type") or body.get("command") or body.get("type") or "request"
    return f"{kind} team={body.get('team_id') or (body.get('team') or {}).get('id')}"


async def _tell_user(
    client: AsyncWebClient, body: Mapping[str, Any], respond: AsyncRespond, text: str
) -> None:
    """Reply where the failed request came from: response_url, ephemeral, or the app DM."""
    event = body.get("event") or {}
    try:
        if respond.response_url:
            await respond(text, response_type="ephemeral", replace_original=False)
        elif event.get("channel") and event.get("user"):
            await client.chat_postEphemeral(
                channel=event["channel"],
                user=event["user"],
                text=text,
                thread_ts=event.get("thread_ts") or event.get("ts"),
            )
        elif body.get("type") == "view_submission":
            await client.chat_postMessage(channel=body["user"]["id"], text=text)
    except (SlackApiError, OSError) as exc:  # the user cannot be told; the log has it
        log.warning("could not report an error to the user: %s", exc)


async def serve_socket(
    app: AsyncApp, app_token: str, *, started: Callable[[], None] | None = None
) -> None:
    """Socket Mode until cancelled: Slack pushes envelopes over a websocket we open."""
    handler = AsyncSocketModeHandler(app, app_token)
    try:
        await handler.connect_async()
        log.info("Slack app connected (Socket Mode)")
        if started:
            started()
        await asyncio.Event().wait()
    finally:
        await handler.close_async()


async def serve_http(
    app: AsyncApp, host: str, port: int, *, started: Callable[[int], None] | None = None
) -> None:
    """HTTP mode until cancelled: signed requests on ``POST /slack/events``."""
    runner = web.AppRunner(app.server(port=port, path=EVENTS_PATH, host=host).web_app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("Slack app listening on http://%s:%s%s", host, bound, EVENTS_PATH)
        if started:
            started(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def run_slack(service: PixRAG, settings: Settings, secrets: Secrets) -> None:
    """Run the Slack app (socket or http per ``[slack] mode``) until cancelled."""
    mode = settings.slack.mode
    _require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-")
    if mode == "socket":
        app_token = _require(secrets, "SLACK_APP_TOKEN", "Socket Mode needs the app token xapp-")
        await serve_socket(build_app(service, settings, secrets), app_token)
    else:
        _require(secrets, "SLACK_SIGNING_SECRET", "HTTP mode verifies requests with it")
        app = build_app(service, settings, secrets)
        await serve_http(app, settings.slack.host, settings.slack.port)
