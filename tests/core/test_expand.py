"""Query expansion by the answer model: used when configured, cached, bounded in time."""

from __future__ import annotations

import time
from pathlib import Path

from core.app import open_service
from core.config import Secrets, load_settings
from core.types import Scope
from tests.answer.fakellm import FakeLLM, Reply


def _settings(tmp_path: Path, tiny_clip: Path, url: str, **extra: str):  # type: ignore[no-untyped-def]
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip),
           "PIXRAG_ANSWER__PROVIDER": "openai-compatible", "PIXRAG_ANSWER__BASE_URL": url,
           "PIXRAG_ANSWER__MODEL": "small", "PIXRAG_RETRIEVAL__EXPAND_QUERIES": "true",
           "PIXRAG_INDEX__OCR": "false", "PIXRAG_RETRIEVAL__MIN_CLIP": "1.0", **extra}
    return load_settings(None, environ=env, data_dir=tmp_path / "data")


def _docs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "runbook.txt").write_text(
        "Runbook: restart kestrel-sync with systemctl restart kestrel-sync.service", "utf-8")
    (folder / "sales.txt").write_text("Quarterly sales figures for the Nordic region", "utf-8")
    (folder / "lunch.txt").write_text("Team lunch on Friday at the Italian place", "utf-8")
    return folder


async def test_expanded_words_reach_keyword_and_dense_search(tmp_path: Path,
                                                             tiny_clip: Path) -> None:
    folder = _docs(tmp_path / "docs")
    async with FakeLLM() as llm:
        llm.default = Reply(deltas=["kestrel-sync restart systemctl"])
        async with open_service(_settings(tmp_path, tiny_clip, llm.openai_url),
                                Secrets({})) as svc:
            await svc.index_paths([folder], "local")
            hits = await svc.search("how do I bring the daemon back up?", Scope("local"))
            assert hits[0].name == "runbook.txt" and "keyword" in hits[0].signals
            (req,) = llm.requests
            assert req.body.get("stream", False) is False
            assert "how do I bring the daemon back up?" in str(req.body["messages"])
            # Cached: the same question (any spacing or case) asks the model once.
            await svc.search("How do I  bring the daemon back up?", Scope("local"))
            assert len(llm.requests) == 1
            # Model down: search goes on with the question alone.
            llm.default = Reply(status=500)
            hits = await svc.search("where do we eat on friday", Scope("local"))
            assert hits[0].name == "lunch.txt"
            assert len(llm.requests) == 2


async def test_a_hanging_model_costs_at_most_the_expansion_timeout(tmp_path: Path,
                                                                   tiny_clip: Path) -> None:
    folder = _docs(tmp_path / "docs")
    async with FakeLLM() as llm:
        llm.default = Reply(hang=True)
        settings = _settings(tmp_path, tiny_clip, llm.openai_url,
                             PIXRAG_RETRIEVAL__EXPAND_TIMEOUT_S="0.5")
        async with open_service(settings, Secrets({})) as svc:
            await svc.index_paths([folder], "local")
            started = time.monotonic()
            hits = await svc.search("restart kestrel-sync", Scope("local"))
            assert time.monotonic() - started < 3.0
            assert hits[0].name == "runbook.txt"


async def test_off_by_default_and_without_a_model(tmp_path: Path, tiny_clip: Path) -> None:
    async with FakeLLM() as llm:
        settings = _settings(tmp_path, tiny_clip, llm.openai_url,
                             PIXRAG_RETRIEVAL__EXPAND_QUERIES="false")
        async with open_service(settings, Secrets({})) as svc:
            assert svc.c.expander is None
            await svc.search("anything", Scope("local"))
        assert llm.requests == []
    none = load_settings(None, environ={"PIXRAG_EMBEDDING__MODEL": str(tiny_clip),
                                        "PIXRAG_ANSWER__PROVIDER": "none",
                                        "PIXRAG_RETRIEVAL__EXPAND_QUERIES": "true"},
                         data_dir=tmp_path / "none")
    async with open_service(none, Secrets({})) as svc:
        assert svc.c.expander is None
