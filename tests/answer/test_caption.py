"""The captioner (used by indexing) against the fake server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from core.answer import build_captioner
from core.answer.prompt import CAPTION_SYSTEM_PROMPT
from core.config import IndexSettings
from core.errors import AnswerError, ProviderUnavailable, UnsupportedImage
from core.protocols import Captioner
from core.types import Usage
from tests.answer.conftest import KEY, make_image
from tests.answer.fakellm import FakeLLM, Reply
from tests.answer.helpers import chat_messages, images, secrets_for, settings_for, system_prompt

ON = IndexSettings(captions=True)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_caption_is_one_request_with_the_image(provider: str, fake: FakeLLM,
                                                     tmp_path: Path) -> None:
    fake.script(Reply(deltas=["A terminal showing ", "\n ERROR 42."], input_tokens=900,
                      output_tokens=12))
    captioner = build_captioner(ON, settings_for(provider, fake), secrets_for(provider))
    assert isinstance(captioner, Captioner)
    try:
        jpeg = make_image(tmp_path / "x.png", (1800, 900)).read_bytes()
        text, usage = await captioner.caption(jpeg)
    finally:
        await captioner.aclose()
    assert text == "A terminal showing ERROR 42."
    assert usage == Usage(900, 12)
    (req,) = fake.requests
    assert system_prompt(req) == CAPTION_SYSTEM_PROMPT
    (user,) = chat_messages(req)
    (sent,) = images(user)
    assert max(Image.open(io.BytesIO(sent)).size) == 1568


async def test_a_caption_past_max_tokens_is_cut(fake: FakeLLM, tmp_path: Path) -> None:
    # A server that ignores max_tokens: the stored caption is not a megabyte of text.
    fake.script(Reply(deltas=["a cat " * 200_000]))
    captioner = build_captioner(ON, settings_for("openai-compatible", fake, max_tokens=32),
                                secrets_for("openai-compatible"))
    assert captioner is not None
    try:
        text, _ = await captioner.caption(make_image(tmp_path / "x.png", (64, 64)).read_bytes())
    finally:
        await captioner.aclose()
    assert text.startswith("a cat a cat") and len(text) <= 32 * 16


async def test_caption_outage_raises_provider_unavailable(fake: FakeLLM, tmp_path: Path
                                                          ) -> None:
    fake.default = Reply(status=503, headers={"retry-after-ms": "1"})
    captioner = build_captioner(ON, settings_for("anthropic", fake, max_retries=1),
                                secrets_for("anthropic"))
    assert captioner is not None
    jpeg = make_image(tmp_path / "x.png", (64, 64)).read_bytes()
    try:
        with pytest.raises(ProviderUnavailable):
            await captioner.caption(jpeg)
        assert len(fake.requests) == 2
        fake.default = Reply(status=401, message=f"bad key {KEY}")
        with pytest.raises(AnswerError) as err:
            await captioner.caption(jpeg)
        assert KEY not in str(err.value) and not isinstance(err.value, ProviderUnavailable)
        with pytest.raises(UnsupportedImage):
            await captioner.caption(b"not an image")
    finally:
        await captioner.aclose()
