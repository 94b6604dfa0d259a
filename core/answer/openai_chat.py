"""The ``openai`` and ``openai-compatible`` backends: Chat Completions, streamed.

``openai-compatible`` is the same wire format at any ``base_url`` (Ollama, vLLM, LM Studio,
llama.cpp server...), where the key is optional.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import openai

from core.answer.base import failure_error, malformed_failure
from core.answer.prompt import ImagePart, Prompt, TextPart
from core.answer.retry import Failure, redact, status_failure
from core.config import AnswerSettings
from core.types import Usage

DEFAULT_MODEL = "gpt-4o"
KEY_ENV = "OPENAI_API_KEY"
# Local servers usually ignore the key, but the SDK insists on having one.
PLACEHOLDER_KEY = "not-set"


class OpenAIBackend:
    def __init__(
        self,
        settings: AnswerSettings,
        api_key: str | None,
        model: str = "",
        *,
        provider: str = "openai",
        use_max_tokens: bool = False,
    ) -> None:
        self.provider = provider
        self.key_env = KEY_ENV if api_key else ""
        self.model = model or settings.model or DEFAULT_MODEL
        # OpenAI deprecated max_tokens for max_completion_tokens; local servers know max_tokens.
        self._use_max_tokens = use_max_tokens
        self._timeout_s = settings.timeout_s
        self._key = api_key
        self._client = openai.AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=settings.base_url or None,
            timeout=settings.timeout_s,
            max_retries=0,  # core.answer.retry is the only retry loop
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(provider={self.provider!r}, model={self.model!r})"

    async def aclose(self) -> None:
        await self._client.close()

    async def run(self, prompt: Prompt, max_tokens: int, *, stream: bool = True
                  ) -> AsyncGenerator[str | Usage, None]:
        if not stream:
            async for item in self._once(prompt, max_tokens):
                yield item
            return
        usage = Usage()
        messages = _messages(prompt)
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=max_tokens if self._use_max_tokens else openai.omit,
                max_completion_tokens=openai.omit if self._use_max_tokens else max_tokens,
            )
            try:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = Usage(
                            chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0
                        )
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield choice.delta.content
            finally:
                await chunks.close()
        except openai.APIError as exc:
            raise failure_error(self.provider, self.model, self._classify(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the SDK's parser fails in many ways
            # Bad SSE data ends in a JSONDecodeError, an odd chunk in a validation or
            # attribute error: all are outages. (A plain JSON body where a stream was asked
            # for parses as a stream with no text: the answer loop treats that as empty.)
            failure = malformed_failure(exc, self._key)
            raise failure_error(self.provider, self.model, failure) from exc
        yield usage

    async def _once(self, prompt: Prompt, max_tokens: int) -> AsyncGenerator[str | Usage, None]:
        try:
            reply = await self._client.chat.completions.create(
                model=self.model,
                messages=_messages(prompt),
                max_tokens=max_tokens if self._use_max_tokens else openai.omit,
                max_completion_tokens=openai.omit if self._use_max_tokens else max_tokens,
            )
            text = "".join(c.message.content or "" for c in reply.choices if c.message)
            usage = Usage(reply.usage.prompt_tokens or 0, reply.usage.completion_tokens or 0
                          ) if reply.usage else Usage()
        except openai.APIError as exc:
            raise failure_error(self.provider, self.model, self._classify(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - a body that is not a chat completion
            failure = malformed_failure(exc, self._key)
            raise failure_error(self.provider, self.model, failure) from exc
        if text:
            yield text
        yield usage

    def _classify(self, exc: openai.APIError) -> Failure:
        if isinstance(exc, openai.APITimeoutError):
            return Failure("transient", f"no response within {self._timeout_s:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return Failure("transient", "connection failed")
        if isinstance(exc, openai.APIStatusError):
            failure = status_failure(exc.status_code, exc.response.headers, exc.body)
        else:
            # An error event in the middle of the stream.
            failure = Failure("transient", f"stream error: {type(exc).__name__}")
        return replace(failure, reason=redact(failure.reason, self._key))


def _messages(prompt: Prompt) -> list[Any]:
    out: list[dict[str, Any]] = [{"role": "system", "content": prompt.system}]
    for msg in prompt.messages:
        if all(isinstance(p, TextPart) for p in msg.parts):
            # Plain strings: some compatible servers reject list content without images.
            text = "\n\n".join(p.text for p in msg.parts if isinstance(p, TextPart))
            out.append({"role": msg.role, "content": text})
            continue
        content: list[dict[str, Any]] = []
        for part in msg.parts:
            if isinstance(part, ImagePart):
                data = base64.b64encode(part.jpeg).decode("ascii")
                url = f"data:image/jpeg;base64,{data}"
                content.append({"type": "image_url", "image_url": {"url": url}})
            else:
                content.append({"type": "text", "text": part.text})
        out.append({"role": msg.role, "content": content})
    return out
