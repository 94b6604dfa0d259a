"""S3BlobStore on moto's S3 server: hosts that share a bucket, the bounded cache, idempotent
writes, and a dead, frozen or misconfigured endpoint."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import boto3
import pytest

from core.errors import ConfigError, StoreError, StoreUnavailable
from core.library.s3_blobs import S3BlobStore, parse_s3_url
from tests.server.conftest import free_port


def _store(s3_url: str, endpoint: str, cache: Path, **kw: object) -> S3BlobStore:
    return S3BlobStore(s3_url, cache, endpoint_url=endpoint, **kw)  # type: ignore[arg-type]


def test_object_layout(s3_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    store = _store(s3_url, s3_endpoint, tmp_path / "c")
    sha = store.put(b"original")
    store.put_thumbnail("slack:T1:abc", b"jpeg")
    bucket, prefix = parse_s3_url(s3_url)
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [f"{prefix}/blobs/{sha[:2]}/{sha[2:4]}/{sha}",
                    f"{prefix}/thumbs/slack:T1:abc.jpg"]
    assert "slack:T1:abc" in store.thumbnail_keys()  # what `pixrag check` compares
    assert parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError, match="s3://"):
        parse_s3_url("http://b/p")


def test_another_host_downloads_on_demand(s3_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    first = _store(s3_url, s3_endpoint, tmp_path / "host1")
    shas = [first.put(bytes([i]) * 100) for i in range(5)]
    first.put_thumbnail("item1", b"thumb1")
    second = _store(s3_url, s3_endpoint, tmp_path / "host2")
    path = second.path(shas[0])
    assert not path.exists()  # path() only names the cache file
    assert second.has(shas[0])
    assert second.ensure_local(shas[0]) == path and path.read_bytes() == b"\x00" * 100
    assert second.read(shas[1]) == b"\x01" * 100
    assert second.ensure_thumbnail("item1") == second.thumbnail_path("item1")
    assert second.thumbnail_path("item1").read_bytes() == b"thumb1"
    second.prefetch(shas[2:], ["item1", "missing-thumb"])
    assert all(second.path(s).read_bytes() == bytes([i + 2]) * 100
               for i, s in enumerate(shas[2:]))
    assert second.ensure_local("0" * 64) is None
    assert second.ensure_thumbnail("missing-thumb") is None
    with pytest.raises(StoreError, match="missing"):
        second.read("0" * 64)
    # A forget on one host removes the object for every host.
    second.delete(shas[0])
    second.delete_thumbnail("item1")
    assert not first.has(shas[0])
    third = _store(s3_url, s3_endpoint, tmp_path / "host3")
    assert third.ensure_local(shas[0]) is None and third.ensure_thumbnail("item1") is None


def test_put_does_not_upload_an_existing_object_again(s3_url: str, s3_endpoint: str,
                                                      tmp_path: Path) -> None:
    store = _store(s3_url, s3_endpoint, tmp_path / "c")
    sha = store.put(b"same bytes")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket, _ = parse_s3_url(s3_url)
    key = store.blob_key(sha)
    # Mark the object out of band: a second upload would replace it without the mark.
    client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                       Metadata={"mark": "1"}, MetadataDirective="REPLACE")
    other_host = _store(s3_url, s3_endpoint, tmp_path / "c2")
    assert other_host.put(b"same bytes") == sha
    assert client.head_object(Bucket=bucket, Key=key)["Metadata"] == {"mark": "1"}
    assert other_host.path(sha).read_bytes() == b"same bytes"  # written through to the cache


def test_cache_is_bounded_and_keeps_recent_files(s3_url: str, s3_endpoint: str,
                                                 tmp_path: Path) -> None:
    store = _store(s3_url, s3_endpoint, tmp_path / "c", cache_bytes=10_000)
    shas = []
    for i in range(12):
        shas.append(store.put(bytes([i]) * 3000))
        time.sleep(0.01)  # distinct modification times
        assert store.cache_size() <= 10_000
    assert store.path(shas[-1]).exists()
    assert not store.path(shas[0]).exists()
    # Evicted files come back on demand; the bucket still has everything.
    assert store.read(shas[0]) == b"\x00" * 3000
    assert all(store.has(s) for s in shas)
    assert not [p for p in (tmp_path / "c").rglob(".tmp-*")]


def test_a_malformed_url_is_a_config_error(aws_env: dict[str, str], tmp_path: Path) -> None:
    for url in ("bucket/prefix", "s3:///prefix", "https://bucket/prefix"):
        with pytest.raises(ConfigError, match="blobs.url"):
            S3BlobStore(url, tmp_path, check_bucket=False)


def test_missing_bucket_is_a_store_error(s3_endpoint: str, aws_env: dict[str, str],
                                         tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no-such-bucket") as info:
        S3BlobStore("s3://no-such-bucket/p", tmp_path, endpoint_url=s3_endpoint)
    assert not isinstance(info.value, StoreUnavailable)


def test_dead_endpoint_is_unavailable_quickly(aws_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="S3 s3://bucket/p"):
        S3BlobStore("s3://bucket/p", tmp_path, endpoint_url=f"http://127.0.0.1:{free_port()}",
                    connect_timeout_s=1)
    assert time.monotonic() - started < 10


def test_frozen_endpoint_times_out(frozen_endpoint: str, aws_env: dict[str, str],
                                   tmp_path: Path) -> None:
    store = S3BlobStore("s3://bucket/p", tmp_path, endpoint_url=frozen_endpoint,
                        read_timeout_s=0.5, max_attempts=2, check_bucket=False)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="timeout"):
        store.has(hashlib.sha256(b"x").hexdigest())
    assert time.monotonic() - started < 10
    store.close()


async def test_a_frozen_blob_store_at_start_is_named(frozen_endpoint: str, pg_url: str,
                                                     aws_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    # PostgreSQL answers, S3 does not: the error must send the operator to S3, not to the
    # catalog.
    from core.errors import StoreUnavailable
    from core.library.open import open_library
    from tests.cli.helpers import make_settings

    settings = make_settings(tmp_path / "data", tmp_path / "model",
                             PIXRAG_CATALOG__URL=pg_url, PIXRAG_BLOBS__URL="s3://b/p",
                             PIXRAG_BLOBS__ENDPOINT_URL=frozen_endpoint,
                             PIXRAG_STORE__TIMEOUT_S="2")
    with pytest.raises(StoreUnavailable, match=r"^the blob store \(S3 s3://b/p at http") as err:
        await open_library(settings, {"clip": "m", "text": "t"}, check_models=False)
    assert "did not answer within 2 s" in str(err.value)
