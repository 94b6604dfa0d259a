"""Locks between processes on the embedded data folder: one process at a time on the
vector store (:class:`FolderLock`), and a shared hold on the folder while its catalog is open
(:class:`FolderUse`).

Embedded Chroma is not safe for several processes: each one keeps the HNSW graph in its own
memory and writes it back to the folder as a whole, so two processes writing at once overwrite
each other's vectors (searches then fail with "Error finding id", or items are silently no
longer found), and a process that only reads does not see what another one writes. So a
process holds an exclusive lock on the folder for as long as its vector store is open, and a
second process gets a clear error naming the first instead of damaging the index. Several
processes need a Chroma server (``[store] url``).

The lock is an ``flock`` on a file in the folder: the kernel releases it when the process
ends, ``kill -9`` included, so a crash never leaves a stale lock. Within one process the
store is shared (chromadb keeps one client per folder), so the lock is counted, not taken
twice. Where ``flock`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from core.errors import StoreBusy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "pixrag-process.lock"

_held: dict[str, tuple[int, int]] = {}  # lock file -> (descriptor, users in this process)
_guard = threading.Lock()


def _holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it (pid and command line)."""
    with contextlib.suppress(OSError):
        return os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
    return ""


def _describe_self() -> str:
    argv = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    return f"pid {os.getpid()}: {argv}"[:400]


class FolderLock:
    """The lock on one folder, held until :meth:`release` (or the process ends)."""

    def __init__(self, folder: Path) -> None:
        self.file = str(Path(folder) / LOCK_NAME)
        self._released = False
        with _guard:
            held = _held.get(self.file)
            if held is not None:
                _held[self.file] = (held[0], held[1] + 1)
                return
            _held[self.file] = (self._take(folder), 1)

    def _take(self, folder: Path) -> int:
        if fcntl is None:
            return -1
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreBusy(
                f"the embedded vector store at {folder} is in use by another PixRAG process"
                f"{f' ({holder})' if holder else ''}. Embedded Chroma serves one process at a "
                "time (two would overwrite each other's vectors): run the command when that "
                "one has finished or stop it, or share a Chroma server between processes "
                "([store] url, see docs/SCALING.md).") from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # only a hint for the error above
            os.ftruncate(fd, 0)
            os.pwrite(fd, _describe_self().encode("utf-8", "replace") + b"\n", 0)
        return fd

    def release(self) -> None:
        with _guard:
            if self._released:
                return
            self._released = True
            fd, users = _held.pop(self.file, (-1, 0))
            if users > 1:
                _held[self.file] = (fd, users - 1)
            elif fd >= 0:
                os.close(fd)  # closing the descriptor releases the flock


#: Held shared by every process that has a data folder's catalog open.
USE_LOCK_NAME = "catalog.sqlite.lock"


class FolderUse:
    """A shared hold on a data folder while a process has its catalog open.

    A first run that fails cleans up the data folder it created (a mistyped data folder leaves
    nothing behind): that cleanup must not delete a folder another process started filling at
    the same moment (two commands started together on a new folder, one of them refused).
    The cleanup takes this lock exclusively and leaves the folder alone when it cannot.
    """

    def __init__(self, folder: Path) -> None:
        self._fd = -1
        if fcntl is None:
            return
        fd = os.open(Path(folder) / USE_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # exclusive holders only check, then remove
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def unused(folder: Path) -> Iterator[bool]:
    """Whether no process has ``folder``'s catalog open, held true while the body runs."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(Path(folder) / USE_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
