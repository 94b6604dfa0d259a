"""Library start-up noise: a Hugging Face hub message reaches stderr once, not twice."""

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
from huggingface_hub.utils import logging as hub_logging  # adds the hub's own handler
hub_logging.get_logger("huggingface_hub.utils._http").error("hub retry notice")
"""


def test_hub_warnings_print_once() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stderr.count("hub retry notice") == 1, out.stderr
