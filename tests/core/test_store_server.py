"""The vector store against a real Chroma server (`chroma run`), as shared by bot processes."""

from __future__ import annotations

import shutil
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
from core.errors import ModelMismatch, NotFound
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


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _chroma_binary()
    if binary is None:
        pytest.skip("the `chroma` command (chromadb's server) is not installed")
    port = _free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen([binary, "run", "--path", str(folder / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited ({proc.returncode}): "
                            f"{(folder / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma server did not answer within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
async def test_index_search_forget_on_a_chroma_server(tmp_path: Path, tiny_clip: Path,
                                                      chroma_url: str) -> None:
    images = write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "notes.txt").write_text("The deploy key rotates every Tuesday.\n",
                                                 encoding="utf-8")
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_STORE__URL=chroma_url,
                             PIXRAG_STORE__PREFIX="srv")
    async with open_service(settings, Secrets({})) as svc:
        assert svc.c.store.location == chroma_url
        rep = await svc.index_paths([tmp_path / "imgs"], "A")
        assert len(rep.indexed) == 4 and not rep.failed
        await svc.index_uploads([Upload("b.png", noise_bytes(50), "chat:b")], "B")
        assert svc.c.store.count("clip") == 4
        assert not (tmp_path / "data" / "chroma").exists()  # nothing embedded on disk

        hits = await svc.similar(images[1].read_bytes(), Scope("A"))
        assert hits[0].source == str(images[1].resolve())
        hits = await svc.search("deploy key Tuesday", Scope("A"))
        assert hits[0].kind == "chunk" and hits[0].source.endswith("notes.txt")
        hits = await svc.similar(noise_bytes(50), Scope("A"), k=10)
        assert "chat:b" not in {h.source for h in hits}

        removed = await svc.forget("A", str(images[1]))
        assert len(removed) == 1
        assert svc.c.store.count("clip") == 3
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
        assert svc.c.store.count("clip") == 4
    clip24 = build_clip(tmp_path / "clip24", projection=24)
    with pytest.raises(ModelMismatch, match="pixrag reindex"):
        async with open_service(make_settings(tmp_path / "data", clip24,
                                              PIXRAG_STORE__URL=chroma_url,
                                              PIXRAG_STORE__PREFIX="srv"), Secrets({})):
            pass
