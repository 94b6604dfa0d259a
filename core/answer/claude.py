"""The ``anthropic`` backend: Claude through the Messages API, streamed."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import anthropic

from core.answer.base import failure_error, malformed_failure
from core.answer.prompt import ImagePart, Prompt
from core.answer.retry import Failure, redact, status_failure
from core.config import AnswerSettings
from core.types import Usage

DEFAULT_MODEL = "claude-sonnet-5-5"
KEY_ENV = "ANTHROPIC_API_KEY"


class AnthropicBackend:
    provider = "anthropic"
    key_env = KEY_ENV

    def __init__(self, settings: AnswerSettings, api_key: str, model: str = "") -> None:
        self.model = model or settings.model or DEFAULT_MODEL
        self._timeout_s = settings.timeout_s
        self._key = api_key  # kept only to mask it in provider error messages
        # max_retries=0: core.answer.retry is the only retry loop (bounded, testable).
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=settings.base_url or None,
            timeout=settings.timeout_s,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend(model={self.model!r})"

    async def aclose(self) -> None:
        await self._client.close()

    async def run(self, prompt: Prompt, max_tokens: int, *, stream: bool = True
                  ) -> AsyncGenerator[str | Usage, None]:
        if not stream:
            async for item in self._once(prompt, max_tokens):
                yield item
            return
        messages = _messages(prompt)
        try:
            async with self._client.messages.stream(
                model=self.model,
                max_tokens=max_tokens,
                system=prompt.system,
                messages=messages,
            ) as events:
                async for text in events.text_stream:
                    if text:
                        yield text
                final = await events.get_final_message()
                usage = Usage(final.usage.input_tokens or 0, final.usage.output_tokens or 0)
        except anthropic.APIError as exc:
            raise failure_error(self.provider, self.model, self._classify(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the SDK's parser fails in many ways
            # A JSON body where a stream was asked for ends in an AssertionError, bad SSE data
            # in a JSONDecodeError, a cut stream in a transport error: all are outages.
            failure = malformed_failure(exc, self._key)
            raise failure_error(self.provider, self.model, failure) from exc
        yield usage

    async def _once(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str | Usage, None]:
        try:
            reply = await self._client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                system=prompt.system,
                messages=_messages(prompt),
            )
            text = "".join(getattr(b, "text", "") for b in reply.content
                           if getattr(b, "type", "") == "text")
            usage = Usage(reply.usage.input_tokens or 0, reply.usage.output_tokens or 0)
        except anthropic.APIError as exc:
            raise failure_error(self.provider, self.model, self._classify(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - a body that is not a message
            failure = malformed_failure(exc, self._key)
            raise failure_error(self.provider, self.model, failure) from exc
        if text:
            yield text
        yield usage

    def _classify(self, exc: anthropic.APIError) -> Failure:
        if isinstance(exc, anthropic.APITimeoutError):
            return Failure("transient", f"no response within {self._timeout_s:g} s")
        if isinstance(exc, anthropic.APIConnectionError):
            return Failure("transient", "connection failed")
        if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 400:
            failure = status_failure(exc.status_code, exc.response.headers, exc.body)
        else:
            # An error event in the middle of a 200 stream (overloaded, api_error).
            failure = Failure("transient", f"stream error: {type(exc).__name__}")
        return replace(failure, reason=redact(failure.reason, self._key))


def _messages(prompt: Prompt) -> list[Any]:
    out = []
    for msg in prompt.messages:
        blocks: list[dict[str, Any]] = []
        for part in msg.parts:
            if isinstance(part, ImagePart):
                data = base64.b64encode(part.jpeg).decode("ascii")
                blocks.append({
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": data},
                })
            else:
                blocks.append({"type": "text", "text": part.text})
        out.append({"role": msg.role, "content": blocks})
    return out
