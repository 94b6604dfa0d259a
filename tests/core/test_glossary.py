"""The glossary: abbreviations and error messages explained, as extra passages of an item."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets, load_settings
from core.errors import ConfigError
from core.glossary import Glossary, annotated_passages, default_glossary, load_glossary
from core.glossary_terms import ACRONYMS, SIGNATURES
from core.types import Scope, glossary_passage_id, is_caption_passage, is_glossary_passage

SMALL = Glossary.build(
    {"NPS": "net promoter score, how likely customers are to recommend us",
     "CI/CD": "continuous integration and delivery", "CI": "continuous integration"},
    [(r"\bEADDRINUSE\b|address already in use", "the port is already taken")])


def test_abbreviations_are_expanded_once_as_whole_words() -> None:
    text = "NPS rose to 41\nNPS. CI/CD runs; CI green\nSNPS nps ARRAY"
    out = SMALL.annotate(text)
    assert out.splitlines() == [
        "NPS (net promoter score, how likely customers are to recommend us) rose to 41",
        "NPS. CI/CD (continuous integration and delivery) runs; "
        "CI (continuous integration) green",
        "SNPS nps ARRAY",  # inside a word, another case: not the abbreviation
    ]


def test_written_out_long_forms_get_the_meaning_too() -> None:
    out = SMALL.annotate("Net Promoter\nScore by Quarter\nNet  promoter score by quarter; NPS 41")
    # A long form split over two OCR lines is not matched; one written out is, once, and the
    # abbreviation after it is then already explained.
    assert out.splitlines()[1:] == [
        "Score by Quarter",
        "Net  promoter score (NPS, how likely customers are to recommend us) by quarter; NPS 41"]
    # Ambiguous entries ("a; or b") and one-word long forms are not matched as long forms.
    g = Glossary.build({"SE": "sales engineer, presales; or software engineer",
                        "CI": "continuous integration"}, [])
    assert g.annotate("our sales engineer") == "" and g.annotate("continuous integration") == ""


def test_error_lines_get_their_meaning_and_plain_text_gets_nothing() -> None:
    out = SMALL.annotate("$ node server.js\nError: listen EADDRINUSE :::3000\nretry: "
                         "address already in use")
    assert out.splitlines()[1] == "Error: listen EADDRINUSE :::3000 (the port is already taken)"
    assert out.splitlines()[2] == "retry: address already in use"  # each meaning once
    assert SMALL.annotate("Quarterly planning, nothing special") == ""


def test_shipped_terms_are_well_formed() -> None:
    assert len(ACRONYMS) >= 200 and len(SIGNATURES) >= 100
    for pattern, meaning in SIGNATURES:
        re.compile(pattern, re.IGNORECASE)
        assert meaning and len(meaning) <= 160
    # Patterns are specific: ordinary slide text does not fire them.
    plain = ("Q3 roadmap: launch the new billing page, hire two designers, "
             "customer interviews in May. Revenue grew 12% year over year.")
    assert not [p for p, _ in SIGNATURES if re.search(p, plain, re.IGNORECASE)]
    g = default_glossary()
    assert "net promoter score" in g.annotate("NPS 41").lower()
    assert g.annotate("Error: listen EADDRINUSE: address already in use :::3000")
    assert g.annotate("pod/api-7f9 0/1 CrashLoopBackOff 12 restarts")


def test_glossary_passage_ids() -> None:
    pid = glossary_passage_id("abc", 2)
    assert pid == "abc#g2" and is_glossary_passage(pid) and not is_caption_passage(pid)
    assert not is_glossary_passage("abc#0") and not is_glossary_passage("abc#c0")
    assert [p for p, _ in annotated_passages(SMALL, "abc", "NPS 41", 800)] == ["abc#g0"]
    assert annotated_passages(SMALL, "abc", "nothing known", 800) == []


DOCS = {
    "deploy.txt": "$ node server.js\nError: listen EADDRINUSE :::8080\n"
                  "    at Server.setupListenHandle",
    "survey.txt": "Q3 NPS 41, was 35 in Q2",
    "pods.txt": "NAME READY STATUS RESTARTS\napi-7f9c 0/1 CrashLoopBackOff 14",
    "migration.txt": "Server migration plan: move the API from port 8080 to 443 next week",
    "hiring.txt": "Hiring plan: two designers and a support lead by June",
}
QUESTIONS = {
    "why can't the server start? another process has the port": "deploy.txt",
    "are customers more likely to recommend us than last quarter?": "survey.txt",
    "the container keeps crashing and restarting": "pods.txt",
}


async def _top(tmp_path: Path, tiny_clip: Path, glossary: bool) -> dict[str, str]:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none",
           "PIXRAG_TEXT__GLOSSARY": str(glossary).lower()}
    settings = load_settings(None, environ=env, data_dir=tmp_path / f"data-{glossary}")
    async with open_service(settings, Secrets({})) as svc:
        report = await svc.index_paths([folder], "local")
        assert len(report.indexed) == len(DOCS)
        lib = svc.c.library
        records = await lib.vector_records("text", documents=True)
        annotated = [r for r in records if is_glossary_passage(r.id)]
        if glossary:
            assert annotated and all("(" in (r.document or "") for r in annotated)
            # The added words are not on screen: keyword search does not see them.
            assert await lib.keyword_search(Scope("local"), "promoter", 5) == []
        else:
            assert annotated == []
        top = {}
        for question in QUESTIONS:
            hits = await svc.search(question, Scope("local"), k=3)
            top[question] = Path(hits[0].source).name if hits else ""
            # The snippet is the item's own words, never the annotation.
            assert all("net promoter" not in h.text for h in hits)
        return top


async def test_plain_word_questions_find_abbreviations_and_errors(
    tmp_path: Path, tiny_clip: Path
) -> None:
    assert await _top(tmp_path, tiny_clip, glossary=True) == QUESTIONS
    without = await _top(tmp_path, tiny_clip, glossary=False)
    assert without != QUESTIONS  # the local model alone misses at least one


async def test_reindex_adds_glossary_passages_to_items_indexed_without(
    tmp_path: Path, tiny_clip: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none"}
    data = tmp_path / "data"
    off = load_settings(None, environ={**env, "PIXRAG_TEXT__GLOSSARY": "false"}, data_dir=data)
    async with open_service(off, Secrets({})) as svc:
        await svc.index_paths([folder], "local")
    async with open_service(load_settings(None, environ=env, data_dir=data),
                            Secrets({})) as svc:
        lib = svc.c.library
        assert not [r for r in await lib.vector_records("text") if is_glossary_passage(r.id)]
        report = await svc.reindex()
        assert sorted(Path(i.source).name for i in report.indexed) == \
            ["deploy.txt", "migration.txt", "pods.txt", "survey.txt"]  # "API" is known too
        assert [Path(s.source).name for s in report.skipped] == ["hiring.txt"]
        glossed = [r for r in await lib.vector_records("text", documents=True)
                   if is_glossary_passage(r.id)]
        assert len(glossed) == 4
        assert any("net promoter score" in (r.document or "") for r in glossed)
        again = await svc.reindex()  # done once
        assert again.indexed == [] and len(again.skipped) == len(DOCS)
        hits = await svc.search("are customers more likely to recommend us than last quarter?",
                                Scope("local"), k=1)
        assert Path(hits[0].source).name == "survey.txt"
        # Forgetting an item removes its glossary passages with the rest.
        await svc.forget("local", hits[0].source)
        left = [r for r in await lib.vector_records("text") if is_glossary_passage(r.id)]
        assert len(left) == 3 and all(r.metadata.get("name") != "survey.txt" for r in left)


def test_questions_get_abbreviations_not_error_meanings() -> None:
    q = "why does the NPS chart say address already in use?"
    assert "net promoter score" in SMALL.annotate(q, errors=False)
    assert "port is already taken" not in SMALL.annotate(q, errors=False)
    assert "port is already taken" in SMALL.annotate(q)


TEAM = r"""
[abbreviations]
PLT = "platform team, the people who run the internal developer platform"
NPS = "our own meaning of it"

