"""A small fake Slack on 127.0.0.1:0: Web API, Socket Mode websocket, file host, response_url.

The real slack-sdk / slack-bolt talk to it unmodified (``AsyncWebClient(base_url=...)``);
every request is recorded so tests assert on what Slack would have received.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"
BOT_USER = "UBOT"
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class FakeSlack:
    """State and recordings; tests configure ``channels``, ``users``, ``threads``."""

    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)  # ts of each chat.postMessage
    # channel -> messages, served newest first by conversations.history (cursor pagination)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rate_limits: dict[str, int] = field(default_factory=dict)  # method -> 429s still to send
    file_hold: asyncio.Event | None = None  # when set, file downloads wait for it

    def __post_init__(self) -> None:
        self._cond = asyncio.Condition()
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._ws: web.WebSocketResponse | None = None
        self._ws_ready = asyncio.Event()
        self._ws_tasks: set[asyncio.Task[None]] = set()
        self.base = ""
        self.file_gate: asyncio.Event | None = None  # when set: file downloads wait for it
        self.files_in_flight = 0
        self.files_max_in_flight = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{file_id}/{name}", self._file)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_post("/respond/{rid}", self._respond)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self) -> str:
        return f"{self.base}/respond/{next(self._ids)}"

    # -- recording ---------------------------------------------------------------------------
    async def _record(self, call: Call) -> None:
        async with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def of(self, method: str, where: Callable[[Call], bool] | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (where is None or where(c))]

    async def wait_for(
        self,
        method: str,
        where: Callable[[Call], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 15.0,
    ) -> Call:
        """The ``count``-th call of ``method`` matching ``where`` (waits up to ``timeout``)."""
        async with self._cond:
            await asyncio.wait_for(
                self._cond.wait_for(lambda: len(self.of(method, where)) >= count), timeout
            )
            return self.of(method, where)[count - 1]

    # -- test data ---------------------------------------------------------------------------
    def add_file(
        self,
        data: bytes,
        name: str,
        mimetype: str,
        *,
        content_type: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """A hosted file as Slack describes it in events (served only with the bot token)."""
        fid = f"F{next(self._ids):06d}"
        self.blobs[fid] = (data, content_type or mimetype)
        url = f"{self.base}/files/{fid}/{name}"
        file = {
            "id": fid,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "is_external": False,
            "url_private": url,
            "url_private_download": url + "?download=1",
            "permalink": f"https://test.slack.com/files/U1/{fid}/{name}",
        }
        self.files[fid] = file
        return file

    def next_ts(self) -> str:
        return f"1700000{next(self._ts):03d}.000100"

    # -- Web API -----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.read()
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json" and body:
            args.update(json.loads(body))
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        await self._record(Call(method, args, dict(request.headers), body))
        if self.rate_limits.get(method, 0) > 0:
            # As Slack does: HTTP 429 with Retry-After (seconds); 0 keeps tests fast.
            self.rate_limits[method] -= 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": "0"})
        auth = request.headers.get("Authorization", "")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if auth != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        result = handler(args) if handler else {}
        return web.json_response({"ok": True, **result})

    def api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://test.slack.com/", "team": "Test", "user": "pixrag",
                "team_id": "T1", "user_id": BOT_USER, "bot_id": "BBOT"}

    def api_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.base.replace("http", "ws") + "/link"}

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self.next_ts()
        self.posted.append(ts)
        return {"channel": args.get("channel"), "ts": ts,
                "message": {"text": args.get("text", ""), "ts": ts, "bot_id": "BBOT"}}

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args.get("channel"), "ts": args.get("ts")}

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self.next_ts()}

    def api_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        ch, ts = args["channel"], str(args["message_ts"])
        link = f"https://test.slack.com/archives/{ch}/p{ts.replace('.', '')}"
        return {"channel": ch, "permalink": link}

    def api_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = args["channel"]
        return {"channel": {"id": ch, "is_private": False, **self.channels.get(ch, {})}}

    def api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        msgs = self.threads.get((args["channel"], str(args["ts"])), [])
        return _paginate(msgs, args)

    def api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first within (oldest, latest), exclusive unless ``inclusive``."""
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or 1e12)

        def inside(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        msgs = [m for m in self.history.get(args["channel"], []) if inside(float(m["ts"]))]
        msgs.sort(key=lambda m: float(m["ts"]), reverse=True)
        return _paginate(msgs, args)

    def api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = args["user"]
        return {"user": {"id": uid, "is_admin": False, **self.users.get(uid, {})}}

    def api_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"file": self.files[args["file"]]}

    def api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        fid = f"FU{next(self._ids):05d}"
        return {"upload_url": f"{self.base}/upload/{fid}", "file_id": fid}

    def api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"files": [{"id": f["id"], "title": f.get("title", "")}
                          for f in json.loads(args["files"])]}

    # -- uploads, file host, response_url ----------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.uploads[request.match_info["file_id"]] = data
        await self._record(Call("upload", {"file_id": request.match_info["file_id"]},
                                dict(request.headers), data))
        return web.Response(text="OK - " + str(len(data)))

    async def _file(self, request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]
        await self._record(Call("file", {"file_id": fid, "host": request.host},
                                dict(request.headers)))
        self.files_in_flight += 1
        self.files_max_in_flight = max(self.files_max_in_flight, self.files_in_flight)
        try:
            if self.file_hold is not None:
                await self.file_hold.wait()
            if self.file_gate is not None:
                await self.file_gate.wait()
        finally:
            self.files_in_flight -= 1
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}" or fid not in self.blobs:
            # What real Slack does without a valid token: a login page, status 200.
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        data, ctype = self.blobs[fid]
        return web.Response(body=data, headers={"Content-Type": ctype})

    async def _redirect(self, request: web.Request) -> web.Response:
        """``/redirect?to=URL``: a 302 to anywhere (tests check where the token goes)."""
        await self._record(Call("redirect", dict(request.query), dict(request.headers)))
        raise web.HTTPFound(request.query["to"])

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self._record(Call("respond", json.loads(body), dict(request.headers), body))
        return web.Response(text="ok")

    # -- Socket Mode -------------------------------------------------------------------------
    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "debug_info": {"host": "fake"}}))
        self._ws_ready.set()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                async with self._cond:
                    self.acks[data["envelope_id"]] = data
                    self._cond.notify_all()
        return ws

    async def wait_connected(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self._ws_ready.wait(), timeout)

    async def send_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Push ``events_api`` / ``slash_commands`` / ``interactive`` to the connected app."""
        assert self._ws is not None, "no Socket Mode connection"
        envelope_id = f"env-{next(self._ids)}"
        await self._ws.send_str(json.dumps({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0,
        }))
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 15.0) -> dict[str, Any]:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: envelope_id in self.acks), timeout)
            return self.acks[envelope_id]


def _paginate(msgs: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """One page of ``msgs`` by Slack's cursor protocol (the cursor is an offset here)."""
    start = int(args.get("cursor") or 0)
    limit = int(args.get("limit") or 100)
    page = msgs[start:start + limit]
    more = start + limit < len(msgs)
    return {"messages": page, "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


# -- payload builders (shapes as documented by Slack) -----------------------------------------

def event_body(event: dict[str, Any], team: str = "T1") -> dict[str, Any]:
    return {
        "token": "legacy", "team_id": team, "api_app_id": "A1", "type": "event_callback",
        "event_id": f"Ev{abs(hash(json.dumps(event, sort_keys=True))) % 10**8}",
        "event_time": 1700000000, "event": event,
        "authorizations": [{"team_id": team, "user_id": BOT_USER, "is_bot": True}],
    }


def mention(text: str, *, channel: str = "C1", user: str = "U1", ts: str = "1700000000.000001",
            files: list[dict[str, Any]] | None = None, thread_ts: str | None = None,
            team: str = "T1") -> dict[str, Any]:
    event: dict[str, Any] = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}",
                             "ts": ts, "channel": channel, "event_ts": ts, "team": team}
    if files:
        event["files"] = files
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_body(event, team)


