"""Image captions for indexing, made by the configured answer provider."""

from __future__ import annotations

import logging

from core.answer.base import Backend, complete
from core.answer.images import downscale
from core.answer.prompt import caption_prompt
from core.config import AnswerSettings
from core.types import Usage

log = logging.getLogger(__name__)


class ModelCaptioner:
    """A :class:`core.protocols.Captioner`: one request per image, retried like answers.

    ``caption`` raises ProviderUnavailable (outage, after retries) or AnswerError (key or
    request rejected); the indexer then stores the item without a caption. Close with aclose().
    """

    def __init__(self, backend: Backend, settings: AnswerSettings) -> None:
        self._backend = backend
        self._settings = settings
        self.model_id = f"{backend.provider}:{backend.model}"

    def __repr__(self) -> str:
        return f"ModelCaptioner({self.model_id!r})"

    async def caption(self, jpeg: bytes) -> tuple[str, Usage]:
        small = await downscale(jpeg, self._settings.max_image_px, "image to caption")
        text, usage = await complete(self._backend, caption_prompt(small), self._settings)
        log.info(
            "caption model=%s input_tokens=%d output_tokens=%d",
            self.model_id, usage.input_tokens, usage.output_tokens,
        )
        return " ".join(text.split()), usage

    async def aclose(self) -> None:
        await self._backend.aclose()
