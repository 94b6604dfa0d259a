"""PixRAG core: ingestion, embeddings, storage, retrieval and answers. Never imports ``bot``."""

import os

# No telemetry, no surprise downloads: set before chromadb / onnxruntime / transformers import.
for _name, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("ANONYMIZED_TELEMETRY", "False"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)
