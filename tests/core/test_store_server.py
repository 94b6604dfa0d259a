"""The vector store against a real Chroma server (`chroma run`), as shared by bot processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.errors import ModelMismatch, NotFound, StoreError, StoreUnavailable
from core.types import Scope, Upload
from tests.cli.helpers import make_settings, noise_bytes, write_images
from tests.clipmodel import build_clip


def _chroma_binary() -> str | None:
    here = Path(sys.executable).parent / "chroma"
    return str(here) if here.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """A real `chroma run` process on a free port, stopped (or killed) by the test."""

    def __init__(self, folder: Path) -> None:
        binary = _chroma_binary()
        if binary is None:
            pytest.skip("the `chroma` command (chromadb's server) is not installed")
        port = _free_port()
        self.folder = folder
        self._log = (folder / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port",
             str(port)], stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"chroma server exited ({self.proc.returncode}): "
                            f"{(folder / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("chroma server did not answer within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


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


@pytest.mark.slow
async def test_index_search_forget_on_a_chroma_server(tmp_path: Path, tiny_clip: Path,
                                                      chroma_url: str) -> None:
    images = write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "notes.txt").write_text("The deploy key rotates every Tuesday.\n",
                                                 encoding="utf-8")
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_STORE__URL=chroma_url,
                             PIXRAG_STORE__PREFIX="srv")
    async with open_service(settings, Secrets({})) as svc:
        assert (await svc.library.vectors()).location == chroma_url
        rep = await svc.index_paths([tmp_path / "imgs"], "A")
        assert len(rep.indexed) == 4 and not rep.failed
        await svc.index_uploads([Upload("b.png", noise_bytes(50), "chat:b")], "B")
        assert (await svc.library.vectors()).count("clip") == 4
        assert not (tmp_path / "data" / "chroma").exists()  # nothing embedded on disk

        hits = await svc.similar(images[1].read_bytes(), Scope("A"))
        assert hits[0].source == str(images[1].resolve())
        hits = await svc.search("deploy key Tuesday", Scope("A"))
        assert hits[0].kind == "chunk" and hits[0].source.endswith("notes.txt")
        hits = await svc.similar(noise_bytes(50), Scope("A"), k=10)
        assert "chat:b" not in {h.source for h in hits}

        removed = await svc.forget("A", str(images[1]))
        assert len(removed) == 1
        assert (await svc.library.vectors()).count("clip") == 3
        hits = await svc.similar(images[1].read_bytes(), Scope("A"), k=10)
        assert removed[0] not in {h.id for h in hits}
        with pytest.raises(NotFound):
            await svc.forget("A", str(images[1]))
        again = await svc.index_paths([tmp_path / "imgs"], "A")
        assert [i.source for i in again.indexed] == [str(images[1].resolve())]

    # A second process (another bot) sees the same vectors; a different model is refused.
    other = make_settings(tmp_path / "data2", tiny_clip, PIXRAG_STORE__URL=chroma_url,
                          PIXRAG_STORE__PREFIX="srv")
    async with open_service(other, Secrets({})) as svc:
        assert (await svc.library.vectors()).count("clip") == 4
    clip24 = build_clip(tmp_path / "clip24", projection=24)
    with pytest.raises(ModelMismatch, match="pixrag reindex"):
        async with open_service(make_settings(tmp_path / "data", clip24,
                                              PIXRAG_STORE__URL=chroma_url,
                                              PIXRAG_STORE__PREFIX="srv"), Secrets({})):
            pass


@pytest.mark.slow
async def test_a_frozen_chroma_server_is_an_error_not_a_hang(tmp_path: Path, tiny_clip: Path,
                                                             own_chroma: ChromaServer) -> None:
    images = write_images(tmp_path / "imgs", 2)
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_STORE__URL=own_chroma.url,
                             PIXRAG_STORE__TIMEOUT_S="2")
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths(images, "A")
        os.kill(own_chroma.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="not responding"):
            await svc.similar(images[0].read_bytes(), Scope("A"))
        with pytest.raises(StoreUnavailable):
            await svc.index_uploads([Upload("c.png", noise_bytes(70), "chat:c")], "A")
        assert time.monotonic() - started < 20
        os.kill(own_chroma.proc.pid, signal.SIGCONT)


@pytest.mark.slow
def test_index_stops_at_once_when_the_store_dies(tmp_path: Path, tiny_clip: Path,
                                                  own_chroma: ChromaServer) -> None:
    from tests.cli.helpers import cli_env, run_cli

    folder = tmp_path / "many"
    write_images(folder, 40)
    env = cli_env(tmp_path / "data", tiny_clip, PIXRAG_STORE__URL=own_chroma.url,
                  PIXRAG_STORE__TIMEOUT_S="3", PIXRAG_INDEX__OCR="false")
    first = run_cli(["index", str(folder / "img0.png"), "--json"], env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    own_chroma.proc.kill()
    own_chroma.proc.wait(timeout=10)
    started = time.monotonic()
    proc = run_cli(["index", str(folder)], env, cwd=tmp_path)
    assert proc.returncode == 1
    assert time.monotonic() - started < 60
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("pixrag: error:")]
    assert len(lines) == 1 and "vector store" in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout.count("FAILED") == 0
    assert StoreError  # the CLI's one line comes from this family