[errors]
'\bQ-LIMIT-\d+\b' = "the tenant used up its monthly quota"
"""


async def test_a_teams_own_glossary_file_is_used(tmp_path: Path, tiny_clip: Path) -> None:
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    g = load_glossary(str(path))
    assert "internal developer platform" in g.annotate("PLT weekly sync")
    assert g.annotate("NPS 41") == "NPS (our own meaning of it) 41"  # a team's term wins
    assert "monthly quota" in g.annotate("ingest failed: Q-LIMIT-42 for tenant acme")
    assert "CrashLoopBackOff" not in TEAM and g.annotate("CrashLoopBackOff")  # shipped ones stay

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ingest.txt").write_text("worker-3: ingest failed: Q-LIMIT-42 for tenant acme")
    (folder / "usage.txt").write_text("Usage report: tenant acme has used 61% of this month's plan")
    question = "which tenant ran out of its monthly quota?"
    for glossary_file, first in (("", "usage.txt"), (str(path), "ingest.txt")):
        env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none",
               "PIXRAG_TEXT__GLOSSARY_FILE": glossary_file}
        data = tmp_path / f"data{bool(glossary_file)}"
        async with open_service(load_settings(None, environ=env, data_dir=data),
                                Secrets({})) as svc:
            await svc.index_paths([folder], "local")
            hits = await svc.search(question, Scope("local"), k=2)
            assert Path(hits[0].source).name == first


@pytest.mark.parametrize(("text", "says"), [
    ("[errors]\n'(unclosed' = 'x'\n", "not a valid regular expression"),
    ("[words]\nA = 'b'\n", "unknown table(s) words"),
    ("[abbreviations]\nACME = ''\n", "needs a non-empty text"),
    ("[abbreviations\n", "not valid TOML"),
    (None, "cannot read"),
])
async def test_a_bad_glossary_file_is_a_config_error_at_start(
    tmp_path: Path, tiny_clip: Path, text: str | None, says: str
) -> None:
    path = tmp_path / "team.toml"
    if text is not None:
        path.write_text(text)
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none",
           "PIXRAG_TEXT__GLOSSARY_FILE": str(path)}
    settings = load_settings(None, environ=env, data_dir=tmp_path / "data")
    with pytest.raises(ConfigError) as err:
        async with open_service(settings, Secrets({})):
            pass
    assert err.value.key == "text.glossary_file" and says in str(err.value)
    assert str(path) in str(err.value)


async def test_reindex_applies_a_changed_glossary_file(tmp_path: Path, tiny_clip: Path) -> None:
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ingest.txt").write_text("worker-3: ingest failed: Q-LIMIT-42 for tenant acme")
    (folder / "usage.txt").write_text("Usage report: tenant acme has used 61% of this month's plan")
    data = tmp_path / "data"
    base = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none"}

    async def glossed(glossary_file: str, *, index: bool = False) -> tuple[list[str], list[str]]:
        env = {**base, "PIXRAG_TEXT__GLOSSARY_FILE": glossary_file}
        async with open_service(load_settings(None, environ=env, data_dir=data),
                                Secrets({})) as svc:
            report = await (svc.index_paths([folder], "local") if index else svc.reindex())
            changed = [] if index else sorted(Path(i.source).name for i in report.indexed)
            docs = [r.document or "" for r in await svc.c.library.vector_records(
                "text", documents=True) if is_glossary_passage(r.id)]
            return changed, docs

    assert await glossed("", index=True) == ([], [])  # no known term in either file
    changed, docs = await glossed(str(path))  # the team's file is added: reindex applies it
    assert changed == ["ingest.txt"] and len(docs) == 1 and "monthly quota" in docs[0]
    assert await glossed(str(path)) == ([], docs)  # nothing changed since
    path.write_text(TEAM.replace("used up its monthly quota", "hit its hard usage limit"))
    changed, docs = await glossed(str(path))
    assert changed == ["ingest.txt"] and len(docs) == 1 and "hard usage limit" in docs[0]
    assert await glossed("") == (["ingest.txt"], [])  # the file is gone: so are its passages
