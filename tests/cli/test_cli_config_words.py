"""Config errors in the user's words: the closest valid key, where a key belongs, and where a
secret must go instead; the same sentence for the file and for the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


def _file_error(tmp_path: Path, text: str) -> str:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    return str(err.value)


def _env_error(**env: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ=env)
    return str(err.value)


@pytest.mark.parametrize(("section", "typo", "meant"), [
    ("embedding", "modle", "model"),
    ("retrieval", "kk", "k"),
    ("index", "ocrr", "ocr"),
    ("answer", "max_token", "max_tokens"),
])
def test_unknown_key_suggests_the_closest_in_file_and_env(
        tmp_path: Path, section: str, typo: str, meant: str) -> None:
    from_file = _file_error(tmp_path, f"[{section}]\n{typo} = 1\n")
    env_name = f"PIXRAG_{section.upper()}__{typo.upper()}"
    from_env = _env_error(**{env_name: "1"})
    expected = f"unknown key `{typo}` in [{section}]; did you mean `{meant}`?"
    assert from_file == f"config {section}.{typo}: {expected}"
    assert from_env == f"config {env_name}: {expected}"


def test_unknown_section_and_misplaced_key(tmp_path: Path) -> None:
    assert _file_error(tmp_path, "[embeding]\nmodel = 'x'\n").endswith(
        "unknown section [embeding]; did you mean [embedding]?")
    assert _env_error(PIXRAG_EMBEDING__MODEL="x").endswith(
        "unknown section [embeding]; did you mean [embedding]?")
    # A section key written at the top of the file: say which section it belongs to.
    msg = _file_error(tmp_path, "provider = 'openai'\n")
    assert msg == ("config provider: unknown key `provider`; it belongs in [text] or "
                   "[answer]")
    assert _file_error(tmp_path, "log_levl = 'INFO'\n").endswith("did you mean `log_level`?")
    # Nothing close: no guess.
    assert _file_error(tmp_path, "[retrieval]\nzzzzzz = 1\n").endswith(
        "unknown key `zzzzzz` in [retrieval]")


@pytest.mark.parametrize(("toml", "env_name", "variable"), [
    ("[answer]\nprovider = 'anthropic'\napi_key = 'sk-ant-x'\n", "PIXRAG_ANSWER__API_KEY",
     "ANTHROPIC_API_KEY"),
    ("[answer]\nprovider = 'openai'\napi_key = 'sk-x'\n", "PIXRAG_ANSWER__API_KEY",
     "OPENAI_API_KEY"),
    ("[discord]\ntoken = 'abc'\n", "PIXRAG_DISCORD__TOKEN", "DISCORD_TOKEN"),
    ("[slack]\nsigning_secret = 'abc'\n", "PIXRAG_SLACK__SIGNING_SECRET",
     "SLACK_SIGNING_SECRET"),
    ("[slack]\napp_token = 'xapp'\n", "PIXRAG_SLACK__APP_TOKEN", "SLACK_APP_TOKEN"),
    ("openai_api_key = 'sk-x'\n", "PIXRAG_OPENAI_API_KEY", "OPENAI_API_KEY"),
])
def test_secret_in_config_names_the_variable(tmp_path: Path, toml: str, env_name: str,
                                             variable: str) -> None:
    from_file = _file_error(tmp_path, toml)
    provider = "openai" if "'openai'" in toml else "anthropic"
    from_env = _env_error(**{env_name: "secret-value", "PIXRAG_ANSWER__PROVIDER": provider})
    tail = (f"secrets are read from the environment only: set {variable} there and remove "
            "this key")
    assert from_file.endswith(tail) and from_env.endswith(tail)
    assert env_name in from_env
    for msg in (from_file, from_env):
        assert "secret-value" not in msg and "sk-" not in msg and "xapp" not in msg


def test_api_key_without_provider_names_both_variables(tmp_path: Path) -> None:
    assert "set ANTHROPIC_API_KEY or OPENAI_API_KEY there" in _file_error(
        tmp_path, "[answer]\napi_key = 'k'\n")


def test_other_pixrag_variables_are_not_settings() -> None:
    # Only PIXRAG_<SECTION>__<KEY> and top-level keys are settings; other names are ignored.
    s = load_settings(None, environ={"PIXRAG_TEST_TOKEN": "x", "PIXRAG_LOG_FORMAT": "json",
                                     "PIXRAG_METRICS__PORT": "9100",
                                     "PIXRAG_TORCH_INDEX": "https://example.org/whl",
                                     "PIXRAG_TEXT_FOO": "x"})
    assert s.log_format == "json" and s.metrics.port == 9100


@pytest.mark.parametrize(("name", "expected"), [
    ("PIXRAG_EMBEDDING_MODEL", "keys of [embedding] take two underscores; did you mean "
     "PIXRAG_EMBEDDING__MODEL?"),
    ("PIXRAG_SLACK_ADMINS", "did you mean PIXRAG_SLACK__ADMINS?"),
    ("PIXRAG_RETRIEVAL", "[retrieval] is a section: set one of its keys as "
     "PIXRAG_RETRIEVAL__<KEY>"),
    ("PIXRAG_DATADIR", "not a setting; did you mean PIXRAG_DATA_DIR?"),
    ("PIXRAG_LOGLEVEL", "did you mean PIXRAG_LOG_LEVEL?"),
    ("PIXRAG_CONFIG", "give the config file with --config FILE (or as ./config.toml)"),
    ("PIXRAG_SLACK_TOKEN", "secrets are read from the environment only: set SLACK_BOT_TOKEN "
     "there and remove this key"),
    ("PIXRAG_ANSWER_API_KEY", "set ANTHROPIC_API_KEY or OPENAI_API_KEY there and remove this "
     "key"),
])
def test_a_setting_written_wrong_in_the_environment_is_named(name: str, expected: str) -> None:
    # These used to be ignored without a word: the model, the admins, the data folder of the
    # defaults used instead.
    msg = _env_error(**{name: "/models/clip"})
    assert msg.startswith(f"config {name}: ") and msg.endswith(expected), msg
    assert "/models/clip" not in msg


def test_kubernetes_service_variables_are_not_settings() -> None:
    # A Service named pixrag-slack (or pixrag-metrics, or pixrag) puts these in every pod:
    # none is a setting written wrong, and none may stop the bot.
    env = {}
    for service, port in (("PIXRAG_SLACK", 3000), ("PIXRAG_METRICS", 9100), ("PIXRAG", 3000)):
        link = f"tcp://10.0.0.5:{port}"
        env.update({f"{service}_SERVICE_HOST": "10.0.0.5", f"{service}_SERVICE_PORT": str(port),
                    f"{service}_SERVICE_PORT_HTTP": str(port), f"{service}_PORT": link,
                    f"{service}_PORT_{port}_TCP": link, f"{service}_PORT_{port}_TCP_PROTO": "tcp",
                    f"{service}_PORT_{port}_TCP_PORT": str(port),
                    f"{service}_PORT_{port}_TCP_ADDR": "10.0.0.5"})
    s = load_settings(None, environ=env)
    assert s.slack.port == 3000 and s.metrics.port == 0
    # Written by a person (a port, not a link), the same name is the mistake it looks like.
    with pytest.raises(ConfigError, match="did you mean PIXRAG_SLACK__PORT"):
        load_settings(None, environ={"PIXRAG_SLACK_PORT": "3001"})
