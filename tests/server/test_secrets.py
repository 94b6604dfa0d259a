"""A password written into a server URL never reaches the user or the log: not in errors,
not in `stats` or `health`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.cli.helpers import cli_env, json_out, run_cli, write_images
from tests.server.conftest import free_port

pytestmark = pytest.mark.slow

SECRET = "s3cret-pass"


def _with_password(url: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(netloc=f"admin:{SECRET}@{parsed.netloc}").geturl()


def test_a_chroma_url_with_a_password_is_never_shown(tmp_path: Path, tiny_clip: Path,
                                                    chroma_url: str) -> None:
    down = cli_env(tmp_path / "down", tiny_clip,
                   PIXRAG_STORE__URL=f"http://admin:{SECRET}@127.0.0.1:{free_port()}")
    proc = run_cli(["search", "cat", "-vv"], down, cwd=tmp_path)
    assert proc.returncode == 1
    assert "pixrag: error: the vector store at http://admin@127.0.0.1:" in proc.stderr
    proc = run_cli(["health", "--json"], down, cwd=tmp_path)
    assert SECRET not in proc.stdout + proc.stderr

    up = cli_env(tmp_path / "up", tiny_clip, PIXRAG_STORE__URL=_with_password(chroma_url),
                 PIXRAG_STORE__PREFIX="secrets")
    write_images(tmp_path / "imgs", 1)
    for args in (["index", str(tmp_path / "imgs"), "--json"], ["stats", "--json"],
                 ["stats"], ["health", "--json"]):
        proc = run_cli([*args, "-vv"], up, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert SECRET not in proc.stdout + proc.stderr, args
    assert json_out(run_cli(["stats", "--json"], up, cwd=tmp_path))["items"] == 1
