"""The vector store against a real Chroma server (`chroma run`), as shared by bot processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.errors import ModelMismatch, NotFound, StoreError, StoreUnavailable
from core.types import Scope, Upload
from tests.chroma import ChromaServer
from tests.cli.helpers import make_settings, noise_bytes, write_images
from tests.clipmodel import build_clip


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


def test_a_chroma_server_frozen_before_start_is_an_error_not_a_hang(
        tmp_path: Path, tiny_clip: Path, frozen_endpoint: str) -> None:
    # chromadb's client asks the server things while it is being built, before any time
    # limit can be set on it: a server that accepts and never answers must still give one
    # error within the limit, and let the command exit.
    from tests.cli.helpers import cli_env, json_out, run_cli

    env = cli_env(tmp_path / "data", tiny_clip, PIXRAG_STORE__URL=frozen_endpoint,
                  PIXRAG_STORE__TIMEOUT_S="2")
    started = time.monotonic()
    proc = run_cli(["search", "hello", "--json"], env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "vector store" in json_out(proc)["error"]
    proc = run_cli(["health", "--skip-model", "--json"], env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    store = json_out(proc)["parts"]["store"]
    assert not store["ok"] and "not responding" in store["detail"]
    assert time.monotonic() - started < 40


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


def test_a_chroma_server_that_refuses_says_what_the_network_said(tmp_path: Path) -> None:
    # "not reachable (ValueError)" named chromadb's wrapper, not the refused connection.
    import socket

    from core.library.vectors import _client

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable) as err:
        _client(f"http://127.0.0.1:{port}", tmp_path, 5.0)
    assert str(err.value) == (f"the vector store at http://127.0.0.1:{port} is not reachable "
                              "(Connection refused)")
