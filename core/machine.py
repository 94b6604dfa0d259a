"""What this host offers the process: CPU cores and memory, container limits included.

``os.cpu_count()`` and the physical memory describe the whole host; in a container limited by
its cgroup (Docker's ``--cpus`` and ``--memory``, Kubernetes' limits) they overstate what the
process may use, and a default sized from them would oversubscribe it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def folder_problem(folder: Path) -> str | None:
    """Why PixRAG cannot write in ``folder`` (made if missing) and what to do, in words for the
    operator, or None when nothing is in the way: a file where the folder (or a folder above
    it) should be, or a folder this user may not write to (permissions, a read-only mount)."""
    probe = folder
    while not (probe.exists() or probe.is_symlink()) and probe != probe.parent:
        probe = probe.parent
    where = f"the data folder {folder}"
    if probe != folder:
        where += f" cannot be made: {probe}"
    other = "choose another folder with --data-dir or PIXRAG_DATA_DIR"
    if not probe.is_dir():
        return f"{where} is a file, not a folder: {other}"
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{where} is on a read-only file system: {other}"
    uid = getattr(os, "getuid", lambda: None)()
    user = f"this user (uid {uid})" if uid is not None else "this user"
    return f"{where} is not writable by {user}: give this user write access, or {other}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return ""


def usable_cores(cgroup: Path = _CGROUP) -> int:
    """The cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _read(cgroup / "cpu.max").split()  # cgroup v2: "<quota> <period>" or "max ..."
    if len(quota) == 2 and quota[0] != "max":
        with contextlib.suppress(ValueError, ZeroDivisionError):
            cores = min(cores, max(1, math.ceil(int(quota[0]) / int(quota[1]))))
    else:  # cgroup v1
        q = _read(cgroup / "cpu" / "cpu.cfs_quota_us")
        p = _read(cgroup / "cpu" / "cpu.cfs_period_us")
        if q.lstrip("-").isdigit() and p.isdigit() and int(q) > 0 and int(p) > 0:
            cores = min(cores, max(1, math.ceil(int(q) / int(p))))
    return max(1, cores)


def usable_memory(cgroup: Path = _CGROUP) -> int:
    """Bytes of memory this process may use: the physical memory, lowered by a cgroup limit
    (0 when unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 0
    for limit_file in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        limit = _read(limit_file)
        if limit.isdigit() and int(limit) > 0:
            total = min(total, int(limit)) if total else int(limit)
            break
    return total


def gpu_possible() -> bool:
    """False when this machine certainly has no GPU torch could use: then "auto" means the
    CPU without importing torch (1.5 s), which a text search would not otherwise need."""
    if sys.platform != "linux":
        return True  # Apple's MPS, Windows: only torch can tell
    return any(Path(dev).exists() for dev in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg",
                                              "/dev/kfd"))