def message(text: str, *, channel: str, channel_type: str, user: str = "U1",
            ts: str = "1700000000.000002", files: list[dict[str, Any]] | None = None,
            team: str = "T1") -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts,
                             "channel": channel, "channel_type": channel_type, "event_ts": ts,
                             "team": team}
    if files:
        event["files"] = files
        event["subtype"] = "file_share"
    return event_body(event, team)


def command(name: str, text: str, *, response_url: str, channel: str = "C1", user: str = "U1",
            team: str = "T1") -> dict[str, Any]:
    return {"token": "legacy", "team_id": team, "team_domain": "test", "channel_id": channel,
            "channel_name": "general", "user_id": user, "user_name": "alice", "command": name,
            "text": text, "api_app_id": "A1", "is_enterprise_install": "false",
            "response_url": response_url, "trigger_id": "trig-1"}


def feedback_click(value: str, *, response_url: str) -> dict[str, Any]:
    """U3 clicks Helpful under an answer in C1 (a block_actions payload)."""
    return {
        "type": "block_actions", "team": {"id": "T1", "domain": "test"},
        "user": {"id": "U3", "team_id": "T1"}, "api_app_id": "A1", "token": "legacy",
        "container": {"type": "message", "message_ts": "1700.60", "channel_id": "C1"},
        "channel": {"id": "C1"}, "message": {"ts": "1700.60", "text": "answer"},
        "trigger_id": "trig", "response_url": response_url,
        "actions": [{"type": "button", "action_id": "pixrag_feedback_up",
                     "block_id": "pixrag_feedback", "value": value, "action_ts": "1"}],
    }


def message_shortcut(callback_id: str, msg: dict[str, Any], *, response_url: str,
                     channel: str = "C1", user: str = "U1", team: str = "T1") -> dict[str, Any]:
    return {"type": "message_action", "callback_id": callback_id, "trigger_id": "trig-2",
            "action_ts": "1700000000.5", "team": {"id": team, "domain": "test"},
            "user": {"id": user, "name": "alice", "team_id": team},
            "channel": {"id": channel, "name": "general"}, "message": msg,
            "message_ts": msg["ts"], "response_url": response_url, "token": "legacy"}
