"""Server mode end to end: several PixRAG processes, each with its own (disposable) data dir,
sharing a real Chroma server, PostgreSQL and an S3 server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chroma import ChromaServer
from tests.cli.helpers import cli_env, json_out, pixrag_cmd, run_cli, write_images
from tests.corpus import TXT

pytestmark = pytest.mark.slow


def _host(tmp_path: Path, name: str, model: Path, chroma: ChromaServer, pg_url: str,
          s3_url: str, s3_endpoint: str, aws_env: dict[str, str]) -> dict[str, str]:
    env = cli_env(tmp_path / name, model, PIXRAG_STORE__URL=chroma.url,
                  PIXRAG_CATALOG__URL=pg_url, PIXRAG_BLOBS__URL=s3_url,
                  PIXRAG_BLOBS__ENDPOINT_URL=s3_endpoint,
                  PIXRAG_RETRIEVAL__MIN_CLIP_IMAGE="-1")
    env.update(aws_env)
    return env


def test_hosts_share_one_index(tmp_path: Path, tiny_clip: Path, own_chroma: ChromaServer,
                               pg_url: str, s3_url: str, s3_endpoint: str,
                               aws_env: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    images = write_images(docs, 4)
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")

    def host(name: str) -> dict[str, str]:
        return _host(tmp_path, name, tiny_clip, own_chroma, pg_url, s3_url, s3_endpoint, aws_env)

    a = run_cli(["index", str(docs), "--space", "team", "--json"], host("a"), cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    assert len(json_out(a)["indexed"]) == 5
    assert not (tmp_path / "a" / "chroma").exists()
    assert not (tmp_path / "a" / "catalog.sqlite").exists()
    shutil.rmtree(tmp_path / "a")  # the first host is gone for good

    b = host("b")
    proc = run_cli(["stats", "--space", "team", "--json"], b, cwd=tmp_path)
    assert json_out(proc)["items"] == 5, proc.stderr[-2000:]
    proc = run_cli(["similar", str(images[2]), "--space", "team", "--json"], b, cwd=tmp_path)
    hits = json_out(proc)["results"]
    assert hits[0]["source"] == str(images[2].resolve()), proc.stderr[-2000:]
    assert Path(hits[0]["thumbnail"]).is_file()  # fetched into this host's cache
    proc = run_cli(["search", "office", "Berlin", "--space", "team", "--json"], b, cwd=tmp_path)
    assert json_out(proc)["results"][0]["source"] == str((docs / "notes.txt").resolve())
    proc = run_cli(["forget", str(images[0]), "--space", "team", "--json"], b, cwd=tmp_path)
    assert len(json_out(proc)["removed"]) == 1

    c = host("c")
    proc = run_cli(["stats", "--space", "team", "--json"], c, cwd=tmp_path)
    assert json_out(proc)["items"] == 4
    proc = run_cli(["check", "--json"], c, cwd=tmp_path)
    report = json_out(proc)
    assert report["ok"], report

    # Two hosts index the same new folder at once: no duplicates, nothing lost.
    more = tmp_path / "more"
    write_images(more, 6, prefix="m", seed=100)
    procs = [subprocess.Popen([*pixrag_cmd(), "index", str(more), "--space", "team", "--json"],
                              env=host(name), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("d", "e")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    proc = run_cli(["stats", "--space", "team", "--json"], c, cwd=tmp_path)
    assert json_out(proc)["items"] == 10
    proc = run_cli(["check", "--json"], c, cwd=tmp_path)
    assert json_out(proc)["ok"]


def test_migrate_embedded_to_server_mode(tmp_path: Path, tiny_clip: Path,
                                         own_chroma: ChromaServer,
                                         pg_url: str, s3_url: str, s3_endpoint: str,
                                         aws_env: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    images = write_images(docs, 3)
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    local = cli_env(tmp_path / "local", tiny_clip)
    local.update(aws_env)
    assert run_cli(["index", str(docs), "--json"], local, cwd=tmp_path).returncode == 0
    target = tmp_path / "server.toml"
    target.write_text(
        f'data_dir = "{tmp_path / "cache"}"\n[embedding]\nmodel = "{tiny_clip}"\n'
        f'[store]\nurl = "{own_chroma.url}"\n[catalog]\nurl = "{pg_url}"\n'
        f'[blobs]\nurl = "{s3_url}"\nendpoint_url = "{s3_endpoint}"\n', encoding="utf-8")
    for _ in range(2):  # safe to re-run
        proc = run_cli(["migrate", "--to", str(target), "--json"], local, cwd=tmp_path)
        report = json_out(proc)
        assert proc.returncode == 0 and report["ok"], (report, proc.stderr[-2000:])
        assert report["items"] == {"source": 4, "target": 4}
    server = _host(tmp_path, "fresh", tiny_clip, own_chroma, pg_url, s3_url, s3_endpoint, aws_env)
    proc = run_cli(["similar", str(images[1]), "--json"], server, cwd=tmp_path)
    assert json_out(proc)["results"][0]["source"] == str(images[1].resolve())
    proc = run_cli(["check", "--json"], server, cwd=tmp_path)
    assert json_out(proc)["ok"], proc.stdout
