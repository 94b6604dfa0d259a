"""Changing the CLIP model: a clear ModelMismatch naming `pixrag reindex`, then reindex."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from core.app import open_service
from core.config import Secrets
from core.errors import ModelMismatch
from core.types import Scope
from tests.cli.helpers import make_settings, write_images
from tests.clipmodel import build_clip
from tests.corpus import TXT


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CLIP: different projection size and weights."""
    return build_clip(tmp_path_factory.mktemp("clip24"), projection=24, seed=1)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, json.loads(out), err


async def test_service_refuses_a_different_model(tmp_path: Path, tiny_clip: Path,
                                                 other_clip: Path) -> None:
    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 2)
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        await svc.index_paths(images, "local")
    with pytest.raises(ModelMismatch) as exc:
        async with open_service(make_settings(data, other_clip), Secrets({})):
            pass
    msg = str(exc.value)
    assert "pixrag reindex" in msg and str(tiny_clip) in msg and str(other_clip) in msg
    assert "16-dim" in msg  # what the index holds (the new model is not even loaded)
    # The old model still opens the index untouched.
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        assert (await svc.stats("local")).items == 2


def test_cli_mismatch_then_reindex(tmp_path: Path, tiny_clip: Path, other_clip: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    images = write_images(docs, 3)
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "none")
    monkeypatch.setenv("PIXRAG_INDEX__OCR", "false")
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tiny_clip))
    rc, doc, _ = _run(capsys, "index", str(docs), "--space", "s1", "--json")
    assert rc == 0 and len(doc["indexed"]) == 4
    rc, doc, _ = _run(capsys, "index", str(images[0]), "--space", "s2", "--json")
    assert rc == 0 and len(doc["indexed"]) == 1

    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(other_clip))
    for argv in (["search", "noise", "--space", "s1", "--json"],
                 ["index", str(docs), "--json"], ["stats", "--json"]):  # stats: no model loaded
        rc, doc, err = _run(capsys, *argv)
        assert rc == 1, argv
        assert "`pixrag reindex`" in doc["error"] and "Traceback" not in err
        # stderr: perhaps "loading models..." (index), then the one error line.
        assert err.splitlines()[-1].startswith("pixrag: error:")

    rc, doc, _ = _run(capsys, "reindex", "--json")
    assert rc == 0 and not doc["failed"]
    assert len(doc["indexed"]) == 5  # every item of every space, rebuilt from its blobs
    rc, doc, _ = _run(capsys, "stats", "--space", "s1", "--json")
    assert doc["model"] == str(other_clip)
    assert (doc["items"], doc["spaces"]) == (4, {"s1": 4, "s2": 1})
    rc, doc, _ = _run(capsys, "similar", str(images[1]), "--space", "s1", "--json")
    assert rc == 0 and doc["results"][0]["source"] == str(images[1].resolve())
    rc, doc, _ = _run(capsys, "search", "office", "Berlin", "--space", "s1", "--json")
    assert rc == 0 and doc["results"][0]["source"] == str((docs / "notes.txt").resolve())
    rc, doc, _ = _run(capsys, "similar", str(images[0]), "--space", "s2", "--json")
    assert [h["source"] for h in doc["results"]] == [str(images[0].resolve())]
    # A re-run after reindex finds everything already indexed.
    rc, doc, _ = _run(capsys, "index", str(docs), "--space", "s1", "--json")
    assert doc["indexed"] == [] and len(doc["skipped"]) == 4


async def test_reindexed_vectors_have_the_new_dimension(tmp_path: Path, tiny_clip: Path,
                                                        other_clip: Path) -> None:
    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 2)
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        rep = await svc.index_paths(images, "local")
    async with open_service(make_settings(data, other_clip), Secrets({}),
                            check_models=False) as svc:
        again = await svc.reindex()
        assert sorted(i.id for i in again.indexed) == sorted(i.id for i in rep.indexed)
    async with open_service(make_settings(data, other_clip), Secrets({})) as svc:
        store = await svc.library.vectors()
        vecs = store.get_vectors("clip", space="local", items=[rep.indexed[0].id])
        assert vecs[rep.indexed[0].id].shape == (24,)
        assert store.count("clip") == 2
        hits = await svc.similar(images[0].read_bytes(), Scope("local"))
        assert hits[0].id == rep.indexed[0].id


def test_hub_model_offline_says_how_to_use_a_local_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", "pixrag-tests/no-such-clip")
    rc, doc, err = _run(capsys, "search", "cats", "--json")
    assert rc == 1 and "Traceback" not in err
    msg = doc["error"]
    assert "pixrag-tests/no-such-clip" in msg
    assert "hf download pixrag-tests/no-such-clip --local-dir" in msg
    assert "PIXRAG_EMBEDDING__MODEL=" in msg and "[embedding] model" in msg


async def test_a_model_path_that_is_not_there_is_not_a_model_change(
        tmp_path: Path, tiny_clip: Path) -> None:
    # A typo in a model folder used to be reported as a model change, with `pixrag reindex`
    # (which cannot load that model either) as the fix.
    from core.errors import ModelError

    data = tmp_path / "data"
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        await svc.index_paths(write_images(tmp_path / "imgs", 1), "local")
    typo = tmp_path / "clip-typo"
    with pytest.raises(ModelError) as exc:
        async with open_service(make_settings(data, typo), Secrets({})):
            pass
    msg = str(exc.value)
    assert not isinstance(exc.value, ModelMismatch) and "reindex" not in msg
    assert msg == (f"the configured clip model {str(typo)!r} is not a folder on this machine; "
                   f"the index was built with {str(tiny_clip)!r}. Correct the path in the "
                   "config (or its PIXRAG_ variable).")


def test_index_with_a_model_that_cannot_load_stops_with_one_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Every file would fail the same way: one error and exit 1, not the same message per
    # file and exit 0 because some text file got in.
    folder = tmp_path / "docs"
    write_images(folder, 4)
    (folder / "notes.md").write_text("# Notes\n\nThe office moved to Berlin.\n")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tmp_path / "no-such-clip"))
    rc, doc, err = _run(capsys, "index", str(folder), "--json")
    assert rc == 1 and "Traceback" not in err
    assert set(doc) == {"error"} and "cannot load the CLIP model" in doc["error"]
    assert err.count("cannot load the CLIP model") == 1
