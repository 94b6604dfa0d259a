"""A fake Anthropic + OpenAI server on 127.0.0.1:0 that records every request.

Serves ``POST /v1/messages`` (Anthropic Messages) and ``POST /v1/chat/completions`` (OpenAI
Chat Completions), streamed (SSE) or not, from a script of :class:`Reply` objects; when the
script is empty it answers with ``default``. Usable from any test::

    async with FakeLLM() as fake:
        fake.script(Reply(status=429, headers={"retry-after-ms": "10"}), Reply(deltas=["Hi [1]"]))
        settings = AnswerSettings(provider="anthropic", base_url=fake.anthropic_url)
        # ... or provider="openai" / "openai-compatible" with base_url=fake.openai_url
        fake.requests[0].body["messages"]
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}


@dataclass
class Reply:
    """One scripted response. ``status`` >= 400 sends an error body (``message``)."""

    deltas: list[str] = field(default_factory=lambda: ["The answer ", "is in the ", "sources [1]."])
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"
    delay_s: float = 0.0  # sleep before answering (timeouts)
    input_tokens: int = 42
    output_tokens: int = 7
    gate: asyncio.Event | None = None  # after the first delta, wait for it before the rest
    fail_after: int | None = None  # send an error event after this many deltas
    hang: bool = False  # accept the request and never answer
    pings: bool = False  # a 200 stream of keep-alive pings / empty deltas, never any content
    # A broken server or proxy: "json" answers a streaming request with a plain JSON body,
    # "invalid" sends SSE data that is not JSON, "truncated" drops the connection after the
    # first delta, "garbage" sends a 200 text/plain body. A plain (non-streaming) request
    # gets the same faults in plain form; "json" is then an ordinary reply.
    shape: Literal["ok", "json", "invalid", "truncated", "garbage"] = "ok"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeLLM:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> FakeLLM:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/chat/completions", self._openai)
        # handler_cancellation: a client that gave up (timeout) cancels the sleeping handler.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLLM:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def anthropic_url(self) -> str:
        return self.url

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    async def wait_requests(self, n: int, timeout: float = 5.0) -> list[Recorded]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    # -- handlers ----------------------------------------------------------------------
    async def _record(self, request: web.Request) -> tuple[dict[str, Any], Reply]:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), body, time.monotonic()))
        async with self._arrived:
            self._arrived.notify_all()
        reply = self._script.popleft() if self._script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.hang:
            await asyncio.Event().wait()  # cancelled when the client goes away
        return body, reply

    async def _broken(self, request: web.Request, reply: Reply, first: bytes
                      ) -> web.StreamResponse | None:
        """The misbehaving shapes, shared by both wire formats; None for a normal reply."""
        if reply.shape == "garbage":
            return web.Response(body=b"upstream said no", status=200,
                                headers={"Content-Type": "text/plain"})
        if reply.shape == "invalid":
            resp = await _sse(request, reply.headers)
            await resp.write(b"event: content_block_delta\ndata: {not json\n\n")
            await resp.write(b"data: {not json either\n\n")
            await resp.write_eof()
            return resp
        if reply.shape == "truncated":
            resp = await _sse(request, reply.headers)
            await resp.write(first)
            await asyncio.sleep(0.05)  # let the first delta reach the client
            # Drop the connection mid-stream: no terminating event, no end of chunked body.
            assert request.transport is not None
            request.transport.abort()
            return resp
        if reply.pings:
            resp = await _sse(request, reply.headers)
            while True:  # until the client gives up
                await resp.write(self._ping(request.path))
                await asyncio.sleep(0.05)
        return None

    async def _broken_plain(self, request: web.Request, reply: Reply
                            ) -> web.StreamResponse | None:
        """The same misbehaviour for a plain (non-streaming) request."""
        if reply.shape == "garbage":
            return web.Response(body=b"upstream said no", status=200,
                                headers={"Content-Type": "text/plain"})
        if reply.shape == "invalid":
            return web.Response(body=b"{not json", status=200,
                                headers={"Content-Type": "application/json"})
        if reply.shape == "truncated" or reply.pings:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"id": "partial", ')
            if reply.pings:  # whitespace now and then, never the rest of the body
                while True:
                    await asyncio.sleep(0.05)
                    await resp.write(b" ")
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return resp
        return None

    @staticmethod
    def _ping(path: str) -> bytes:
        if path == "/v1/messages":
            return b'event: ping\ndata: {"type": "ping"}\n\n'
        # SSE comments and chunks with an empty delta, as OpenAI-compatible servers send.
        empty = {"id": "chatcmpl-fake", "created": 1, "model": "m",
                 "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}]}
        return b": keep-alive\n\n" + f"data: {json.dumps(empty)}\n\n".encode()

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._record(request)
        model = body.get("model", "")
        if reply.status >= 400:
            err = {"type": ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error"),
                   "message": reply.message}
            return _json({"type": "error", "error": err}, reply.status, reply.headers)
        text = "".join(reply.deltas)
        usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}}
        if not body.get("stream"):
            plain = await self._broken_plain(request, reply)
            if plain is not None:
                return plain
        if not body.get("stream") or reply.shape == "json":
            message.update(content=[{"type": "text", "text": text}], stop_reason="end_turn",
                           usage=usage)
            return _json(message, 200, reply.headers)
        first = b"".join(_sse_event(name, data) for name, data in (
            ("message_start", {"type": "message_start", "message": message}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Part"}})))
        broken = await self._broken(request, reply, first)
        if broken is not None:
            return broken

        resp = await _sse(request, reply.headers)
        await _event(resp, "message_start", {"type": "message_start", "message": message})
        await _event(resp, "content_block_start", {
            "type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})
        for i, delta in enumerate(reply.deltas):
            if reply.fail_after is not None and i == reply.fail_after:
                await _event(resp, "error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}})
                return resp
            await _event(resp, "content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": delta}})
            if i == 0 and reply.gate is not None:
                await asyncio.wait_for(reply.gate.wait(), 10)
        await _event(resp, "content_block_stop", {"type": "content_block_stop", "index": 0})
        await _event(resp, "message_delta", {
            "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens}})
        await _event(resp, "message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._record(request)
        model = body.get("model", "")
        if reply.status >= 400:
            err = {"message": reply.message, "type": "server_error", "code": None}
            return _json({"error": err}, reply.status, reply.headers)
        usage = {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                 "total_tokens": reply.input_tokens + reply.output_tokens}
        base = {"id": "chatcmpl-fake", "created": 1, "model": model}
        if not body.get("stream"):
            plain = await self._broken_plain(request, reply)
            if plain is not None:
                return plain
        if not body.get("stream") or reply.shape == "json":
            return _json({**base, "object": "chat.completion", "usage": usage, "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "".join(reply.deltas)}}]},
                200, reply.headers)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}

        first = f"data: {json.dumps(chunk({'role': 'assistant', 'content': 'Part'}))}\n\n"
        broken = await self._broken(request, reply, first.encode())
        if broken is not None:
            return broken

        resp = await _sse(request, reply.headers)
        await _data(resp, chunk({"role": "assistant", "content": ""}))
        for i, delta in enumerate(reply.deltas):
            if reply.fail_after is not None and i == reply.fail_after:
                await _event(resp, "error", {"error": {"message": "overloaded", "type": "x"}})
                return resp
            await _data(resp, chunk({"content": delta}))
            if i == 0 and reply.gate is not None:
                await asyncio.wait_for(reply.gate.wait(), 10)
        await _data(resp, chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await _data(resp, {**base, "object": "chat.completion.chunk", "choices": [],
                               "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _json(data: Any, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **headers})


async def _sse(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
    await resp.prepare(request)
    return resp


def _sse_event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _event(resp: web.StreamResponse, name: str, data: Any) -> None:
    await resp.write(_sse_event(name, data))


async def _data(resp: web.StreamResponse, data: Any) -> None:
    await resp.write(f"data: {json.dumps(data)}\n\n".encode())
