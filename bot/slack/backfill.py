"""``/pixrag backfill [#channel] [since]`` and the App Home button: index what a channel holds.

``conversations.history`` pages come newest first (Slack has no oldest-first order), so a run
walks backwards from the newest message to the floor (``since``, or where the last finished run
reached) and stores after each page how far down it got; a restart continues below that, and
the next run only reads what is newer than the last finished one. Thread replies are read with
``conversations.replies`` together with their parent's page.

Each file becomes an Upload through :meth:`bot.slack.deps.Deps.uploads`, exactly as a live
auto-indexed one (same Origin, same private-channel rule). History reads go through a client
that waits out HTTP 429 (``Retry-After``) and are paced under the Tier 3 limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.backfill import Backfill, Candidate, Cursors, Page, Progress, Walker
from bot.slack import convert, render
from bot.slack import messages as msg
from bot.slack.deps import Deps, is_private
from core.errors import PermissionDenied, PixragError, public_message
from core.types import Upload

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # Slack's advice for conversations.history
PACE_S = 1.2  # between history/replies calls: Tier 3 allows about 50 a minute
RETRIES_429 = 10  # HTTP 429 answers waited out (Retry-After) per call before giving up
MAX_REASONS_SHOWN = 10

CANCEL_ACTION = "pixrag_backfill_cancel"
HOME_ACTION = "pixrag_backfill_open"
MODAL = "pixrag_backfill_modal"
MODAL_CHANNEL = "pixrag_backfill_channel"
MODAL_SINCE = "pixrag_backfill_since"

_CHANNEL = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$|^([CGD][A-Z0-9]{6,})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---- entry points ---------------------------------------------------------------------------


def parse_args(arg: str, here: str) -> tuple[str, str | None]:
    """``"<#C123|design> 2024-05-31"`` -> ("C123", "2024-05-31"); the channel defaults to
    ``here``. A plain ``#name`` cannot be resolved: the command's channel escaping gives ids."""
    channel, since = here, None
    for word in arg.split():
        match = _CHANNEL.match(word)
        if match:
            channel = match[1] or match[2]
        elif _DATE.match(word):
            since = word
        else:
            raise PixragError(msg.BACKFILL_USAGE)
    return channel, since


def since_ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PixragError(msg.BACKFILL_BAD_SINCE.format(since=render.escape(text[:40]))) from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


async def start(
    deps: Deps, client: AsyncWebClient, *, team: str, user: str, channel: str, since: str | None
) -> str:
    """Check, post the progress message in ``channel`` and run in the background.
    Returns the confirmation for the person who asked."""
    if not await deps.is_admin(client, user):
        raise PermissionDenied(msg.NOT_ADMIN)
    floor = since_ts(since)
    space = convert.space_for(team)
    if not await deps.backfills.reserve(deps.service, space, channel):
        raise PixragError(msg.BACKFILL_RUNNING.format(channel=channel))
    reader = history_client(client)
    try:
        private = await is_private(reader, channel)
        posted = await client.chat_postMessage(
            channel=channel, text=msg.BACKFILL_STARTING.format(channel=channel),
            blocks=progress_blocks(msg.BACKFILL_STARTING.format(channel=channel), channel))
    except SlackApiError as exc:
        await deps.backfills.release(space, channel)
        log.info("cannot post backfill progress in %s: %s", channel, exc.response.get("error"))
        raise PixragError(msg.BACKFILL_NOT_IN_CHANNEL.format(channel=channel)) from exc
    except BaseException:
        await deps.backfills.release(space, channel)
        raise
    status_ts = str(posted["ts"])

    async def report(p: Progress) -> None:
        final = p.finished or p.cancelled or p.error is not None
        text = progress_text(p, channel)
        try:
            await client.chat_update(channel=channel, ts=status_ts, text=text,
                                     blocks=[render.section(text)] if final
                                     else progress_blocks(text, channel))
        except SlackApiError as exc:
            log.warning("backfill progress update in %s failed: %s", channel,
                        exc.response.get("error"))

    run = Backfill(deps.service, space, walker(deps, reader, channel, floor, private), report)
    deps.backfills.start(space, channel, run)
    log.info("backfill of %s in %s started by %s (since %s)", channel, space, user, since)
    return msg.BACKFILL_STARTED.format(channel=channel)


