"""The Slack app: ``build_app`` wires listeners to the service, ``run_slack`` serves it.

Socket Mode (default) needs ``SLACK_APP_TOKEN`` + ``SLACK_BOT_TOKEN`` and no public URL;
HTTP mode (``[slack] mode = "http"``) needs ``SLACK_SIGNING_SECRET`` and serves
``POST /slack/events`` (events, commands and interactivity) on ``[slack] host``/``port``.

At start both tokens are checked against Slack (``auth.test``, ``apps.connections.open``):
a rejected token is a configuration error at once; an unreachable Slack is retried a few
times with back-off, then the app stops with one clear line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import backfill, commands, convert, events, interactive, render
from bot.slack import messages as msg
from bot.slack.deps import ChannelKind, Deps
from bot.slack.download import FileHosts
from bot.startup import Retry, unreachable, with_retries
from core.config import Secrets, Settings
from core.errors import ConfigError, OperationalError, RateLimited, public_message
from core.ratelimit import RateLimiter
from core.service import PixRAG

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
_OAUTH_ENV = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")
CLOSE_TIMEOUT_S = 5.0
SEEN_EVENTS = 10_000  # event ids remembered; Slack retries within about an hour


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
    file_hosts: FileHosts | None = None,
) -> AsyncApp:
    """An AsyncApp with every listener registered; ``client`` overrides the Web API client.
    ``file_hosts`` is for tests only (their file server is not Slack's): the app wiring
    never passes it, so the bot token only ever goes to Slack's file hosts over https."""
    if client is None:
        client = AsyncWebClient(token=_require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-"))
    token = client.token or _require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-")
    with _single_workspace():
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
        file_hosts=file_hosts or FileHosts(),
    )
    @app.middleware
    async def resolve_workspace(
        body: dict[str, Any], context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        # Every handler files and searches under ``context.team_id``. Installed org-wide,
        # events name no team in ``authorizations`` (bolt leaves it None): the workspace is
        # the payload's own team. Without any, the request is dropped rather than served from
        # a space ("slack:") that every workspace of the org would share.
        if not context.team_id:
            team = convert.team_of(body) or str((body.get("event") or {}).get("team") or "")
            if not team:
                log.warning("ignoring a request that names no workspace (%s)", _describe(body))
                return BoltResponse(status=200, body="")
            context["team_id"] = team
        await next()
        return None

    @app.middleware
    async def note_shared_channel(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        # Events from a channel shared with another organisation say so on the envelope: no
        # need to wait for conversations.info (or its cache) to keep answers there confined.
        channel = (body.get("event") or {}).get("channel")
        if body.get("is_ext_shared_channel") and isinstance(channel, str) and channel:
            deps.channels.remember(channel, ChannelKind(private=True, shared=True))
        await next()
        return None

    seen = SeenEvents()

    @app.middleware
    async def skip_redelivered(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        # Slack delivers an event again when the ack for it was late (HTTP retries carry
        # X-Slack-Retry-Num, Socket Mode envelopes a retry_attempt); the event id stays the
        # same. The first delivery is already being handled: acknowledge the copy and stop,
        # or the question is answered twice and the files downloaded twice.
        if seen.first(body):
            await next()
            return None
        log.info("ignoring a redelivered event %s (%s)", body.get("event_id"), _describe(body))
        return BoltResponse(status=200, body="")

    events.register(app, deps)
    commands.register(app, deps)
    interactive.register(app, deps)
    backfill.register(app, deps)

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        """The one error handler: what a user sees is ``public_message`` (a user error's
        message, an operational error's fixed sentence, else an apology); details go to the
        log only."""
        public = public_message(error)
        if isinstance(error, RateLimited):
            text = msg.RATE_LIMITED.format(error=render.escape(str(error)))
            log.info("rate limited: %s", _describe(body))
        elif isinstance(error, OperationalError):
            text = msg.ERROR.format(error=render.escape(error.public))
            log.error("%s handling %s: %s", type(error).__name__, _describe(body), error)
        elif public is not None:
            text = msg.ERROR.format(error=render.escape(public))
            log.info("%s for %s: %s", type(error).__name__, _describe(body), error)
        else:
            text = msg.APOLOGY
            log.error("unexpected error handling %s", _describe(body), exc_info=error)
        await _tell_user(client, body, respond, text)

    return app


class SeenEvents:
    """The ids of the last events this process received (bounded, oldest forgotten)."""

    def __init__(self, size: int = SEEN_EVENTS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first(self, body: Mapping[str, Any]) -> bool:
        """False when ``body`` is an event already received; commands and interactivity
        carry no event id and are always first."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return True
        key = f"{body.get('team_id') or ''}:{event_id}"
        if key in self._ids:
            return False
        self._ids[key] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


@contextlib.contextmanager
def _single_workspace() -> Iterator[None]:
    """PixRAG is installed with one bot token. With ``SLACK_CLIENT_ID``/``SECRET`` in the
    environment (copied from the app page along with the tokens) bolt would switch to OAuth
    distribution, drop the bot token ("token will be unused") and fail every request: hide
    them while the app is built."""
    saved = {k: os.environ.pop(k) for k in _OAUTH_ENV if k in os.environ}
    if saved:
        log.info("ignoring %s: PixRAG uses the bot token, not OAuth", ", ".join(sorted(saved)))
    try:
        yield
    finally:
        os.environ.update(saved)


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


async def check_tokens(
    client: AsyncWebClient, app_token: str | None, retry: Retry
) -> None:
    """Both tokens, checked once against Slack before serving: ConfigError when Slack
    rejects one, PlatformUnreachable when Slack cannot be reached after ``retry``."""
    try:
        await with_retries("Slack", client.auth_test, retry)
    except SlackApiError as exc:
        raise _rejected("SLACK_BOT_TOKEN", "the bot token (xoxb-)", exc) from exc
    if not app_token:
        return
    try:
        await with_retries(
            "Slack", lambda: client.apps_connections_open(app_token=app_token), retry
        )
    except SlackApiError as exc:
        raise _rejected("SLACK_APP_TOKEN", "the app-level token (xapp-)", exc) from exc


def _rejected(name: str, what: str, exc: SlackApiError) -> Exception:
    status = getattr(exc.response, "status_code", 200)
    error = exc.response.get("error") if exc.response is not None else None
    if status >= 500:
        return unreachable("Slack", exc)
    return ConfigError(name, f"Slack rejected {what} ({error or status}); see docs/SLACK.md")


async def serve_socket(
    app: AsyncApp,
    app_token: str,
    *,
    started: Callable[[], None] | None = None,
    connect_timeout_s: float | None = None,
) -> None:
    """Socket Mode until cancelled: Slack pushes envelopes over a websocket we open.
    ``connect_timeout_s``: give up (PlatformUnreachable) when the first connection takes
    longer; the socket client would otherwise retry forever."""
    handler = AsyncSocketModeHandler(app, app_token)
    try:
        try:
            async with asyncio.timeout(connect_timeout_s):  # see bot/startup.py: not wait_for
                await handler.connect_async()
        except TimeoutError as exc:
            raise unreachable("Slack (Socket Mode)", exc) from exc
        log.info("Slack app connected (Socket Mode)")
        if started:
            started()
        await asyncio.Event().wait()
    finally:
        # Bounded: stopped halfway through connecting, the socket client can wait forever.
        try:
            await asyncio.wait_for(handler.close_async(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("Socket Mode client did not close within %.0f s", CLOSE_TIMEOUT_S)


async def serve_http(
    app: AsyncApp, host: str, port: int, *, started: Callable[[int], None] | None = None
) -> None:
    """HTTP mode until cancelled: signed requests on ``POST /slack/events``."""
    runner = web.AppRunner(app.server(port=port, path=EVENTS_PATH, host=host).web_app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # taken by another process, or a host name that is not here
            raise ConfigError("slack.port (or PIXRAG_SLACK__PORT)", f"cannot listen on "
                              f"{host}:{port} ({exc.strerror or exc})") from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("Slack app listening on http://%s:%s%s", host, bound, EVENTS_PATH)
        if started:
            started(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def run_slack(
    service: PixRAG,
    settings: Settings,
    secrets: Secrets,
    *,
    client: AsyncWebClient | None = None,
    retry: Retry | None = None,
) -> None:
    """Run the Slack app (socket or http per ``[slack] mode``) until cancelled.
    ``client`` points the Web API elsewhere (tests); ``retry`` bounds the start-up tries."""
    mode = settings.slack.mode
    retry = retry or Retry()
    bot_token = _require(secrets, "SLACK_BOT_TOKEN", "the bot token xoxb-")
    client = client or AsyncWebClient(token=bot_token)
    if mode == "socket":
        app_token = _require(secrets, "SLACK_APP_TOKEN", "Socket Mode needs the app token xapp-")
        await check_tokens(client, app_token, retry)
        app = build_app(service, settings, secrets, client=client)
        await serve_socket(app, app_token, connect_timeout_s=retry.timeout_s)
    else:
        _require(secrets, "SLACK_SIGNING_SECRET", "HTTP mode verifies requests with it")
        await check_tokens(client, None, retry)
        app = build_app(service, settings, secrets, client=client)
        await serve_http(app, settings.slack.host, settings.slack.port)
