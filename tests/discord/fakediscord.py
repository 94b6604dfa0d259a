"""A small fake Discord for tests: REST + gateway websocket + CDN on 127.0.0.1:0.

The real discord.py client talks to it unmodified (two class attributes are redirected, see
TESTING.md). Every REST request is recorded (method, path, JSON body or multipart parts) and
tests wait on what arrives, with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

APP_ID = 900000000000000001
BOT_ID = 900000000000000002
JSON = "application/json"  # exactly: discord.py only decodes this content type


@dataclass
class Recorded:
    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # part name -> (name, data)


def _snowflakes() -> Callable[[], int]:
    counter = iter(range(950000000000000000, 960000000000000000))
    return lambda: next(counter)


def user(uid: int, name: str = "user", *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot}


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.cdn: dict[str, bytes] = {}
        self.cdn_hits: list[str] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (channel, id) -> payload
        self.channels: dict[int, dict[str, Any]] = {}
        # Channel (or thread) id -> message payloads: served by GET /channels/{id}/messages.
        self.history: dict[int, list[dict[str, Any]]] = {}
        self.threads: dict[int, dict[str, Any]] = {}  # thread payloads (with guild_id)
        self.private_threads_forbidden = False
        self.guild_sync_forbidden = False  # PUT of guild commands answers 403 Missing Access
        # (method, path regex, how many more times to answer 429)
        self.rate_limits: list[list[Any]] = []
        self.cdn_hold: asyncio.Event | None = None  # when set, CDN downloads wait for it
        self.next_id = _snowflakes()
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self.identified = asyncio.Event()
        self.reject_token = False  # answer the login with 401 (a revoked token)
        self.cdn_gate: asyncio.Event | None = None  # when set: CDN answers wait for it
        # When set: only this many CDN downloads answer; later ones wait for cdn_more.
        self.cdn_allow: int | None = None
        self.cdn_more = asyncio.Event()
        self.cdn_in_flight = 0
        self.cdn_max_in_flight = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{path:.*}", self._cdn)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- what tests call

    def add_cdn(self, name: str, data: bytes) -> str:
        path = f"attachments/{self.next_id()}/{name}"
        self.cdn[path] = data
        return f"{self.base}/cdn/{path}"

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway DISPATCH to every connected bot."""
        await self.identified.wait()
        self._seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self._seq, "d": data})
        for ws in self._sockets:
            await ws.send_str(frame)

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], *, timeout: float = 20.0, start: int = 0
    ) -> Recorded:
        """The first recorded request (from index ``start``) matching ``predicate``."""

        def found() -> Recorded | None:
            return next((r for r in self.requests[start:] if predicate(r)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
        hit = found()
        assert hit is not None
        return hit

    def matching(self, method: str, pattern: str) -> list[Recorded]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.search(r.path)]

    # ---- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}}))
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    self._seq += 1
                    ready = {
                        "v": 10,
                        "user": user(BOT_ID, "pixrag", bot=True),
                        "guilds": [],
                        "session_id": "fake-session",
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                        "application": {"id": str(APP_ID), "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                    }
                    await ws.send_str(
                        json.dumps({"op": 0, "t": "READY", "s": self._seq, "d": ready})
                    )
                    self.identified.set()
        finally:
            self._sockets.remove(ws)
        return ws

    # ---- CDN

    async def _cdn(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.cdn_hits.append(path)
        self.cdn_in_flight += 1
        self.cdn_max_in_flight = max(self.cdn_max_in_flight, self.cdn_in_flight)
        try:
            async with self._changed:
                self._changed.notify_all()
            if self.cdn_allow is not None and len(self.cdn_hits) > self.cdn_allow:
                await self.cdn_more.wait()
            if self.cdn_hold is not None:
                await self.cdn_hold.wait()
            if self.cdn_gate is not None:
                await self.cdn_gate.wait()
            data = self.cdn.get(path)
            if data is None:
                return web.Response(status=404)
            return web.Response(body=data, content_type="application/octet-stream")
        finally:
            self.cdn_in_flight -= 1

    # ---- REST

    async def _record(self, request: web.Request) -> Recorded:
        path = "/" + request.match_info["path"]
        rec = Recorded(request.method, path, dict(request.query), dict(request.headers))
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                data = await part.read()
                if part.name == "payload_json":
                    rec.json = json.loads(data)
                else:
                    rec.files[str(part.name)] = (part.filename or "", bytes(data))
        elif request.can_read_body:
            body = await request.read()
            rec.json = json.loads(body) if body else None
        async with self._changed:
            self.requests.append(rec)
            self._changed.notify_all()
        return rec

    def _message(self, rec: Recorded, channel_id: int | None = None) -> dict[str, Any]:
        body = rec.json or {}
        attachments = [
            {"id": str(self.next_id()), "filename": name, "size": len(data),
             "url": f"{self.base}/cdn/x/{name}", "proxy_url": f"{self.base}/cdn/x/{name}"}
            for name, data in rec.files.values()
        ]
        return {
            "id": str(self.next_id()),
            "channel_id": str(channel_id or 1),
            "type": 0,
            "content": body.get("content") or "",
            "author": user(BOT_ID, "pixrag", bot=True),
            "attachments": attachments,
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "flags": body.get("flags") or 0,
            "webhook_id": str(APP_ID),
        }

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(data).encode(), status=status,
                            headers={"Content-Type": JSON})

    def _rate_limited(self, rec: Recorded) -> web.Response | None:
        """A 429 as Discord sends it (JSON body with retry_after; discord.py needs ``Via``)."""
        for rule in self.rate_limits:
            method, pattern, left = rule
            if left > 0 and rec.method == method and re.fullmatch(pattern, rec.path):
                rule[2] -= 1
                body = {"message": "You are being rate limited.", "retry_after": 0.05,
                        "global": False, "code": 0}
                return web.Response(body=json.dumps(body).encode(), status=429, headers={
                    "Content-Type": JSON, "Via": "1.1 google", "Retry-After": "1",
                    "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": "0.05", "X-RateLimit-Bucket": "fakebucket",
                    "X-RateLimit-Scope": "user"})
        return None

    def _history(self, channel_id: int, query: dict[str, str]) -> list[dict[str, Any]]:
        """GET /channels/{id}/messages: newest first, like Discord, for after/before/limit."""
        msgs = sorted(self.history.get(channel_id, []), key=lambda m: int(m["id"]))
        limit = int(query.get("limit", 50))
        if "after" in query:
            after = int(query["after"])
            page = [m for m in msgs if int(m["id"]) > after][:limit]
        else:
            before = int(query.get("before", 1 << 63))
            page = [m for m in msgs if int(m["id"]) < before][-limit:]
        return list(reversed(page))

    def _thread_list(self, channel_id: int, private: bool) -> dict[str, Any]:
        wanted = 12 if private else 11
        threads = [t for t in self.threads.values()
                   if int(t["parent_id"]) == channel_id and t["type"] == wanted
                   and t["thread_metadata"]["archived"]]
        return {"threads": threads, "members": [], "has_more": False}

    async def _rest(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        p, m = rec.path, rec.method
        limited = self._rate_limited(rec)
        if limited is not None:
            return limited
        if p == "/users/@me":
            if self.reject_token:
                return self._json({"message": "401: Unauthorized", "code": 0}, 401)
            return self._json(user(BOT_ID, "pixrag", bot=True))
        if p == "/oauth2/applications/@me":
            return self._json({
                "id": str(APP_ID), "name": "pixrag", "description": "", "icon": None,
                "bot_public": True, "bot_require_code_grant": False,
                "owner": user(1, "owner"), "verify_key": "00", "flags": 0,
            })
        if re.fullmatch(r"/interactions/\d+/[^/]+/callback", p):
            iid = p.split("/")[2]
            body = rec.json or {}
            flags = (body.get("data") or {}).get("flags") or 0
            return self._json({"interaction": {
                "id": iid, "type": 2, "response_message_loading": body.get("type") == 5,
                "response_message_ephemeral": bool(flags & 64),
            }})
        if re.fullmatch(r"/webhooks/\d+/[^/]+", p) and m == "POST":
            return self._json(self._message(rec))
        if re.fullmatch(r"/webhooks/\d+/[^/]+/messages/[^/]+", p):
            if m == "DELETE":
                return web.Response(status=204)
            return self._json(self._message(rec))
        if re.fullmatch(r"/applications/\d+/guilds/\d+/commands", p) and m == "PUT" \
                and self.guild_sync_forbidden:  # a server the bot is not in
            return self._json({"code": 50001, "message": "Missing Access"}, 403)
        if re.fullmatch(r"/applications/\d+(/guilds/\d+)?/commands", p) and m == "PUT":
            cmds = [{"description": "", **c, "id": str(self.next_id()),
                     "application_id": str(APP_ID), "version": "1"}
                    for c in rec.json or []]
            return self._json(cmds)
        if re.fullmatch(r"/channels/\d+/messages/\d+/reactions/.+", p):
            return web.Response(status=204)
        match = re.fullmatch(r"/channels/(\d+)/messages/(\d+)", p)
        if match and m == "GET":
            msg = self.messages.get((int(match[1]), int(match[2])))
            if msg is None:
                return self._json({"code": 10008, "message": "Unknown Message"}, 404)
            return self._json(msg)
        match = re.fullmatch(r"/channels/(\d+)/messages", p)
        if match and m == "GET":
            return self._json(self._history(int(match[1]), rec.query))
        if match and m == "POST":
            return self._json({**self._message(rec, int(match[1])), "webhook_id": None})
        match = re.fullmatch(r"/channels/(\d+)/messages/(\d+)", p)
        if match and m == "PATCH":
            msg = {**self._message(rec, int(match[1])), "id": match[2], "webhook_id": None}
            return self._json(msg)
        match = re.fullmatch(r"/guilds/(\d+)/threads/active", p)
        if match and m == "GET":
            threads = [t for t in self.threads.values() if t["guild_id"] == match[1]
                       and not t["thread_metadata"]["archived"]]
            return self._json({"threads": threads, "members": []})
        match = re.fullmatch(r"/channels/(\d+)/threads/archived/(public|private)", p)
        if match and m == "GET":
            if match[2] == "private" and self.private_threads_forbidden:
                return self._json({"code": 50013, "message": "Missing Permissions"}, 403)
            return self._json(self._thread_list(int(match[1]), match[2] == "private"))
        match = re.fullmatch(r"/channels/(\d+)", p)
        if match and m == "GET":
            ch = self.channels.get(int(match[1]))
            if ch is None:
                return self._json({"code": 10003, "message": "Unknown Channel"}, 404)
            return self._json(ch)
        return self._json({"code": 0, "message": f"fake: no route {m} {p}"}, 404)
