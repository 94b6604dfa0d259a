"""Content-addressed blobs and thumbnails on disk."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from core.library.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"\x89PNG fake bytes"
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = store.path(sha)
    assert path == tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == data and store.has(sha)
    mtime = path.stat().st_mtime_ns
    assert store.put(data) == sha  # second put: no rewrite
    assert path.stat().st_mtime_ns == mtime
    assert store.put(b"other") != sha


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for i in range(5):
        store.put(bytes([i]) * 1000)
    store.put_thumbnail("item1", b"\xff\xd8jpeg")
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert len(names) == 6
    assert not [n for n in names if n.startswith(".tmp-")]


def test_delete_and_missing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"abc")
    store.delete(sha)
    assert not store.has(sha)
    store.delete(sha)  # missing is fine
    assert not store.has("0" * 64)


@pytest.mark.parametrize("bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64])
def test_invalid_sha_is_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        BlobStore(tmp_path).path(bad)


def test_thumbnails(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    path = store.put_thumbnail("discord:123:abc.p1", b"jpeg1")
    assert path == store.thumbnail_path("discord:123:abc.p1")
    assert path.parent == tmp_path / "thumbs" and ":" not in path.name
    assert path.read_bytes() == b"jpeg1"
    store.put_thumbnail("discord:123:abc.p1", b"jpeg2")  # replaced atomically
    assert path.read_bytes() == b"jpeg2"
    assert store.thumbnail_path("a_b") != store.thumbnail_path("a:b")
    store.delete_thumbnail("discord:123:abc.p1")
    assert not path.exists()
    store.delete_thumbnail("discord:123:abc.p1")


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/b", "a\\b", ".hidden", "a..b", "a b",
                                 "x" * 201, "é"])
def test_unsafe_thumbnail_keys_are_rejected(tmp_path: Path, bad: str) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError, match="thumbnail key"):
        store.put_thumbnail(bad, b"x")
    assert not any(tmp_path.rglob("*"))


def test_concurrent_puts_of_same_bytes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(200_000)
    shas: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                shas.append(store.put(data))
                assert store.path(shas[-1]).read_bytes() == data  # never a partial file
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert not errors and len(set(shas)) == 1 and len(shas) == 80
