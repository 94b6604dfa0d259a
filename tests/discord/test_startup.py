"""Discord down at start: bounded retries, then one clear error (the CLI prints it, exit 1)."""

from __future__ import annotations

import logging
import socket
import time

import discord
import pytest

from bot.discord.app import build_bot, run_discord
from bot.startup import PlatformUnreachable, Retry
from core.config import Secrets
from core.errors import ConfigError

FAST = Retry(attempts=3, first_delay_s=0.01, timeout_s=5.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_refused_connection_gives_up_after_bounded_retries(
    service, settings, monkeypatch, caplog
) -> None:
    port = _closed_port()
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    started = time.monotonic()
    with pytest.raises(PlatformUnreachable) as err:
        await run_discord(service, settings, Secrets({"DISCORD_TOKEN": "t"}), retry=FAST)
    assert time.monotonic() - started < 10
    text = str(err.value)
    assert text.startswith("cannot reach Discord") and "3 attempt" in text
    assert f"127.0.0.1:{port}" in text and "\n" not in text and "Traceback" not in text
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2 and all(r.levelno == logging.WARNING for r in retries)
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks in the log either


async def test_dns_failure_is_one_clear_line(service, settings, monkeypatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", "http://no-such-host.invalid/api/v10")
    with pytest.raises(PlatformUnreachable, match="DNS lookup of no-such-host.invalid failed"):
        await run_discord(service, settings, Secrets({"DISCORD_TOKEN": "t"}), retry=FAST)


async def test_rejected_token_is_a_config_error_without_retries(
    fake, service, settings
) -> None:
    fake.reject_token = True
    with pytest.raises(ConfigError, match="DISCORD_TOKEN.*rejected"):
        await run_discord(service, settings, Secrets({"DISCORD_TOKEN": "revoked"}), retry=FAST)
    assert len(fake.matching("GET", r"^/users/@me$")) == 1


def test_no_voice_library_notices(service, settings, monkeypatch, caplog) -> None:
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    build_bot(service, settings)
    noise = [r.getMessage() for r in caplog.records if "voice will NOT be supported" in
             r.getMessage()]
    assert noise == []
