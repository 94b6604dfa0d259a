#!/usr/bin/env bash
# GPU throughput in one go: `pixrag index` images/s end to end, and the CLIP image tower alone
# at batch 64 and 256 (fp16 on CUDA). Prints one JSON document. Offline: a random-weight CLIP
# with the real ViT-B/32 sizes is built locally, nothing is downloaded.
#
#   benchmarks/gpu.sh [N_IMAGES]          (default 512)
#
# Python: $PYTHON if set, else ./.venv, else a python3 that already has the stack, else a new
# ./.venv-gpu (with --system-site-packages, so a preinstalled CUDA torch is used) installed
# from $WHEELS (a folder of wheels, for machines without internet) or from PyPI. When none of
# that works (an offline machine with torch but without PixRAG's other packages), it measures
# the model forward alone, which needs only torch and transformers, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-512}"
export ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false

has_stack() { "$1" -c "import torch, transformers, chromadb, rapidocr, pydantic" 2>/dev/null; }
install() {
  if [ -n "${WHEELS:-}" ]; then
    "$1" -m pip install -q --no-index --find-links "$WHEELS" -e .
  else
    "$1" -m pip install -q --retries 1 --timeout 10 -e .
  fi
}

ARGS=(--images "$N")
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x .venv/bin/python ] && has_stack .venv/bin/python; then
  PY=.venv/bin/python
elif has_stack python3; then
  PY=python3
else
  [ -x .venv-gpu/bin/python ] || python3 -m venv --system-site-packages .venv-gpu
  if has_stack .venv-gpu/bin/python || install .venv-gpu/bin/python; then
    PY=.venv-gpu/bin/python
  elif python3 -c "import torch, transformers, safetensors, PIL" 2>/dev/null; then
    echo "PixRAG's packages could not be installed: measuring the CLIP forward alone" >&2
    PY=python3
    ARGS=(--images 0)
  else
    echo "no Python with torch and transformers here" >&2
    exit 1
  fi
fi

"$PY" - <<'PY' >&2
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
PY
exec "$PY" benchmarks/gpu_throughput.py "${ARGS[@]}"