def history_client(client: AsyncWebClient) -> AsyncWebClient:
    """The app's client, plus waiting out 429s: a backfill may wait, live replies should not."""
    return AsyncWebClient(
        token=client.token, base_url=client.base_url, timeout=client.timeout, ssl=client.ssl,
        proxy=client.proxy, headers=dict(client.headers),
        trust_env_in_session=client.trust_env_in_session,
        retry_handlers=[*client.retry_handlers,
                        AsyncRateLimitErrorRetryHandler(max_retry_count=RETRIES_429)])


def register(app: AsyncApp, deps: Deps) -> None:
    @app.action(CANCEL_ACTION)
    async def on_cancel(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
        context: AsyncBoltContext, client: AsyncWebClient,
    ) -> None:
        await ack()
        user, channel = body["user"]["id"], str(action.get("value", ""))
        if not await deps.is_admin(client, user):  # answered, not raised: see _answered
            text = msg.ERROR.format(error=msg.NOT_ADMIN)
        elif deps.backfills.cancel(convert.space_for(context.team_id or ""), channel):
            log.info("backfill of %s cancelled by %s", channel, user)
            text = msg.BACKFILL_CANCELLING.format(channel=channel)
        else:
            text = msg.BACKFILL_NOT_RUNNING.format(channel=channel)
        await respond(text, response_type="ephemeral", replace_original=False)

    @app.action(HOME_ACTION)
    async def on_open(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        if not await deps.is_admin(client, body["user"]["id"]):
            log.info("backfill button pressed by non-admin %s", body["user"]["id"])
            return  # only admins are shown the button; App Home has no reply to refuse in
        await client.views_open(trigger_id=body["trigger_id"], view=modal())

    @app.view(MODAL)
    async def on_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        values = view["state"]["values"]
        channel = values[MODAL_CHANNEL][MODAL_CHANNEL].get("selected_conversation") or ""
        since = values[MODAL_SINCE][MODAL_SINCE].get("selected_date")
        user = body["user"]["id"]
        text = await _answered(user, start(deps, client, team=context.team_id or "", user=user,
                                           channel=channel, since=since))
        await client.chat_postMessage(channel=user, text=text)  # a modal has nowhere else


async def command(
    deps: Deps, client: AsyncWebClient, *, team: str, user: str, channel: str, arg: str
) -> str:
    """``/pixrag backfill [#channel] [since]``: the confirmation or the refusal to show."""

    async def run() -> str:
        target, since = parse_args(arg, channel)
        return await start(deps, client, team=team, user=user, channel=target, since=since)

    return await _answered(user, run())


async def _answered(user: str, started: Awaitable[str]) -> str:
    """A refusal as the text to show. Raising it to the app's error handler would do the
    same, but bolt drops the ack of a listener that fails within ~10 ms of acking (a quick
    refusal), and Slack then shows the user a timeout."""
    try:
        return await started
    except PixragError as exc:
        log.info("backfill refused for %s: %s", user, exc)
        return msg.ERROR.format(error=render.escape(public_message(exc) or str(exc)))


# ---- rendering ------------------------------------------------------------------------------


def progress_text(p: Progress, channel: str) -> str:
    done = p.indexed + p.already
    counts = (msg.BACKFILL_COUNTS if p.estimate else msg.BACKFILL_COUNTS_SO_FAR).format(
        done=done, total=p.total, failed=p.failed)
    already = msg.BACKFILL_ALREADY.format(n=p.already) if p.already else ""
    if p.finished:
        head = msg.BACKFILL_FINISHED.format(channel=channel, done=done, failed=p.failed)
    elif p.cancelled:
        head = msg.BACKFILL_CANCELLED.format(channel=channel, counts=counts)
    elif p.error is not None:
        head = msg.BACKFILL_STOPPED.format(channel=channel, counts=counts,
                                           error=render.escape(p.error))
    else:
        return msg.BACKFILL_PROGRESS.format(channel=channel, counts=counts) + already
    lines = [head + already]
    for name, reason in p.reasons[:MAX_REASONS_SHOWN]:
        lines.append(msg.BACKFILL_REASON.format(name=render.escape(name),
                                                reason=render.escape(reason)))
    if p.failed > min(len(p.reasons), MAX_REASONS_SHOWN):
        lines.append(msg.BACKFILL_MORE.format(n=p.failed - MAX_REASONS_SHOWN))
    return render.clip("\n".join(lines), render.MAX_SECTION)


def progress_blocks(text: str, channel: str) -> list[dict[str, Any]]:
    return [render.section(text), {"type": "actions", "elements": [{
        "type": "button", "action_id": CANCEL_ACTION, "value": channel, "style": "danger",
        "text": {"type": "plain_text", "text": msg.BACKFILL_CANCEL}}]}]


def home_blocks() -> list[dict[str, Any]]:
    """What admins see in App Home: the backfill button."""
    return [{"type": "divider"}, render.section(msg.HOME_BACKFILL), {"type": "actions",
            "elements": [{"type": "button", "action_id": HOME_ACTION, "style": "primary",
                          "text": {"type": "plain_text", "text": msg.HOME_BACKFILL_BUTTON}}]}]


def modal() -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": MODAL,
        "title": {"type": "plain_text", "text": msg.BACKFILL_MODAL_TITLE},
        "submit": {"type": "plain_text", "text": msg.BACKFILL_MODAL_SUBMIT},
        "blocks": [
            {"type": "input", "block_id": MODAL_CHANNEL,
             "label": {"type": "plain_text", "text": msg.BACKFILL_MODAL_CHANNEL},
             "element": {"type": "conversations_select", "action_id": MODAL_CHANNEL,
                         "filter": {"include": ["public", "private"],
                                    "exclude_bot_users": True}}},
            {"type": "input", "block_id": MODAL_SINCE, "optional": True,
             "label": {"type": "plain_text", "text": msg.BACKFILL_MODAL_SINCE},
             "element": {"type": "datepicker", "action_id": MODAL_SINCE}},
        ],
    }


