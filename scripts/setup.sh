#!/usr/bin/env bash
# Create .venv and install PixRAG with its test tools. Safe to re-run (fast when done).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: an unpinned "torch" dependency makes pip pick a multi-GB CUDA build
# on machines that have a CPU build at hand. Users with a GPU may install any torch >= 2.4.
# On Linux PyPI's torch IS the CUDA build; for the CPU build (~200 MB) set
# PIXRAG_TORCH_INDEX=https://download.pytorch.org/whl/cpu (the index the Dockerfile uses).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q ${PIXRAG_TORCH_INDEX:+--index-url "$PIXRAG_TORCH_INDEX"} \
        "torch==${PIXRAG_TORCH_VERSION:-2.13.0}"
fi
.venv/bin/pip install -q -e ".[dev]"
