"""Original bytes and JPEG thumbnails on disk, content-addressed.

Layout under ``root``::

    ab/cd/abcd...(64 hex)      original bytes, named by their sha256
    thumbs/<key>.jpg           one thumbnail per item id

Writes go to a temporary file in the destination folder and are renamed into place with
``os.replace`` (atomic on POSIX and Windows), so a reader or a crash never sees half a file,
and two processes writing the same blob at once both succeed. Blobs are shared by items with
the same bytes: reference counting is the caller's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{64}")
# Item ids become file names: a strict alphabet keeps "../" and odd names out of the path.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


def blob_parts(sha: str) -> tuple[str, str, str]:
    """``(ab, cd, abcd...)``: where an original lives under a root (a folder or a key prefix)."""
    if not _SHA.fullmatch(sha):
        raise ValueError(f"not a sha256 hex digest: {sha!r}")
    return sha[:2], sha[2:4], sha


def thumbnail_name(key: str) -> str:
    """The file name of an item's thumbnail. Item ids become file names: a strict alphabet keeps
    "../" and odd names out of the path; ":" is not allowed in Windows file names and "~" is
    not a key character, so the mapping stays one-to-one."""
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not a valid thumbnail key: {key!r}")
    return key.replace(":", "~") + ".jpg"


def thumbnail_key(name: str) -> str:
    """The key a thumbnail file name stands for (the inverse of :func:`thumbnail_name`)."""
    return name.removesuffix(".jpg").replace("~", ":")


def is_sha(name: str) -> bool:
    return bool(_SHA.fullmatch(name))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class BlobStore:
    """Content-addressed original bytes + JPEG thumbnails under a root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._thumbs = self.root / "thumbs"

    def path(self, sha: str) -> Path:
        return self.root.joinpath(*blob_parts(sha))

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256 hex digest."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha)
        if not path.exists():
            _atomic_write(path, data)
            log.debug("stored blob %s (%d bytes)", sha, len(data))
        return sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def delete(self, sha: str) -> None:
        """Remove a blob; a missing one is fine (another process may have won the race)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha).unlink()

    def thumbnail_path(self, key: str) -> Path:
        return self._thumbs / thumbnail_name(key)

    def put_thumbnail(self, key: str, jpeg: bytes) -> Path:
        path = self.thumbnail_path(key)
        _atomic_write(path, jpeg)
        return path

    def delete_thumbnail(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.thumbnail_path(key).unlink()

    def has_thumbnail(self, key: str) -> bool:
        return self.thumbnail_path(key).is_file()

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def read_thumbnail(self, key: str) -> bytes | None:
        try:
            return self.thumbnail_path(key).read_bytes()
        except FileNotFoundError:
            return None

    def thumbnail_keys(self) -> set[str]:
        """The key of every stored thumbnail (for consistency checks; lists the folder)."""
        if not self._thumbs.is_dir():
            return set()
        keys = {thumbnail_key(p.name) for p in self._thumbs.iterdir() if p.suffix == ".jpg"}
        return {k for k in keys if _KEY.fullmatch(k) and ".." not in k}  # not .tmp- files

    def prefetch(self, shas: Iterable[str] = (), keys: Iterable[str] = ()) -> None:
        """Nothing to fetch: the files are here (a remote store downloads into its cache)."""

    def shas(self) -> set[str]:
        """Every stored original (for consistency checks; walks the folder)."""
        out: set[str] = set()
        if not self.root.is_dir():
            return out
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in first.iterdir():
                if second.is_dir():
                    out |= {p.name for p in second.iterdir() if is_sha(p.name)}
        return out
