"""The manifest matches the code; run_slack names the missing environment variable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from bot.slack import interactive
from bot.slack.app import build_app, run_slack
from core.config import Secrets, Settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_lists_what_the_code_handles():
    manifest = yaml.safe_load((ROOT / "slack-manifest.yaml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert {c["command"] for c in features["slash_commands"]} == {"/ask", "/pixrag"}
    shortcuts = {s["callback_id"]: s["type"] for s in features["shortcuts"]}
    assert shortcuts == {interactive.SIMILAR_SHORTCUT: "message",
                         interactive.INDEX_MESSAGE_SHORTCUT: "message",
                         interactive.ADD_FILES_SHORTCUT: "global"}
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "files:read", "files:write", "reactions:write",
            "im:history", "channels:history", "groups:history", "commands",
            "users:read", "channels:read", "groups:read"} <= scopes
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "app_home_opened", "file_deleted", "message.channels",
            "message.groups", "message.im"} <= events
    assert features["app_home"]["home_tab_enabled"] is True


@pytest.mark.parametrize(
    "mode,env,missing",
    [
        ("socket", {}, "SLACK_BOT_TOKEN"),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),
        ("http", {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "x"}, "SLACK_SIGNING_SECRET"),
    ],
)
async def test_run_slack_names_missing_env_var(mode, env, missing, settings: Settings):
    cfg = settings.model_copy(update={"slack": settings.slack.model_copy(update={"mode": mode})})
    with pytest.raises(ConfigError) as err:
        await run_slack(object(), cfg, Secrets(env))  # type: ignore[arg-type]
    assert err.value.key == missing and missing in str(err.value)


async def test_http_mode_on_a_taken_port_is_a_config_error(settings: Settings):
    # Used to end `pixrag slack` with "internal error (OSError: [Errno 98] ...)".
    import socket

    from bot.slack.app import serve_http

    secrets = Secrets({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})
    app = build_app(object(), settings, secrets)  # type: ignore[arg-type]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            await serve_http(app, "127.0.0.1", port)
    assert str(err.value).startswith(f"config slack.port (or PIXRAG_SLACK__PORT): cannot listen "
                                     f"on 127.0.0.1:{port} (")


def test_build_app_without_token_is_a_config_error(settings: Settings):
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        build_app(object(), settings, Secrets({}))  # type: ignore[arg-type]


def test_core_never_imports_slack():
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                # The top-level package: "boto3" is not "bot".
                assert name.split(".")[0] not in ("slack_bolt", "slack_sdk", "bot"), (path, name)
