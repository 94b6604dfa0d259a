"""The ``pixrag --json`` contract (ARCHITECTURE.md), through the real entry point.

A few commands run as real subprocesses (``python -m bot.cli`` and the ``pixrag`` script), the
rest call ``bot.cli.main(argv)`` in-process: the same function the console script runs, minus
the ~10 s of interpreter + torch start-up per call. Everything is real: the tiny random CLIP
loaded from disk, embedded Chroma, SQLite, image decoding.

The tests of this module share one indexed data directory and run in file order: the
subprocesses first (an in-process Chroma client caches its view of a folder, so nothing else
writes to it after the first in-process call), ``forget`` last.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from core.ingest import item_id
from tests.cli.helpers import (
    HIT_KEYS,
    RELAXED,
    cli_env,
    json_out,
    noise_bytes,
    pixrag_cmd,
    run_cli,
    write_images,
)
from tests.corpus import TXT, html_bytes, pdf_bytes, truncated_jpeg_bytes

PDF = pdf_bytes(["Invoice INV-20931\nTotal 420 EUR", "Page two: payment due March 7"])


@dataclass
class Library:
    root: Path
    docs: Path
    data: Path
    model: Path
    report: dict[str, Any]  # output of the subprocess `index --json`
    missing_model: subprocess.CompletedProcess[str]  # `search` with no model folder

    def path(self, name: str) -> str:
        return str((self.docs / name).resolve())

    def ids(self, name: str) -> list[str]:
        return [i["id"] for i in self.report["indexed"] if i["source"] == self.path(name)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Library:
    root = tmp_path_factory.mktemp("cli")
    docs = root / "docs"
    write_images(docs, 5)
    write_images(docs / "sub", 1, prefix="deep", seed=50)
    (docs / ".hidden.png").write_bytes(noise_bytes(99))
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    (docs / "report.pdf").write_bytes(PDF)
    (docs / "empty.jpg").write_bytes(b"")
    (docs / "login.jpg").write_bytes(html_bytes())
    (docs / "truncated.jpg").write_bytes(truncated_jpeg_bytes())
    (root / "other").mkdir()
    (root / "other" / "b0.png").write_bytes(noise_bytes(200))
    data = root / "data"
    # Started alongside the index run so the two interpreter start-ups overlap.
    missing = subprocess.Popen([*pixrag_cmd(), "search", "cats"], cwd=root, text=True,
                               env=cli_env(root / "data-missing", root / "no-such-model"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Global option BEFORE the command; cwd elsewhere so no stray ./config.toml is read.
        proc = run_cli(["--space", "proj", "index", str(docs), "--json"],
                       cli_env(data, tiny_clip), cwd=root)
        out, err = missing.communicate(timeout=180)
    finally:
        if missing.poll() is None:
            missing.kill()
            missing.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    done = subprocess.CompletedProcess(missing.args, missing.returncode, out, err)
    return Library(root, docs, data, tiny_clip, json_out(proc), done)


@pytest.fixture
def env(lib: Library, monkeypatch: pytest.MonkeyPatch) -> Library:
    """Environment for in-process ``main()`` calls (the autouse fixture cleared PIXRAG_*)."""
    for k, v in cli_env(lib.data, lib.model).items():
        if k.startswith(("PIXRAG_", "HF_")):
            monkeypatch.setenv(k, v)
    return lib


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run ``main(argv)``; return (exit code, parsed JSON of stdout, stderr)."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON document on stdout, got {out!r} ({err!r})"
    return rc, json.loads(lines[0]), err


def _check_hits(results: list[dict[str, Any]]) -> None:
    for h in results:
        assert set(h) == HIT_KEYS
        assert isinstance(h["score"], float)
        assert isinstance(h["signals"], dict) and h["signals"]
        assert h["kind"] in ("image", "page", "chunk")
        if h["kind"] == "chunk":
            assert h["thumbnail"] is None
        else:
            assert Path(h["thumbnail"]).is_file()
        assert (h["page"] is not None) == (h["kind"] == "page")
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)


# ------------------------------------------------------------------ subprocesses first


def test_index_json_shape_failures_and_exit_0(lib: Library) -> None:
    r = lib.report
    assert set(r) == {"indexed", "skipped", "failed"}
    for i in r["indexed"]:
        assert set(i) == {"id", "source", "kind"}
    for s in r["skipped"]:
        assert set(s) == {"source", "reason"}
    for f in r["failed"]:
        assert set(f) == {"source", "error"}
    failed = {Path(f["source"]).name: f["error"] for f in r["failed"]}
    assert set(failed) == {"empty.jpg", "login.jpg", "truncated.jpg"}
    assert "empty" in failed["empty.jpg"]
    assert "HTML" in failed["login.jpg"]
    assert "truncated" in failed["truncated.jpg"]
    kinds = {(Path(i["source"]).name, i["kind"]) for i in r["indexed"]}
    assert kinds == {(f"img{n}.png", "image") for n in range(5)} | {
        ("deep0.png", "image"), ("notes.txt", "chunk"), ("report.pdf", "page")}
    assert len(lib.ids("report.pdf")) == 2  # one item per page
    assert all(Path(i["source"]).is_absolute() for i in r["indexed"])
    assert not any(".hidden" in i["source"] for i in r["indexed"] + r["skipped"])
    assert len({i["id"] for i in r["indexed"]}) == len(r["indexed"]) == 9


def test_search_script_env_override_and_options_after_command(lib: Library) -> None:
    # PIXRAG_RETRIEVAL__K=2 limits the results; global options AFTER the command.
    env = cli_env(lib.data, lib.model, PIXRAG_RETRIEVAL__K="2", **RELAXED)
    proc = run_cli(["search", "a", "noisy", "picture", "--space", "proj", "--json"], env,
                   cwd=lib.root, script=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json_out(proc)
    assert set(doc) == {"results"}
    assert len(doc["results"]) == 2
    _check_hits(doc["results"])
    indexed = {i["id"] for i in lib.report["indexed"]}
    assert {h["id"] for h in doc["results"]} <= indexed


def test_config_errors_name_the_key_without_traceback(lib: Library) -> None:
    env = cli_env(lib.data, lib.model, PIXRAG_RETRIEVAL__K="zero")
    proc = run_cli(["stats", "--json"], env, cwd=lib.root)
    assert proc.returncode == 1
    assert "PIXRAG_RETRIEVAL__K" in json_out(proc)["error"]
    assert proc.stderr.startswith("pixrag: error: config retrieval.k")
    assert "Traceback" not in proc.stderr


def test_missing_model_folder_is_one_clear_message(lib: Library) -> None:
    missing = lib.root / "no-such-model"
    proc = lib.missing_model
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("pixrag: error:")]
    assert len(lines) == 1, proc.stderr
    assert str(missing) in lines[0]
    assert "does not exist" in lines[0]
    assert f"--local-dir {missing}`" in lines[0]  # the hint fills that folder
    assert "PIXRAG_EMBEDDING__MODEL" in lines[0] and "[embedding] model" in lines[0]


# ------------------------------------------------------------------ in-process main()


def test_similar_exact_image_and_k(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    img0 = env.path("img0.png")
    rc, doc, _ = cli(capsys, "similar", img0, "--space", "proj", "--json")
    assert rc == 0 and set(doc) == {"results"}
    _check_hits(doc["results"])
    assert doc["results"][0]["source"] == img0
    assert doc["results"][0]["id"] == env.ids("img0.png")[0]
    assert "near_duplicate" in doc["results"][0]["signals"]
    assert all("near_duplicate" not in h["signals"] for h in doc["results"][1:])

    with pytest.MonkeyPatch.context() as mp:
        for k, v in RELAXED.items():
            mp.setenv(k, v)
        rc, doc, _ = cli(capsys, "--space", "proj", "similar", img0, "-k", "3", "--json")
    assert rc == 0 and len(doc["results"]) == 3
    assert doc["results"][0]["source"] == img0
    _check_hits(doc["results"])


def test_search_pages_and_chunks(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, _ = cli(capsys, "search", "INV-20931", "--space", "proj", "--json")
    assert rc == 0
    top = doc["results"][0]
    assert (top["source"], top["kind"], top["page"]) == (env.path("report.pdf"), "page", 1)
    assert "keyword" in top["signals"]
    rc, doc, _ = cli(capsys, "search", "payment", "due", "March", "--space", "proj", "--json")
    assert (doc["results"][0]["source"], doc["results"][0]["page"]) == (
        env.path("report.pdf"), 2)
    rc, doc, _ = cli(capsys, "search", "office", "Berlin", "--space", "proj", "--json")
    assert doc["results"][0]["source"] == env.path("notes.txt")
    assert doc["results"][0]["kind"] == "chunk"
    _check_hits(doc["results"])
    # Another space sees none of it.
    rc, doc, _ = cli(capsys, "search", "INV-20931", "--json")
    assert rc == 0 and doc == {"results": []}


def test_ask_json_without_answer_model(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, _ = cli(capsys, "ask", "Where", "does", "the", "office", "move?", "--space", "proj",
                     "--json")
    assert rc == 0
    assert {"answer", "citations", "sources", "provider"} <= set(doc)
    assert doc["provider"] == "none"
    assert isinstance(doc["answer"], str) and isinstance(doc["citations"], list)
    assert doc["sources"] and doc["sources"][0]["source"] == env.path("notes.txt")
    _check_hits(doc["sources"])
    # With an image: the exact image is a source.
    rc, doc, _ = cli(capsys, "ask", "--image", env.path("img3.png"), "--space", "proj", "--json")
    assert rc == 0 and doc["sources"][0]["source"] == env.path("img3.png")


def test_stats_per_space_and_space_isolation(env: Library,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    other = env.root / "other"
    rc, doc, _ = cli(capsys, "index", str(other), "--space", "b", "--json")
    assert rc == 0 and len(doc["indexed"]) == 1
    b_id = doc["indexed"][0]["id"]
    rc, doc, _ = cli(capsys, "stats", "--space", "proj", "--json")
    assert rc == 0
    assert {"items", "by_kind", "spaces", "model", "store"} <= set(doc)
    assert doc["items"] == 9
    assert doc["by_kind"] == {"image": 6, "page": 2, "chunk": 1}
    assert doc["spaces"] == {"b": 1, "proj": 9}
    assert doc["model"] == str(env.model)
    assert str(env.data) in doc["store"]
    rc, doc, _ = cli(capsys, "--space", "b", "stats", "--json")
    assert (doc["items"], doc["by_kind"]["image"], doc["spaces"]) == (1, 1, {"b": 1, "proj": 9})
    rc, doc, _ = cli(capsys, "stats", "--json")  # default space "local": empty, spaces listed
    assert (doc["items"], doc["spaces"]) == (0, {"b": 1, "proj": 9})
    # B's exact image, queried in proj: the near-duplicate path must not cross spaces.
    b0 = str(other / "b0.png")
    rc, doc, _ = cli(capsys, "similar", b0, "--space", "proj", "--json")
    assert rc == 0 and b_id not in [h["id"] for h in doc["results"]]
    assert all(h["source"].startswith(str(env.docs.resolve())) for h in doc["results"])
    rc, doc, _ = cli(capsys, "similar", b0, "--space", "b", "--json")
    assert [h["id"] for h in doc["results"]] == [b_id]


def test_eval_json(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    folder = env.root / "evalset"
    (folder / "q").mkdir(parents=True)
    shutil.copy(env.docs / "img0.png", folder / "q" / "copy0.png")
    queries = [
        {"query_image": "q/copy0.png", "target": "img0.png"},  # relative to the eval file
        {"query": "office Berlin", "target": "notes.txt"},
        {"query": "INV-20931", "target": ["other.pdf", "report.pdf"]},
        {"query_image": env.path("img1.png"), "target": "img1.png"},
        {"query": "zzzz qqqq", "target": "img4.png"},  # a miss
    ]
    (folder / "eval.json").write_text(json.dumps(queries), encoding="utf-8")
    rc, doc, _ = cli(capsys, "eval", str(folder / "eval.json"), "--space", "proj", "--json")
    assert rc == 0
    assert set(doc) == {"n", "recall@1", "recall@5", "mrr", "per_query"}
    assert doc["n"] == 5
    assert doc["recall@1"] == pytest.approx(0.8)
    assert doc["recall@5"] == pytest.approx(0.8)
    assert doc["mrr"] == pytest.approx(0.8)
    pq = doc["per_query"]
    assert [set(q) for q in pq] == [{"query_image", "target", "rank", "results"}] + [
        {"query", "target", "rank", "results"}] * 2 + [
        {"query_image", "target", "rank", "results"}, {"query", "target", "rank", "results"}]
    assert pq[0]["query_image"] == "q/copy0.png" and pq[0]["target"] == "img0.png"
    assert [q["rank"] for q in pq] == [1, 1, 1, 1, None]
    assert pq[0]["results"][0] == env.path("img0.png")
    assert pq[2]["target"] == ["other.pdf", "report.pdf"]
    assert all(isinstance(s, str) for q in pq for s in q["results"])
    # A broken eval file is a clear error, exit 1.
    (folder / "bad.json").write_text('[{"query": "x"}]', encoding="utf-8")
    rc, doc, err = cli(capsys, "eval", str(folder / "bad.json"), "--json")
    assert rc == 1 and "target" in doc["error"] and "Traceback" not in err


@pytest.mark.parametrize(("entries", "message"), [
    ([], "no queries"),
    ([{"query": 5, "target": "img0.png"}], "entry 1: \"query\" must be non-empty text"),
    ([{"query": "x", "target": "img0.png"}, {"query": " ", "target": "img0.png"}],
     "entry 2: \"query\" must be non-empty text"),
    ([{"query_image": None, "target": "img0.png"}], "\"query_image\" must be non-empty"),
    ([{"query": "x", "target": 5}], "entry 1: \"target\" must be a file name"),
    ([{"query": "x", "target": []}], "\"target\" must be a file name"),
    ([{"query": "x", "target": ["img0.png", {"name": "img1.png"}]}], "\"target\" must be"),
])
def test_eval_refuses_labels_that_could_never_match(
        env: Library, capsys: pytest.CaptureFixture[str], entries: list[Any],
        message: str) -> None:
    # A label of the wrong type used to count as a miss: recall looked worse, silently.
    path = env.root / "labels.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    rc, doc, _ = cli(capsys, "eval", str(path), "--space", "proj", "--json")
    assert rc == 1 and message in doc["error"], doc


def test_eval_split_that_no_entry_has_is_an_error(
        env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "split.json"
    path.write_text(json.dumps([{"query": "x", "target": "img0.png", "split": "dev"},
                                {"query": "y", "target": "img1.png", "split": "test"}]),
                    encoding="utf-8")
    rc, doc, _ = cli(capsys, "eval", str(path), "--space", "proj", "--split", "tset", "--json")
    assert rc == 1 and doc["error"].endswith(
        'no entry has "split": "tset" (the splits are: dev, test)'), doc
    rc, doc, _ = cli(capsys, "eval", str(path), "--space", "proj", "--split", "test",
                     "--compare", "default", "--json")
    assert rc == 0 and doc["configs"][0]["n"] == 1


def test_eval_compare_and_split(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    folder = env.root / "evalset-compare"
    folder.mkdir(parents=True, exist_ok=True)
    queries = [
        {"query": "office Berlin", "target": "notes.txt", "split": "dev", "kind": "note"},
        {"query": "INV-20931", "target": ["other.pdf", "report.pdf"], "split": "test",
         "kind": "pdf"},
        {"query": "zzzz qqqq", "target": "img4.png", "split": "dev", "kind": "note"},
    ]
    path = folder / "eval.json"
    path.write_text(json.dumps(queries), encoding="utf-8")
    rc, doc, _ = cli(capsys, "eval", str(path), "--space", "proj", "--split", "dev", "--json")
    assert rc == 0 and doc["n"] == 2 and set(doc) == {"n", "recall@1", "recall@5", "mrr",
                                                       "per_query"}
    rc, doc, _ = cli(capsys, "eval", str(path), "--space", "proj", "--json", "--compare",
                     "default", "dense", "kw:weight_keyword=0,weight_text=2")
    assert rc == 0
    names = [c["name"] for c in doc["configs"]]
    assert names == ["default", "dense", "kw"]
    default, dense, kw = doc["configs"]
    assert default["settings"] == {} and kw["settings"] == {"weight_keyword": 0.0,
                                                            "weight_text": 2.0}
    assert dense["settings"]["min_text"] == -1.0
    for c in doc["configs"]:
        assert set(c) == {"name", "settings", "n", "recall@1", "recall@5", "mrr", "by_kind"}
        assert c["n"] == 3 and set(c["by_kind"]) == {"note", "pdf"}
        assert c["by_kind"]["note"]["n"] == 2 and c["by_kind"]["pdf"]["n"] == 1
    assert default["by_kind"]["pdf"]["recall@1"] == 1.0  # the rare token, found by BM25
    assert default["recall@1"] == pytest.approx(2 / 3)
    # The table, and a clear error for a setting that does not exist.
    rc = main(["eval", str(path), "--space", "proj", "--compare"])
    out, _ = capsys.readouterr()
    assert rc == 0 and out.splitlines()[0].split() == ["configuration", "kind", "n", "R@1",
                                                       "R@5", "MRR"]
    assert [ln.split()[0] for ln in out.splitlines()[1:] if not ln.startswith(" ")] == [
        "default", "no-captions", "no-glossary", "dense", "rrf"]
    rc, doc, _ = cli(capsys, "eval", str(path), "--json", "--compare", "weight_nope=1")
    assert rc == 1 and "weight_nope" in doc["error"]


def test_recaption_with_captions_off_is_a_clear_error(
        env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, _ = cli(capsys, "index", "--recaption", "--json")
    assert rc != 0 and "captions" in doc["error"]
    with pytest.raises(SystemExit) as exit_:
        main(["index"])
    assert exit_.value.code == 2 and "PATH" in capsys.readouterr().err


def test_config_file_and_env_override(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = env.root / "pixrag.toml"
    cfg.write_text("[retrieval]\nk = 1\nmin_clip = -1.0\n", encoding="utf-8")
    rc, doc, _ = cli(capsys, "--config", str(cfg), "search", "noise", "--space", "proj", "--json")
    assert rc == 0 and len(doc["results"]) == 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXRAG_RETRIEVAL__K", "3")  # environment beats the file
        rc, doc, _ = cli(capsys, "search", "noise", "--space", "proj", "--json",
                         "--config", str(cfg))
    assert rc == 0 and len(doc["results"]) == 3
    # Wrong keys and values name what is wrong.
    bad = env.root / "bad.toml"
    bad.write_text("[retrieval]\nkk = 1\n", encoding="utf-8")
    rc, doc, err = cli(capsys, "--config", str(bad), "stats", "--json")
    assert rc == 1 and "retrieval.kk" in doc["error"] and "retrieval.kk" in err
    bad.write_text("[retrieval]\nk = 0\n", encoding="utf-8")
    rc, doc, _ = cli(capsys, "--config", str(bad), "stats", "--json")
    assert rc == 1 and "retrieval.k" in doc["error"] and "PIXRAG_RETRIEVAL__K" in doc["error"]
    bad.write_text("[retrieval\n", encoding="utf-8")
    rc, doc, _ = cli(capsys, "--config", str(bad), "stats", "--json")
    assert rc == 1 and "not valid TOML" in doc["error"]
    rc, doc, _ = cli(capsys, "--config", str(env.root / "nope.toml"), "stats", "--json")
    assert rc == 1 and "nope.toml" in doc["error"] and "not found" in doc["error"]
    for name, value, expect in (("PIXRAG_RETRIEVAL__KK", "1", "PIXRAG_RETRIEVAL__KK"),
                                ("PIXRAG_NOPE__K", "1", "PIXRAG_NOPE__K"),
                                ("PIXRAG_INDEX__OCR", "maybe", "index.ocr")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(name, value)
            rc, doc, _ = cli(capsys, "stats", "--json")
        assert rc == 1 and expect in doc["error"], (name, doc)


def test_forget_by_id_path_and_folder(env: Library, capsys: pytest.CaptureFixture[str]) -> None:
    blobs, thumbs = env.data / "blobs", env.data / "blobs" / "thumbs"

    def blob_files() -> set[str]:
        return {p.name for p in blobs.rglob("*") if p.is_file() and p.parent != thumbs}

    import hashlib

    sha2 = hashlib.sha256((env.docs / "img2.png").read_bytes()).hexdigest()
    sha_pdf = hashlib.sha256(PDF).hexdigest()
    assert {sha2, sha_pdf} <= blob_files()
    [id2] = env.ids("img2.png")
    assert id2 == item_id("proj", sha2)
    assert (thumbs / f"{id2}.jpg").is_file()

    rc, doc, _ = cli(capsys, "forget", id2, "--space", "proj", "--json")
    assert rc == 0 and doc == {"removed": [id2], "not_found": []}
    assert sha2 not in blob_files() and not (thumbs / f"{id2}.jpg").exists()

    rc, doc, _ = cli(capsys, "forget", str(env.docs / "report.pdf"), "--space", "proj",
                     "--json")
    assert rc == 0 and sorted(doc["removed"]) == sorted(env.ids("report.pdf"))
    assert sha_pdf not in blob_files()
    assert not any((thumbs / f"{i}.jpg").exists() for i in env.ids("report.pdf"))

    rc, doc, _ = cli(capsys, "forget", str(env.docs / "sub"), "--space", "proj", "--json")
    assert rc == 0 and doc["removed"] == env.ids("sub/deep0.png")

    rc, doc, _ = cli(capsys, "stats", "--space", "proj", "--json")
    assert doc["items"] == 9 - 4
    assert doc["by_kind"] == {"image": 4, "page": 0, "chunk": 1}
    rc, doc, _ = cli(capsys, "search", "INV-20931", "--space", "proj", "--json")
    assert env.path("report.pdf") not in [h["source"] for h in doc["results"]]
    rc, doc, _ = cli(capsys, "similar", env.path("img2.png"), "--space", "proj", "--json")
    assert id2 not in [h["id"] for h in doc["results"]]

    # Nothing matches: exit 1, reported. Same id in another space: not found there.
    rc, doc, _ = cli(capsys, "forget", "no-such-id", env.ids("img1.png")[0], "--json")
    assert rc == 1 and doc == {"removed": [], "not_found": ["no-such-id",
                                                           env.ids("img1.png")[0]]}
    rc, doc, _ = cli(capsys, "stats", "--space", "proj", "--json")
    assert doc["items"] == 5