# ---- walking the history --------------------------------------------------------------------


@dataclass
class _State:
    """What is stored per channel: ``done`` is the newest ts of the last finished run; a run
    in progress walks down from ``top`` and has reached ``until``."""

    since: float | None = None
    done: str | None = None
    top: str | None = None
    until: str | None = None

    def dump(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def load(cls, saved: str | None, since: float | None) -> _State:
        """A different ``since`` than the stored walk's starts afresh (what is indexed is
        skipped by id before download)."""
        if saved:
            try:
                state = cls(**json.loads(saved))
            except (ValueError, TypeError):
                log.warning("ignoring an unreadable backfill cursor: %r", saved[:100])
            else:
                if state.since == since:
                    return state
        return cls(since=since)


def walker(
    deps: Deps, reader: AsyncWebClient, channel: str, since: float | None, private: bool
) -> Walker:
    async def walk(cursors: Cursors) -> AsyncIterator[Page]:
        state = _State.load(await cursors.get(channel), since)
        floor = max(since or 0.0, _ts(state.done))
        query: dict[str, Any] = {"channel": channel, "limit": PAGE_SIZE, "inclusive": False}
        if floor:
            query["oldest"] = f"{floor:.6f}"
        if state.until:
            query["latest"] = state.until  # resume below what the stopped run reached
        bottom = floor or await _created(reader, channel)
        cursor = None
        while True:
            resp = await _call(reader.conversations_history, **query,
                               **({"cursor": cursor} if cursor else {}))
            found = [m for m in resp.get("messages") or [] if m.get("ts")]
            if state.top is None:
                state.top = max((str(m["ts"]) for m in found), key=_ts, default=None)
            cands: list[Candidate] = []
            for m in found:
                cands += candidates(deps, reader, channel, m, private)
                if int(m.get("reply_count") or 0) and m.get("thread_ts") == m["ts"]:
                    cands += await _replies(deps, reader, channel, str(m["ts"]), private)
            if found:
                state.until = min((str(m["ts"]) for m in found), key=_ts)
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            more = bool(resp.get("has_more")) and cursor is not None
            position = None
            if state.top and state.until and _ts(state.top) > bottom:
                span = _ts(state.top) - bottom
                position = min(1.0, (_ts(state.top) - _ts(state.until)) / span)
            if not more:  # everything from the floor up to ``top`` is done
                state = _State(since=state.since, done=state.top or state.done)
            yield Page(stream=channel, cursor=state.dump(), candidates=cands,
                       position=1.0 if not more else position)
            if not more:
                return

    return walk


def candidates(
    deps: Deps, reader: AsyncWebClient, channel: str, m: Mapping[str, Any], private: bool
) -> list[Candidate]:
    """The files of message ``m`` that live auto-indexing would take (people's, not bots')."""
    if m.get("subtype") not in convert.USER_SUBTYPES or m.get("bot_id") or not m.get("user"):
        return []
    return [
        Candidate(str(f["id"]), convert.file_name(f),
                  partial(_fetch, deps, reader, channel, str(m["ts"]), str(m["user"]), f,
                          private))
        for f in convert.indexable_files(m.get("files"))
    ]


async def _fetch(deps: Deps, reader: AsyncWebClient, channel: str, ts: str, author: str,
                 file: Mapping[str, Any], private: bool) -> Upload:
    # The runner indexes each file before fetching the next: the budget ticket covers the
    # download (streamed, size-capped); a run holds at most one file's bytes.
    async with deps.uploads(reader, channel=channel, ts=ts, author=author,
                            files=[file], private=private) as (uploads, problems):
        if problems:
            raise problems[0]
        return uploads[0]


async def _replies(deps: Deps, reader: AsyncWebClient, channel: str, thread_ts: str,
                   private: bool) -> list[Candidate]:
    out: list[Candidate] = []
    cursor = None
    while True:
        resp = await _call(reader.conversations_replies, channel=channel, ts=thread_ts,
                           limit=PAGE_SIZE, **({"cursor": cursor} if cursor else {}))
        for m in resp.get("messages") or []:
            if str(m.get("ts")) != thread_ts:  # the parent came with the channel's page
                out += candidates(deps, reader, channel, m, private)
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not resp.get("has_more") or cursor is None:
            return out


async def _call(method: Any, **kwargs: Any) -> Mapping[str, Any]:
    """One paced history call; Slack errors become a sentence for the summary."""
    await asyncio.sleep(PACE_S)
    try:
        resp = await method(**kwargs)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or exc.response.status_code)
        log.warning("backfill read of %s failed: %s", kwargs.get("channel"), error)
        if error == "not_in_channel":
            raise PixragError(msg.BACKFILL_NOT_IN_CHANNEL.format(
                channel=kwargs.get("channel"))) from exc
        raise PixragError(msg.BACKFILL_SLACK_ERROR.format(error=error)) from exc
    return resp.data if isinstance(resp.data, Mapping) else {}


async def _created(reader: AsyncWebClient, channel: str) -> float:
    try:
        info = await reader.conversations_info(channel=channel)
    except SlackApiError:
        return 0.0
    return float((info.get("channel") or {}).get("created") or 0)


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
