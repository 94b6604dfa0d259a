"""Library start-up noise: each library warning reaches stderr once, not twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import logging
from bot.cli import _quiet_libraries, _setup_logging
_setup_logging(0, None, "slack")
_quiet_libraries()
logging.getLogger("huggingface_hub.utils._http").warning("hub retry notice")
"""


def test_hub_warnings_print_once() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stderr.count("hub retry notice") == 1, out.stderr
