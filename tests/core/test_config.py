"""Settings: TOML + PIXRAG_<SECTION>__<KEY> overrides, clear errors, documented keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.config import Secrets, Settings, load_settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_documents_every_key() -> None:
    example = ROOT / "config.example.toml"
    settings = load_settings(example, environ={})
    assert settings == Settings()  # the example shows the defaults
    raw = tomllib.loads(example.read_text())
    for name, field in Settings.model_fields.items():
        if isinstance(field.default, BaseModel):
            missing = set(type(field.default).model_fields) - set(raw[name])
            assert not missing, f"[{name}] keys not documented: {missing}"
        else:
            assert name in raw, f"{name} not documented"


def test_env_overrides_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[retrieval]\nk = 3\n[embedding]\nmodel = "/a"\n')
    s = load_settings(cfg, environ={"PIXRAG_RETRIEVAL__K": "7", "PIXRAG_DATA_DIR": "/x",
                                    "PIXRAG_SLACK__ADMINS": "U1, U2"})
    assert s.retrieval.k == 7
    assert s.embedding.model == "/a"
    assert s.data_dir == Path("/x")
    assert s.slack.admins == ["U1", "U2"]
    assert load_settings(cfg, environ={}, data_dir=Path("/y")).data_dir == Path("/y")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PIXRAG_RETRIEVAL__K": "lots"}, "retrieval.k"),
        ({"PIXRAG_NOPE__K": "1"}, "PIXRAG_NOPE__K"),
        ({"PIXRAG_RETRIEVAL__NOPE": "1"}, "PIXRAG_RETRIEVAL__NOPE"),
        ({"PIXRAG_ANSWER__PROVIDER": "gemini"}, "answer.provider"),
        ({"PIXRAG_INDEX__OCR_WORKERS": "0"}, "index.ocr_workers"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ=env)
    assert named in str(err.value)


def test_unknown_toml_key_and_secret_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[index]\nocrr = false\n")
    with pytest.raises(ConfigError, match="index.ocrr"):
        load_settings(cfg, environ={})
    cfg.write_text('[answer]\nopenai_api_key = "sk-x"\n')
    with pytest.raises(ConfigError, match="environment only"):
        load_settings(cfg, environ={})


def test_secrets_never_in_repr() -> None:
    s = Secrets.from_env({"OPENAI_API_KEY": "sk-secret-123", "OTHER": "x"})
    assert s.get("OPENAI_API_KEY") == "sk-secret-123"
    assert "sk-secret" not in repr(s) and "sk-secret" not in str(s)
