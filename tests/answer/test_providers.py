"""Choosing the answer implementation from config and the environment."""

from __future__ import annotations

import pytest

from core.answer import (
    ModelAnswerer,
    ModelCaptioner,
    NoModelAnswerer,
    build_answerer,
    build_captioner,
    resolve_provider,
)
from core.config import AnswerSettings, IndexSettings, Secrets, load_settings
from core.errors import ConfigError
from tests.answer.conftest import KEY

BOTH = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY}


@pytest.mark.parametrize(
    ("keys", "base_url", "expected"),
    [
        (BOTH, "", "anthropic"),
        ({"OPENAI_API_KEY": KEY}, "", "openai"),
        ({}, "http://127.0.0.1:1/v1", "openai-compatible"),
        ({}, "", "none"),
    ],
)
async def test_auto_picks_the_first_configured_provider(
    keys: dict[str, str], base_url: str, expected: str
) -> None:
    settings = AnswerSettings(provider="auto", base_url=base_url, model="m")
    assert resolve_provider(settings, Secrets(keys)) == expected
    answerer = build_answerer(settings, Secrets(keys))
    try:
        assert answerer.provider == expected
    finally:
        await answerer.aclose()


async def test_default_config_without_keys_is_no_model() -> None:
    settings = load_settings(None, environ={})
    answerer = build_answerer(settings.answer, Secrets.from_env({}))
    assert isinstance(answerer, NoModelAnswerer) and answerer.provider == "none"


async def test_default_models() -> None:
    for provider, model in (("anthropic", "claude-"), ("openai", "gpt-4o")):
        answerer = build_answerer(AnswerSettings(provider=provider), Secrets(BOTH))
        assert isinstance(answerer, ModelAnswerer) and answerer.model.startswith(model)
        await answerer.aclose()


@pytest.mark.parametrize(("provider", "env"), [("anthropic", "ANTHROPIC_API_KEY"),
                                               ("openai", "OPENAI_API_KEY")])
def test_explicit_provider_without_key_names_the_env_var(provider: str, env: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_answerer(AnswerSettings(provider=provider), Secrets({}))
    assert err.value.key == env and env in str(err.value)


def test_compatible_needs_base_url_and_model_but_no_key() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        build_answerer(AnswerSettings(provider="openai-compatible", model="m"), Secrets({}))
    with pytest.raises(ConfigError, match="PIXRAG_ANSWER__MODEL"):
        build_answerer(AnswerSettings(provider="openai-compatible", base_url="http://x/v1"),
                       Secrets({}))


async def test_build_captioner() -> None:
    on = IndexSettings(captions=True, caption_model="claude-haiku-4-5")
    assert build_captioner(IndexSettings(), AnswerSettings(), Secrets(BOTH)) is None
    assert build_captioner(on, AnswerSettings(provider="none"), Secrets(BOTH)) is None
    assert build_captioner(on, AnswerSettings(), Secrets({})) is None  # auto -> none
    captioner = build_captioner(on, AnswerSettings(), Secrets(BOTH))
    assert isinstance(captioner, ModelCaptioner)
    assert captioner.model_id == "anthropic:claude-haiku-4-5"
    await captioner.aclose()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_captioner(on, AnswerSettings(provider="openai"), Secrets({}))


async def test_reprs_never_show_the_key() -> None:
    for provider in ("anthropic", "openai"):
        answerer = build_answerer(AnswerSettings(provider=provider), Secrets(BOTH))
        assert KEY not in repr(answerer) and KEY not in str(answerer)
        assert KEY not in repr(answerer._backend)  # type: ignore[attr-defined]
        await answerer.aclose()
