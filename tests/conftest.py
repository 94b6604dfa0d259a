"""Shared fixtures: a tiny random CLIP on disk, settings in a temp data dir, a live service."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from tests.chroma import ChromaServer
from tests.clipmodel import build_clip

for _name, _value in (("ORT_DISABLE_TELEMETRY", "1"), ("ANONYMIZED_TELEMETRY", "False"),
                      ("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real key or a developer's PIXRAG_* override must never leak into a test run."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "OPENAI_", "PIXRAG_", "DISCORD_", "SLACK_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _fail_on_error_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture):
    """discord.py and bolt log listener exceptions instead of raising: make them fail tests."""
    caplog.set_level(logging.INFO)
    yield
    if request.node.get_closest_marker("allow_error_logs"):
        return
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("ERROR logged during test:\n" + "\n".join(
            f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in errors))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIP saved with its processor, loaded like a Hub model."""
    return build_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def settings(tmp_path: Path, tiny_clip: Path) -> Settings:
    env = {
        "PIXRAG_EMBEDDING__MODEL": str(tiny_clip),
        "PIXRAG_ANSWER__PROVIDER": "none",
    }
    return load_settings(None, environ=env, data_dir=tmp_path / "data")


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[object]:
    from core.app import open_service
    from core.config import Secrets

    async with open_service(settings, Secrets({})) as svc:
        yield svc


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A server of this test's own, to freeze or kill."""
    folder = tmp_path / "chroma-own"
    folder.mkdir()
    server = ChromaServer(folder)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def frozen_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for s in held:
        s.close()
    srv.close()
