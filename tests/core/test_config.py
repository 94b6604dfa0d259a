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


def test_an_empty_data_dir_is_an_error_not_the_current_folder(tmp_path: Path) -> None:
    for env in ({"PIXRAG_DATA_DIR": ""}, {"PIXRAG_DATA_DIR": "  "}):
        with pytest.raises(ConfigError) as err:
            load_settings(None, environ=env)
        assert str(err.value).startswith("config data_dir (or PIXRAG_DATA_DIR): must not be "
                                          "empty")
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = ""\n')
    with pytest.raises(ConfigError, match="data_dir"):
        load_settings(cfg, environ={})
    # An explicit folder (--data-dir) still wins over an empty variable.
    s = load_settings(None, environ={"PIXRAG_DATA_DIR": ""}, data_dir=tmp_path)
    assert s.data_dir == tmp_path


def test_a_config_path_that_is_no_readable_file_is_a_config_error(tmp_path: Path) -> None:
    # A folder given as the config file used to be an "internal error".
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, environ={})
    assert str(err.value) == f"config {tmp_path}: cannot read the file (Is a directory)"


def test_a_section_given_a_value_names_no_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("retrieval = 5\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert str(err.value) == ("config retrieval: [retrieval] is a section: write its keys "
                              "under a [retrieval] line, not a value")


def test_discord_sync_guild_is_an_id(tmp_path: Path) -> None:
    # A server name used to pass here and stop `pixrag discord --sync` after the login with
    # an internal error (int() of the name); an id without quotes was refused as "not a string".
    cfg = tmp_path / "c.toml"
    cfg.write_text("[discord]\nsync_guild = 123456789012345678\n")
    assert load_settings(cfg, environ={}).discord.sync_guild == "123456789012345678"
    env = {"PIXRAG_DISCORD__SYNC_GUILD": "My Server"}
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ=env)
    assert str(err.value).startswith("config discord.sync_guild (or PIXRAG_DISCORD__SYNC_GUILD): "
                                     "should be a server (guild) id, digits only")
    assert load_settings(None, environ={"PIXRAG_DISCORD__SYNC_GUILD": ""}).discord.sync_guild \
        == ""


def test_files_saved_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    # Windows editors may write UTF-8 with a BOM: it used to be "not valid TOML (Invalid
    # statement (at line 1, column 1))".
    from core.glossary import read_glossary_file

    cfg = tmp_path / "c.toml"
    cfg.write_bytes("\ufeff[retrieval]\r\nk = 3\r\n".encode())
    assert load_settings(cfg, environ={}).retrieval.k == 3
    terms = tmp_path / "terms.toml"
    terms.write_bytes('\ufeff[abbreviations]\nPLT = "platform team"\n'.encode())
    assert read_glossary_file(terms)[0] == {"PLT": "platform team"}
    from core.evaluate import load_queries

    queries = tmp_path / "eval.json"
    queries.write_bytes('\ufeff[{"query": "pricing", "target": "a.png"}]'.encode())
    assert load_queries(queries) == [{"query": "pricing", "target": "a.png"}]


def test_an_eval_file_that_is_a_folder_is_a_plain_error(tmp_path: Path) -> None:
    from core.errors import UnsupportedInput
    from core.evaluate import load_queries

    with pytest.raises(UnsupportedInput) as err:
        load_queries(tmp_path)
    assert str(err.value) == f"{tmp_path}: cannot read file (Is a directory)"


def test_log_level_must_be_a_level(tmp_path: Path) -> None:
    # Any other word used to mean INFO without a word said.
    assert load_settings(None, environ={"PIXRAG_LOG_LEVEL": "debug"}).log_level == "debug"
    assert load_settings(None, environ={"PIXRAG_LOG_LEVEL": "warn"}).log_level == "warn"
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={"PIXRAG_LOG_LEVEL": "LOUD"})
    assert str(err.value) == ("config log_level (or PIXRAG_LOG_LEVEL): Input should be one of "
                              "DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)")
    cfg = tmp_path / "c.toml"
    cfg.write_text('log_level = "verbose"\n')
    with pytest.raises(ConfigError, match="log_level"):
        load_settings(cfg, environ={})


def test_a_number_or_auto_key_names_the_key_and_both_forms() -> None:
    for key in ("EMBEDDING__BATCH_SIZE", "EMBEDDING__QUEUE_SIZE", "INDEX__OCR_WORKERS"):
        with pytest.raises(ConfigError) as err:
            load_settings(None, environ={f"PIXRAG_{key}": "AUTO"})
        text = str(err.value)
        section, name = key.lower().split("__")
        assert f"{section}.{name} (or PIXRAG_{key})" in text  # the variable a user can set
        assert "valid integer" in text and "'auto'" in text, text


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


