"""A real Chroma server (`chroma run`) for tests: started on a free port, stopped, frozen
(SIGSTOP) or killed by the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _chroma_binary() -> str | None:
    here = Path(sys.executable).parent / "chroma"
    return str(here) if here.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """A real `chroma run` process on a free port, stopped (or killed) by the test."""

    def __init__(self, folder: Path) -> None:
        binary = _chroma_binary()
        if binary is None:
            pytest.skip("the `chroma` command (chromadb's server) is not installed")
        port = _free_port()
        self.folder = folder
        self._log = (folder / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port",
             str(port)], stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"chroma server exited ({self.proc.returncode}): "
                            f"{(folder / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("chroma server did not answer within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
