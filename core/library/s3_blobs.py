"""Originals and thumbnails in an S3-compatible bucket (S3, MinIO, R2), with a local cache.

The server-mode twin of :class:`core.library.blobs.BlobStore`: same methods, arguments and return
values. Objects, under ``s3://bucket/prefix``::

    <prefix>/blobs/ab/cd/abcd...(64 hex)   original bytes, named by their sha256
    <prefix>/thumbs/<key>.jpg              one thumbnail per item id

Paths are local. ``path()`` and ``thumbnail_path()`` only *name* a file in the local cache
(no I/O, like the local store's, which does not promise the file exists either): results are
built for many items and most of them are never opened, so fetching there would cost one
request per hit on every search. The bytes come on demand:

- :meth:`ensure_local` / :meth:`ensure_thumbnail` download one object into the cache if it is
  not there (blocking: call from an executor) and return its path, or None when the bucket
  does not have it; :meth:`prefetch` does many in parallel (thumbnails of the hits a reply
  will show, say);
- :meth:`read` returns an original's bytes (cache first);
- writes (:meth:`put`, :meth:`put_thumbnail`) go to the bucket and also fill the cache, so
  the host that indexes an item can show it without a download.

The cache is bounded (``cache_bytes``, default 512 MB): when a write or download takes it over
the limit, the least recently used files (by modification time, refreshed on every hit) are
removed until it is under 80 % of it. Files are written to a temporary name and renamed, so
several processes may share one cache folder. Cached bytes are never stale: originals are
named by their content, and a thumbnail is only ever rewritten with the same item's picture.
A file deleted from the bucket by another host may linger in this host's cache until evicted;
it is unreachable, because the catalog row that pointed at it was deleted first.

``put`` is idempotent (HEAD first: an existing object is not uploaded again). Every request
has a connect and read timeout and a bounded number of retries (botocore's ``standard``
mode); failures come out as StoreUnavailable (network, timeouts, 5xx, throttling) or
StoreError (missing bucket, access denied, bad credentials). Credentials and region come from
the usual AWS chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
profiles, instance roles).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from core.errors import ConfigError, StoreError, StoreUnavailable
from core.library.blobs import blob_parts, is_sha, thumbnail_name

log = logging.getLogger(__name__)

_UNAVAILABLE_CODES = {"500", "502", "503", "504", "SlowDown", "ServiceUnavailable",
                      "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "Throttling"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (no slashes at the ends)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class S3BlobStore:
    """Content-addressed originals + JPEG thumbnails in a bucket, cached under ``cache_dir``."""

    def __init__(self, url: str, cache_dir: Path, *, endpoint_url: str | None = None,
                 region: str | None = None, cache_bytes: int = 512 * 1024 * 1024,
                 connect_timeout_s: float = 5.0, read_timeout_s: float = 30.0,
                 max_attempts: int = 3, check_bucket: bool = True) -> None:
        self.url = url.rstrip("/")
        try:
            self.bucket, self.prefix = parse_s3_url(url)
        except ValueError as exc:
            raise ConfigError("blobs.url", f"{exc} (expected s3://bucket/prefix)") from exc
        self.endpoint_url = endpoint_url or None
        self.root = Path(cache_dir)  # the local cache: every returned path is under it
        self._thumbs = self.root / "thumbs"
        self.cache_bytes = cache_bytes
        self._cache_lock = threading.Lock()
        self._cached: int | None = None  # bytes in the cache, counted on first use
        config = Config(
            connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=16,
            # MinIO and most S3-compatible servers want path-style URLs.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        try:
            session = boto3.session.Session()
            self._s3: Any = session.client(
                "s3", endpoint_url=self.endpoint_url,
                region_name=region or os.environ.get("AWS_DEFAULT_REGION") or None,
                config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise StoreError(f"S3 {self.url}: cannot create the client: {exc}") from exc
        if check_bucket:
            self._call("open the bucket", lambda: self._s3.head_bucket(Bucket=self.bucket))

    # errors ---------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"S3 {self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _convert(self, exc: Exception, what: str) -> StoreError:
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            message = f"{self._where()}: {what} failed: {code or status} {err.get('Message', '')}"
            if code in _UNAVAILABLE_CODES or status.startswith("5"):
                return StoreUnavailable(message.strip())
            return StoreError(message.strip())
        if isinstance(exc, botocore.exceptions.EndpointConnectionError
                      | botocore.exceptions.ConnectTimeoutError
                      | botocore.exceptions.ReadTimeoutError
                      | botocore.exceptions.ConnectionClosedError):
            return StoreUnavailable(f"{self._where()}: {what} failed: {exc}")
        return StoreError(f"{self._where()}: {what} failed: {exc}")

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._convert(exc, what) from exc

    @staticmethod
    def _missing(exc: botocore.exceptions.ClientError) -> bool:
        return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_CODES

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if self._missing(exc):
                return False
            raise self._convert(exc, f"look up {key}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._convert(exc, f"look up {key}") from exc
        return True

    def _download(self, key: str) -> bytes | None:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
        except botocore.exceptions.ClientError as exc:
            if self._missing(exc):
                return None
            raise self._convert(exc, f"download {key}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._convert(exc, f"download {key}") from exc

    # keys -----------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def blob_key(self, sha: str) -> str:
        """The object key of an original."""
        return self._key("blobs", *blob_parts(sha))

    def thumbnail_key(self, key: str) -> str:
        """The object key of an item's thumbnail."""
        thumbnail_name(key)  # validates
        return self._key("thumbs", key + ".jpg")

    # the BlobStore interface ----------------------------------------------------------------
    def path(self, sha: str) -> Path:
        """Where the original lives in the local cache (it may not be there yet: see
        :meth:`ensure_local`)."""
        return self.root.joinpath(*blob_parts(sha))

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256 hex digest."""
        sha = hashlib.sha256(data).hexdigest()
        key = self.blob_key(sha)
        if not self._exists(key):
            self._call(f"upload {key}",
                       lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=data))
            log.debug("stored blob %s (%d bytes) in %s", sha, len(data), self.url)
        self._cache_put(self.path(sha), data)
        return sha

    def has(self, sha: str) -> bool:
        return self._exists(self.blob_key(sha))

    def delete(self, sha: str) -> None:
        """Remove a blob; a missing one is fine (another host may have won the race)."""
        key = self.blob_key(sha)
        self._call(f"delete {key}", lambda: self._s3.delete_object(Bucket=self.bucket, Key=key))
        self._cache_drop(self.path(sha))

    def thumbnail_path(self, key: str) -> Path:
        """Where the thumbnail lives in the local cache (see :meth:`ensure_thumbnail`)."""
        return self._thumbs / thumbnail_name(key)

    def put_thumbnail(self, key: str, jpeg: bytes) -> Path:
        object_key = self.thumbnail_key(key)
        self._call(f"upload {object_key}", lambda: self._s3.put_object(
            Bucket=self.bucket, Key=object_key, Body=jpeg, ContentType="image/jpeg"))
        path = self.thumbnail_path(key)
        self._cache_put(path, jpeg, replace=True)
        return path

    def delete_thumbnail(self, key: str) -> None:
        object_key = self.thumbnail_key(key)
        self._call(f"delete {object_key}",
                   lambda: self._s3.delete_object(Bucket=self.bucket, Key=object_key))
        self._cache_drop(self.thumbnail_path(key))

    # on-demand download ---------------------------------------------------------------------
    def has_thumbnail(self, key: str) -> bool:
        return self._exists(self.thumbnail_key(key))

    def read_thumbnail(self, key: str) -> bytes | None:
        path = self.ensure_thumbnail(key)
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:  # evicted in between
            return self._download(self.thumbnail_key(key))

    def shas(self) -> set[str]:
        """Every stored original (lists the bucket under the prefix)."""
        names = (name.rsplit("/", 1)[-1] for name in self._names("blobs", "list originals"))
        return {name for name in names if is_sha(name)}  # under folders of their first bytes

    def thumbnail_keys(self) -> set[str]:
        """The key of every stored thumbnail (lists the bucket under the prefix)."""
        return {name.removesuffix(".jpg") for name in self._names("thumbs", "list thumbnails")
                if name.endswith(".jpg") and "/" not in name}

    def _names(self, folder: str, what: str) -> list[str]:
        """The object names under ``folder`` of the prefix (relative to it), every page."""
        start = self._key(folder) + "/"
        out: list[str] = []

        def listing() -> None:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start)
            for page in pages:
                out.extend(str(obj["Key"])[len(start):] for obj in page.get("Contents", []))

        self._call(what, listing)
        return out

    def ensure_local(self, sha: str) -> Path | None:
        """The original in the local cache, downloaded if needed; None if the bucket has no
        such blob."""
        return self._ensure(self.path(sha), self.blob_key(sha))

    def ensure_thumbnail(self, key: str) -> Path | None:
        """The thumbnail in the local cache, downloaded if needed; None if there is none."""
        return self._ensure(self.thumbnail_path(key), self.thumbnail_key(key))

    def read(self, sha: str) -> bytes:
        """An original's bytes (from the cache when it is there)."""
        path = self.ensure_local(sha)
        if path is None:
            raise StoreError(f"{self._where()}: blob {sha} is missing")
        try:
            return path.read_bytes()
        except FileNotFoundError:  # evicted by another process in between
            data = self._download(self.blob_key(sha))
            if data is None:
                raise StoreError(f"{self._where()}: blob {sha} is missing") from None
            return data

    def prefetch(self, shas: Iterable[str] = (), keys: Iterable[str] = (),
                 workers: int = 8) -> None:
        """Download many originals and thumbnails into the cache, in parallel (missing ones
        are skipped; the first failure is raised after the others finished)."""
        jobs = [(self.path(s), self.blob_key(s)) for s in dict.fromkeys(shas)]
        jobs += [(self.thumbnail_path(k), self.thumbnail_key(k)) for k in dict.fromkeys(keys)]
        jobs = [(p, k) for p, k in jobs if not self._touch(p)]
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            futures = [pool.submit(self._ensure, p, k) for p, k in jobs]
        for future in futures:
            future.result()

    def _ensure(self, path: Path, key: str) -> Path | None:
        if self._touch(path):
            return path
        data = self._download(key)
        if data is None:
            return None
        self._cache_put(path, data)
        return path

    # the cache ------------------------------------------------------------------------------
    def _touch(self, path: Path) -> bool:
        """True if ``path`` is cached; marks it recently used."""
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:
            return path.is_file()
        return True

    def _cache_put(self, path: Path, data: bytes, *, replace: bool = False) -> None:
        try:
            if not replace and path.is_file():  # content-addressed: same name, same bytes
                os.utime(path)
                return
            _atomic_write(path, data)
        except OSError as exc:
            # The cache is an optimisation: a full or read-only disk must not fail a write
            # that already reached the bucket.
            log.warning("cannot cache %s: %s", path, exc)
            return
        with self._cache_lock:
            self._cached = (self._cached_bytes() if self._cached is None
                            else self._cached + len(data))
            if self._cached > self.cache_bytes:
                self._evict()

    def _cache_drop(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot remove %s from the cache: %s", path, exc)
            return
        with self._cache_lock:
            if self._cached is not None:
                self._cached = max(0, self._cached - size)

    def _cache_files(self) -> list[tuple[float, int, Path]]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                p = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    st = p.stat()
                    out.append((st.st_mtime, st.st_size, p))
        return out

    def _cached_bytes(self) -> int:
        return sum(size for _, size, _ in self._cache_files())

    def _evict(self) -> None:
        """Remove least recently used files until the cache is under 80 % of its bound
        (called with the cache lock held)."""
        files = sorted(self._cache_files())
        total = sum(size for _, size, _ in files)
        target = int(self.cache_bytes * 0.8)
        removed = 0
        for _, size, p in files:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
            total -= size
        self._cached = total
        log.debug("blob cache %s: evicted %d files, %d bytes left", self.root, removed, total)

    def cache_size(self) -> int:
        """Bytes in the local cache now."""
        with self._cache_lock:
            self._cached = self._cached_bytes()
            return self._cached

    def close(self) -> None:
        """Close the client's connections (the cache stays on disk for the next start)."""
        self._s3.close()
