"""Text embedders: the bundled MiniLM for real, OpenAI against a local fake server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import Secrets, TextSettings
from core.errors import ConfigError, ModelError
from core.models.textembed import (
    BUNDLED_ID,
    MiniLMEmbedder,
    OpenAITextEmbedder,
    build_text_embedder,
    bundled_model_dir,
)
from core.protocols import TextEmbedder


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=4)


def test_bundled_model_is_known_without_loading() -> None:
    emb = MiniLMEmbedder()
    assert isinstance(emb, TextEmbedder)
    assert emb.model_id == BUNDLED_ID
    assert emb.dim == 384
    assert emb.embed_batch([]).shape == (0, 384)
    assert not emb.loaded  # none of the above needed the weights


def test_related_sentences_are_closer(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed_batch([
        "The invoice is due on March 7.",
        "Payment for the bill must be made by the seventh of March.",
        "A cat is sleeping on the sofa.",
    ])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    related, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert related > 0.5 > unrelated + 0.3


def test_order_is_kept_across_sorted_batches(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "a much longer sentence about quarterly revenue growth in europe",
             "", "medium length text here", "x " * 400, "another one", "z"]
    together = minilm.embed_batch(texts)  # batch_size 4: two batches, sorted by length
    alone = np.stack([minilm.embed_batch([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert np.isfinite(together).all()


def test_matches_sentence_transformers_reference(minilm: MiniLMEmbedder) -> None:
    # Same vectors sentence-transformers computes (mean pooling + normalise), checked against
    # a manual reimplementation with the tokenizer's own truncation at 256 tokens.
    from transformers import AutoModel, AutoTokenizer

    folder = bundled_model_dir()
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    import torch

    text = "word " * 600  # longer than 256 tokens: must be truncated, not fail
    enc = tok([text], truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    ref = hidden.mean(1)
    ref = (ref / ref.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(minilm.embed_batch([text]), ref, atol=1e-5)


def test_local_folder_reads_dim_from_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 96}))
    emb = MiniLMEmbedder(str(tmp_path))
    assert emb.model_id == str(tmp_path) and emb.dim == 96 and not emb.loaded


def test_broken_local_folder_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 96}))
    with pytest.raises(ModelError, match=str(tmp_path)):
        MiniLMEmbedder(str(tmp_path)).embed_batch(["hello"])


def test_a_missing_local_folder_is_named(tmp_path: Path) -> None:
    # It used to fail with the Hub's rules for repository ids ("Repo id must use ...").
    missing = tmp_path / "minilm-typo"
    with pytest.raises(ModelError) as err:
        MiniLMEmbedder(str(missing)).embed_batch(["hello"])
    assert str(err.value) == (
        f"text model {str(missing)!r} could not be loaded: folder {missing} does not exist; "
        "set [text] model (or PIXRAG_TEXT__MODEL) to a sentence-transformers folder, or to "
        "\"\" for the bundled all-MiniLM-L6-v2")


def test_concurrent_calls_are_safe(minilm: MiniLMEmbedder) -> None:
    texts = [f"sentence number {i}" for i in range(12)]
    expected = minilm.embed_batch(texts)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(minilm.embed_batch(texts)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


# --- OpenAI, against a fake embeddings server on 127.0.0.1 ---------------------------------


class _FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers["Authorization"],
                                      "body": body})
                if fake.status != 200:
                    payload = json.dumps({"error": {"message": "boom", "type": "server"}})
                    self.send_response(fake.status)
                else:
                    inputs = body["input"]
                    # Deterministic 8-dim vectors from the text, returned in REVERSED order
                    # (the API gives an index per row; clients must not rely on order).
                    data = [{"object": "embedding", "index": i,
                             "embedding": [float(len(t)), 1.0, *([0.5] * 6)]}
                            for i, t in enumerate(inputs)][::-1]
                    payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                          "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                    self.send_response(200)
                raw = payload.encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def fake_openai() -> Iterator[_FakeOpenAI]:
    fake = _FakeOpenAI()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


def test_openai_embedder_batches_orders_and_normalises(fake_openai: _FakeOpenAI) -> None:
    emb = OpenAITextEmbedder("sk-test", base_url=fake_openai.url, batch_size=2, max_retries=0)
    assert emb.dim == 1536 and emb.model_id == "openai:text-embedding-3-small"
    texts = ["a", "bbb", "", "cc", "dddd"]
    out = emb.embed_batch(texts)
    assert out.shape == (5, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    lengths = [1, 3, 1, 2, 4]  # "" is sent as " " (the API rejects empty input)
    expected = np.array([[n, 1.0, *([0.5] * 6)] for n in lengths], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert [r["body"]["input"] for r in fake_openai.requests] == [["a", "bbb"], [" ", "cc"],
                                                                  ["dddd"]]
    assert all(r["path"] == "/v1/embeddings" for r in fake_openai.requests)
    assert all(r["auth"] == "Bearer sk-test" for r in fake_openai.requests)
    assert fake_openai.requests[0]["body"]["model"] == "text-embedding-3-small"


def test_openai_unknown_model_dim_is_probed(fake_openai: _FakeOpenAI) -> None:
    emb = OpenAITextEmbedder("sk-test", "local-embedder", base_url=fake_openai.url, max_retries=0)
    assert emb.dim == 8
    assert len(fake_openai.requests) == 1


def test_openai_server_error_is_a_model_error(fake_openai: _FakeOpenAI) -> None:
    fake_openai.status = 500
    emb = OpenAITextEmbedder("sk-test", base_url=fake_openai.url, max_retries=0)
    with pytest.raises(ModelError, match="HTTP 500"):
        emb.embed_batch(["hello"])


def test_build_text_embedder_registry(fake_openai: _FakeOpenAI) -> None:
    local = build_text_embedder(TextSettings(), Secrets({}))
    assert isinstance(local, MiniLMEmbedder) and local.model_id == BUNDLED_ID

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_text_embedder(TextSettings(provider="openai"), Secrets({}))

    remote = build_text_embedder(
        TextSettings(provider="openai", model="text-embedding-3-large", base_url=fake_openai.url),
        Secrets({"OPENAI_API_KEY": "sk-real"}),
    )
    assert isinstance(remote, OpenAITextEmbedder) and remote.dim == 3072
    remote.embed_batch(["x"])
    assert fake_openai.requests[-1]["auth"] == "Bearer sk-real"
    assert fake_openai.requests[-1]["body"]["model"] == "text-embedding-3-large"