def test_ocr_workers_auto_fits_the_host(tmp_path: Path) -> None:
    gib = 1 << 30
    index = load_settings(None, environ={}).index
    assert index.ocr_workers == "auto"
    assert index.ocr_engines() >= 1  # this host, whatever it is
    for cores, memory, engines in [(1, 64 * gib, 1), (2, 24 * gib, 2), (2, 3 * gib, 1),
                                   (8, 64 * gib, 2), (12, 64 * gib, 3), (16, 64 * gib, 4),
                                   (64, 256 * gib, 4), (64, 5 * gib, 2), (4, 0, 1)]:
        assert index.ocr_engines(cores, memory) == engines, (cores, memory)
    fixed = load_settings(None, environ={"PIXRAG_INDEX__OCR_WORKERS": "3"}).index
    assert fixed.ocr_workers == 3 and fixed.ocr_engines(1, gib) == 3  # as asked
    cfg = tmp_path / "c.toml"
    cfg.write_text('[index]\nocr_workers = "auto"\n')
    assert load_settings(cfg, environ={}).index.ocr_workers == "auto"
    with pytest.raises(ConfigError, match="index.ocr_workers"):
        load_settings(None, environ={"PIXRAG_INDEX__OCR_WORKERS": "many"})


def test_container_limits_lower_cores_and_memory(tmp_path: Path) -> None:
    from core.machine import usable_cores, usable_memory

    host_cores, host_memory = usable_cores(tmp_path), usable_memory(tmp_path)  # no limits
    assert host_cores >= 1 and host_memory > 0
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # --cpus 1
    (tmp_path / "memory.max").write_text(f"{1 << 30}\n")  # --memory 1g
    assert usable_cores(tmp_path) == 1
    assert usable_memory(tmp_path) == min(host_memory, 1 << 30)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert usable_cores(tmp_path) == host_cores and usable_memory(tmp_path) == host_memory
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "memory").mkdir()
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(v1) == host_cores
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # half a core: still one
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{512 << 20}\n")
    assert usable_cores(v1) == 1 and usable_memory(v1) == min(host_memory, 512 << 20)


def test_embedding_pipeline_auto_fits_the_device() -> None:
    emb = load_settings(None, environ={}).embedding
    big = 64 << 30  # bytes of memory: not the limit in these lines
    assert (emb.batch_size, emb.preprocess_workers, emb.queue_size) == ("auto",) * 3
    cpu = emb.pipeline(accelerated=False, cores=16)
    assert (cpu.batch, cpu.workers, cpu.queue) == (32, 2, 64)  # the CPU: a batch uses every core
    gpu = emb.pipeline(accelerated=True, cores=16, memory=big)
    assert (gpu.batch, gpu.workers, gpu.queue) == (256, 16, 512)  # a GPU waits for decoding
    assert emb.pipeline(accelerated=True, cores=1).workers == 2
    assert emb.pipeline(accelerated=True, cores=128).workers == 32
    gib = 1 << 30
    assert emb.pipeline(accelerated=True, cores=16, memory=4 * gib).queue == 256  # 16 MiB each
    assert emb.pipeline(accelerated=True, cores=16, memory=gib // 2).queue == 64  # the floor
    assert emb.pipeline(accelerated=True, cores=16, memory=0).queue == 512  # unknown memory
    # An explicit device decides without looking at the machine.
    forced_cpu = load_settings(None, environ={"PIXRAG_EMBEDDING__DEVICE": "cpu"}).embedding
    assert forced_cpu.pipeline().batch == 32
    cuda = load_settings(None, environ={"PIXRAG_EMBEDDING__DEVICE": "cuda"}).embedding
    assert cuda.pipeline(cores=8, memory=big) == gpu.__class__(batch=256, workers=8, queue=512)
    # Numbers work as before; the look-ahead follows a set batch size.
    fixed = load_settings(None, environ={"PIXRAG_EMBEDDING__BATCH_SIZE": "100",
                                         "PIXRAG_EMBEDDING__PREPROCESS_WORKERS": "3"}).embedding
    assert fixed.pipeline(accelerated=True, cores=16, memory=big) == gpu.__class__(100, 3, 200)
    small = load_settings(None, environ={"PIXRAG_EMBEDDING__QUEUE_SIZE": "8"}).embedding
    assert small.pipeline(accelerated=False).queue == 8
    for key, bad in (("BATCH_SIZE", "0"), ("PREPROCESS_WORKERS", "lots"), ("QUEUE_SIZE", "-1")):
        with pytest.raises(ConfigError, match=f"embedding.{key.lower()}"):
            load_settings(None, environ={f"PIXRAG_EMBEDDING__{key}": bad})
