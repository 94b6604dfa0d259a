"""The ``none`` provider: retrieval only. The reply lists the sources with their text."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from core.answer.prompt import NO_MODEL_TEXT, NO_SOURCES_TEXT, source_listing
from core.types import Answer, Hit, Turn

log = logging.getLogger(__name__)


class NoModelAnswerer:
    """Answers without a model: what was found, with OCR/page snippets. Makes no network call."""

    provider = "none"
    model = ""

    def __repr__(self) -> str:
        return "NoModelAnswerer()"

    async def aclose(self) -> None:
        return None

    async def stream(
        self,
        question: str,
        sources: Sequence[Hit],
        *,
        query_image: bytes | None = None,
        query_text: str = "",
        history: Sequence[Turn] = (),
    ) -> AsyncIterator[str | Answer]:
        hits = list(sources)
        if hits:
            text = f"{NO_MODEL_TEXT}\n{source_listing(hits)}"
            answer = Answer(
                text=text, citations=list(range(1, len(hits) + 1)), sources=hits,
                provider=self.provider, status="no_model",
            )
        else:
            text = NO_SOURCES_TEXT
            if query_image is not None:
                text += " No answer model is configured, so I can't describe the image itself."
            answer = Answer(text=text, citations=[], sources=[], provider=self.provider,
                            status="no_sources")
        log.info("answer provider=none status=%s sources=%d", answer.status, len(hits))
        yield text
        yield answer
