"""The CLI behaves for scripts and people: exit codes, argument checks, --version, help,
readable search results, progress without a terminal, duplicates named, closed pipes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import bot.cli
from bot.cli import build_parser, main, relevance, snippet
from tests.cli.helpers import cli_env, pixrag_cmd, write_images
from tests.corpus import TXT


@pytest.fixture
def env(tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for in-process ``main()``; returns the data directory."""
    data = tmp_path / "data"
    for k, v in cli_env(data, tiny_clip).items():
        if k.startswith(("PIXRAG_", "HF_")):
            monkeypatch.setenv(k, v)
    return data


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ arguments (no model)


@pytest.mark.parametrize("argv", [
    ["search", "x", "-k", "0"], ["search", "x", "-k", "101"], ["similar", "a.png", "-k", "-3"],
    ["ask", "q", "-k", "many"], ["eval", "e.json", "-k", "1000"],
    ["--space", "", "stats"], ["stats", "--space", "  "], ["--data-dir", "", "stats"],
    ["--config", "", "stats"], ["migrate", "--to", ""],
])
def test_bad_arguments_are_usage_errors(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: pixrag" in err
    assert ("between 1 and 100" in err or "not a number" in err or "must not be empty" in err)


@pytest.mark.parametrize("argv", [["ask"], ["ask", " "], ["ask", "-k", "3"]])
def test_ask_without_question_or_image_is_a_usage_error(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "give a QUESTION, or an image to ask about with --image FILE" in \
        capsys.readouterr().err


def test_k_bounds_are_accepted() -> None:
    for k in ("1", "100"):
        assert build_parser().parse_args(["search", "x", "-k", k]).k == int(k)
    assert build_parser().parse_args(["eval", "e.json"]).k == 10


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pixrag {version('pixrag')}"


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [("pixrag", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += [(f"pixrag {name}", p) for name, p in action.choices.items()]
    return out


def test_every_argument_has_help_and_its_default() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) > 10
    for where, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{where} {name}: no help text"
            if action.option_strings and not isinstance(action, argparse._VersionAction):
                assert "(default: " in action.help, f"{where} {name}: default not shown"
            elif not action.option_strings:
                assert "required" in action.help or "default" in action.help, (where, name)


def test_relevance_and_snippet() -> None:
    assert relevance(1.37, 1.37) == 100 and relevance(0.685, 1.37) == 50
    assert relevance(5.0, 1.37) == 100 and relevance(-0.1, 1.37) == 0
    assert snippet("  line one\n\n  line   two ") == "line one line two"
    long = snippet("word " * 100, width=40)
    assert len(long) == 40 and long.endswith("\u2026") and "\n" not in long


# ------------------------------------------------------------------ commands (tiny model)


def test_index_exit_codes_keep_the_json_shape(env: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    [good] = write_images(tmp_path / "in", 1)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "nope"
    # Only paths that do not exist: the same report, and no index is created for nothing.
    rc, out, _ = _run(capsys, "index", str(missing), "--json")
    assert rc == 1 and json.loads(out) == {
        "indexed": [], "skipped": [],
        "failed": [{"source": str(missing), "error": "no such file or folder"}]}
    assert not env.exists()
    # A path that does not exist: exit 1, the rest still indexed, same JSON document.
    rc, out, _ = _run(capsys, "index", str(good), str(missing), "--json")
    doc = json.loads(out)
    assert rc == 1 and set(doc) == {"indexed", "skipped", "failed"}
    assert [i["source"] for i in doc["indexed"]] == [str(good.resolve())]
    assert doc["failed"] == [{"source": str(missing), "error": "no such file or folder"}]
    # Every file failed: exit 1.
    rc, out, _ = _run(capsys, "index", str(bad), "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["indexed"] == [] and len(doc["failed"]) == 1
    # Some failed, some fine (here: already indexed): the run completed, exit 0.
    rc, out, _ = _run(capsys, "index", str(good), str(bad))
    assert rc == 0 and "1 file(s) already indexed" in out and "FAILED" in out


def test_questions_to_an_empty_index_say_why_and_leave_nothing(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A data folder that does not exist (a typo in PIXRAG_DATA_DIR, say): the same answers
    # and documents as before, a hint on stderr, and no empty index left behind.
    [photo] = write_images(tmp_path / "in", 1)
    for argv in (["search", "anything", "--json"], ["similar", str(photo), "--json"],
                 ["stats", "--json"], ["ask", "anything", "--json"]):
        rc, out, err = _run(capsys, *argv)
        assert rc == 0 and json.loads(out) is not None, argv
        if argv[0] != "stats":
            assert "is empty: add files with `pixrag index PATH`" in err, (argv, err)
        assert not env.exists(), argv
    # Items in another space: the hint names it.
    rc, _, _ = _run(capsys, "index", str(photo), "--space", "team")
    assert rc == 0 and env.exists()
    rc, out, err = _run(capsys, "search", "anything")
    assert rc == 0 and "no matches" in out
    assert "space 'local' is empty; these hold items: team (choose with --space)" in err
    rc, out, err = _run(capsys, "search", "anything", "--space", "team")
    assert rc == 0 and "empty" not in err


def test_same_content_under_a_new_path_names_the_first(env: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    [first] = write_images(tmp_path / "a", 1)
    copy = tmp_path / "b" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    assert _run(capsys, "index", str(first))[0] == 0
    rc, out, _ = _run(capsys, "index", str(copy), str(first))
    assert rc == 0
    assert f"skipped {copy.resolve()}: already indexed (same content as {first.resolve()})" \
        in out
    assert "1 file(s) already indexed" in out  # the same path again is only counted


def test_search_output_for_people(env: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    assert _run(capsys, "index", str(docs))[0] == 0
    rc, out, _ = _run(capsys, "search", "office", "Berlin")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "relevance", "source"]
    m = re.fullmatch(r"\s+1\s+(\d+)/100\s+(.+)", lines[1])
    assert m, lines
    assert 0 < int(m.group(1)) <= 100 and m.group(2) == str((docs / "notes.txt").resolve())
    text = lines[2].strip()  # the matched passage: one line, trimmed
    assert "Berlin" in text and len(text) <= 96 and text in " ".join(TXT.split()) + "\u2026" \
        or text.endswith("\u2026")
    # --json keeps the raw fused score and the per-signal scores.
    rc, out, _ = _run(capsys, "search", "office", "Berlin", "--json")
    hit = json.loads(out)["results"][0]
    assert set(hit) == {"id", "source", "kind", "score", "page", "thumbnail", "signals"}
    assert "text" in hit["signals"]
    assert int(m.group(1)) == relevance(hit["score"], 1.0 + 0.07 + 0.3)


def _feed_fifo(path: Path, data: bytes, total: int, sent: list[int]) -> threading.Thread:
    """A writer on the named pipe ``path``: ``data`` over and over until ``total`` bytes are
    written or the reader goes away; ``sent`` gets the count."""
    os.mkfifo(path)

    def write() -> None:
        n = 0
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as f:
            while n < total:
                n += f.write(data[: total - n])
        sent.append(n)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_similar_and_ask_read_a_pipe_but_never_past_the_limit(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    [img] = write_images(tmp_path / "imgs", 1)
    assert _run(capsys, "index", str(img))[0] == 0
    # Within the limit: `pixrag similar <(convert ...)` works like a file.
    sent: list[int] = []
    thread = _feed_fifo(tmp_path / "query", img.read_bytes(), img.stat().st_size, sent)
    rc, out, err = _run(capsys, "similar", str(tmp_path / "query"), "--json")
    thread.join(10)
    assert rc == 0, err
    assert json.loads(out)["results"][0]["source"] == str(img.resolve())
    # Past it (`/dev/zero`, a runaway pipe): a clear error once the limit is read, not the
    # whole stream in memory first.
    monkeypatch.setenv("PIXRAG_INDEX__MAX_BYTES", "1000000")
    for n, argv in enumerate((["similar"], ["ask", "what is this", "--image"])):
        sent = []
        fifo = tmp_path / f"endless{n}"
        thread = _feed_fifo(fifo, b"\0" * 65536, 64_000_000, sent)
        rc, out, err = _run(capsys, *argv, str(fifo), "--json")
        thread.join(10)
        assert rc == 1
        assert json.loads(out) == {"error": f"{fifo}: larger than the limit of 1.0 MB "
                                            "([index] max_bytes)"}
        assert sent and sent[0] < 8_000_000  # the writer was cut off near the limit


def test_progress_lines_when_stderr_is_not_a_terminal(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bot.cli, "PROGRESS_EVERY_S", 0.0)
    write_images(tmp_path / "many", 4)
    rc, out, err = _run(capsys, "index", str(tmp_path / "many"), "--json")
    assert rc == 0 and len(json.loads(out)["indexed"]) == 4  # stdout: the document only
    lines = err.splitlines()
    assert lines[0] == "pixrag: loading models..."
    progress = [ln for ln in lines if ln.startswith("pixrag: indexed ")]
    assert progress[-1].startswith("pixrag: indexed 4 of 4 files (100%)")
    assert len(progress) >= 2


def test_progress_is_quiet_between_intervals(env: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path / "few", 2)
    rc, _, err = _run(capsys, "index", str(tmp_path / "few"))
    assert rc == 0 and err.splitlines() == ["pixrag: loading models..."]  # a short run


def test_closed_pipe_is_not_an_internal_error(tmp_path: Path, tiny_clip: Path) -> None:
    # `pixrag stats | head -0`: the reader is gone before pixrag writes a byte.
    with subprocess.Popen([*pixrag_cmd(), "stats"], cwd=tmp_path, text=True,
                          env=cli_env(tmp_path / "data", tiny_clip),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        rc = proc.wait(timeout=180)
    assert "internal error" not in err and "Traceback" not in err
    assert "Exception ignored" not in err and "BrokenPipe" not in err
    assert rc == 1, err


def test_unreachable_hub_is_one_line_and_leaves_no_data_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", "openai/clip-vit-base-patch32",
                  HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    del env["HF_HUB_OFFLINE"]  # a first run on a machine that tries the Hub
    proc = subprocess.run([*pixrag_cmd(), "search", "cats"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pixrag: error: cannot load the CLIP model "
                               "'openai/clip-vit-base-patch32': the Hugging Face Hub "
                               "(http://127.0.0.1:9) is unreachable")
    assert "`hf download openai/clip-vit-base-patch32 --local-dir /models/clip`" in lines[0]
    assert "huggingface-cli" not in lines[0] and ".." not in lines[0]
    assert not (tmp_path / "data").exists()


def test_progress_bar_on_a_terminal_starts_before_the_models(tmp_path: Path,
                                                             tiny_clip: Path) -> None:
    import fcntl
    import os
    import pty
    import struct
    import termios

    write_images(tmp_path / "in", 3)
    env = cli_env(tmp_path / "data", tiny_clip)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 100-column terminal, then pixrag
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        cmd = pixrag_cmd()
        os.chdir(tmp_path)
        os.execve(cmd[0], [*cmd, "index", str(tmp_path / "in")], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert text.startswith("\rloading models...\rindexing:   0%|")
    assert "indexing: 100%|" in text and "3/3" in text
    assert text.rstrip().endswith("indexed 3 item(s) from 3 file(s), 0 skipped, 0 failed")


def test_a_data_folder_that_cannot_be_made_names_the_path(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # PIXRAG_DATA_DIR pointing at a file: the error says which path is wrong.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(blocker / "data"))
    rc, out, err = _run(capsys, "stats")
    assert rc != 0 and not out
    assert (f"error: the data folder {blocker / 'data'} cannot be made: {blocker} is a file, "
            "not a folder: choose another folder with --data-dir or PIXRAG_DATA_DIR") in err
    # The data folder itself a file: said so, instead of "File exists".
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(blocker))
    rc, out, err = _run(capsys, "index", str(blocker))
    assert rc == 1 and f"error: the data folder {blocker} is a file, not a folder" in err
    assert blocker.read_text() == "x"
    # pixrag health says the same instead of "does not exist (nothing indexed yet?)".
    rc, out, err = _run(capsys, "health", "--skip-model")
    assert rc == 1 and out.count(f"{blocker} is a file, not a folder") == 2, out


def test_a_data_folder_this_user_cannot_write_says_so(
        env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A bind mount owned by another user: SQLite's "unable to open database file" used to be
    # all the operator saw. (Tests may run as root, who may write anywhere: the refusal is
    # played by os.access and the store.)
    import core.library.open as library_open
    import core.machine
    from core.errors import StoreError

    env.mkdir()

    def refuse(*args: object, **kwargs: object) -> object:
        raise StoreError(f"cannot open the catalog {env}/catalog.sqlite: unable to open "
                         "database file")

    monkeypatch.setattr(library_open, "_parts", refuse)
    monkeypatch.setattr(core.machine.os, "access", lambda path, mode: Path(path) != env)
    rc, out, err = _run(capsys, "stats")
    assert rc == 1
    assert (f"error: the data folder {env} is not writable by this user (uid "
            in err and "give this user write access, or choose another folder with "
            "--data-dir or PIXRAG_DATA_DIR" in err), err


def test_feedback_export_to_a_path_that_cannot_be_written_is_an_error(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Used to be an "internal error (FileNotFoundError ...)".
    target = tmp_path / "no-such-folder" / "feedback.json"
    rc, out, err = _run(capsys, "feedback", "export", "--out", str(target), "--json")
    assert rc == 1
    assert json.loads(out) == {"error": f"{target}: cannot write file (No such file or "
                                        "directory)"}
    assert "internal error" not in err
    rc, out, err = _run(capsys, "feedback", "export", "--out", str(tmp_path))
    assert rc == 1 and f"error: {tmp_path}: cannot write file (Is a directory)" in err


def test_a_missing_bot_token_says_what_it_is_and_which_mode_wants_it(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-shown-anywhere")
    rc, out, err = _run(capsys, "slack")
    assert rc == 1 and not out
    assert ("error: config SLACK_APP_TOKEN: environment variable not set (Socket Mode, the "
            "default [slack] mode, needs the app-level token xapp-...; HTTP mode ([slack] mode "
            "= \"http\") needs SLACK_SIGNING_SECRET instead); see docs/SLACK.md") in err
    monkeypatch.setenv("PIXRAG_SLACK__MODE", "http")
    rc, out, err = _run(capsys, "slack")
    assert rc == 1 and "config SLACK_SIGNING_SECRET: environment variable not set (HTTP mode" in err
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    rc, out, err = _run(capsys, "discord")
    assert rc == 1 and "config DISCORD_TOKEN: environment variable not set (the bot token" in err
    assert "xoxb-not-shown-anywhere" not in err
    assert not env.exists()  # checked before an index is opened


def test_recaption_says_whether_captions_are_off_or_have_no_model(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "index", "--recaption")
    assert rc == 1 and ("error: config index.captions (or PIXRAG_INDEX__CAPTIONS): captions "
                        "are off: set it to true") in err
    # On, but no model to write them: "captions are off: set it to true" was wrong advice.
    monkeypatch.setenv("PIXRAG_INDEX__CAPTIONS", "true")
    rc, out, err = _run(capsys, "index", "--recaption")
    assert rc == 1 and "captions are off" not in err
    assert ("error: config answer.provider (or PIXRAG_ANSWER__PROVIDER): captions are on but "
            "no answer model is configured to write them") in err


@pytest.mark.parametrize("command", ["check", "reindex"])
def test_check_of_a_folder_without_an_index_says_so_and_leaves_none(
        command: str, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A typo in PIXRAG_DATA_DIR used to pass as "ok: 0 item(s)" and leave an empty index.
    rc, out, err = _run(capsys, command, "--json")
    assert rc == 0 and json.loads(out)  # the usual document
    assert f"there is no index at {env}: nothing indexed there yet" in err
    assert not env.exists()


def test_an_unreachable_postgres_is_one_line_and_a_quoted_tilde_config_is_found(
        tmp_path: Path) -> None:
    # The pool's retry warnings (several lines each) used to come before the one error line;
    # and "~/c.toml" in quotes, which no shell expanded, was "not found".
    home = tmp_path / "home"
    home.mkdir()
    (home / "c.toml").write_text('[catalog]\nurl = "postgresql://u:secret@127.0.0.1:9/db"\n',
                                 encoding="utf-8")
    env = cli_env(tmp_path / "data", "unused", HOME=str(home))
    proc = subprocess.run([*pixrag_cmd(), "--config", "~/c.toml", "stats"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "Connection refused" in lines[0] and "secret" not in lines[0]
