"""What an operator deploys: `pixrag health` (no side effects), Prometheus metrics scraped
over HTTP, JSON log lines without secrets, and the eval's warning about shared stores."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from bot.cli import main
from core.app import open_service
from core.config import Secrets
from core.evaluate import run_eval
from core.logformat import JsonFormatter, RedactSecrets
from core.machine import gpu_possible
from core.metrics import InstrumentedService, Metrics, serve
from core.types import Scope, Upload
from tests.cli.helpers import (
    cli_env,
    json_out,
    make_settings,
    noise_bytes,
    pixrag_cmd,
    run_cli,
    write_images,
)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def test_health_checks_without_side_effects(tmp_path: Path, tiny_clip: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for k, v in cli_env(data, tiny_clip).items():
        if k.startswith(("PIXRAG_", "HF_")):
            monkeypatch.setenv(k, v)
    # Nothing indexed yet: unhealthy, and the data directory is NOT created.
    assert main(["health", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and set(doc["parts"]) == {"store", "catalog", "model"}
    assert doc["parts"]["model"]["ok"] is True  # the model loads even so
    assert "does not exist" in doc["parts"]["catalog"]["detail"]
    assert not data.exists()

    write_images(tmp_path / "in", 2)
    assert main(["index", str(tmp_path / "in")]) == 0
    capsys.readouterr()
    before = _snapshot(data)
    assert main(["health", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert all(p["ok"] for p in doc["parts"].values())
    assert "2 items" in doc["parts"]["catalog"]["detail"]
    assert "collections in" in doc["parts"]["store"]["detail"]  # made by the first write
    assert str(tiny_clip) in doc["parts"]["model"]["detail"]
    if not gpu_possible():  # the device, its precision, and the CPU's batch size
        assert "on cpu (" in doc["parts"]["model"]["detail"]
        assert "batches of 32)" in doc["parts"]["model"]["detail"]
    assert _snapshot(data) == before  # nothing written, nothing created

    assert main(["health", "--skip-model"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("store    ok ") and "model" not in out

    # A model that is not there: exit 1, the part says why.
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tmp_path / "no-model"))
    assert main(["health", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["parts"]["model"]["ok"] is False
    assert "does not exist" in doc["parts"]["model"]["detail"]
    assert doc["parts"]["store"]["ok"] and doc["parts"]["catalog"]["ok"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_endpoint_counts_commands(tmp_path: Path, tiny_clip: Path) -> None:
    settings = make_settings(tmp_path / "data", tiny_clip)
    metrics = Metrics()
    port = _free_port()
    stop = serve(metrics, port, "127.0.0.1")
    queue_seen: list[float | None] = []
    try:
        import asyncio

        async with open_service(settings, Secrets({})) as inner:
            svc = InstrumentedService(inner, metrics, asyncio.get_running_loop())
            images = write_images(tmp_path / "in", 3)

            def progress(done: int, total: int) -> None:
                queue_seen.append(metrics.registry.get_sample_value("pixrag_index_queue_depth"))

            await svc.index_paths(images, "local", progress=progress)
            await svc.index_uploads([Upload("u.png", noise_bytes(7), "https://chat/1")], "team")
            await svc.search("noise", Scope("local"))
            await svc.search("noise", Scope("local"))
            await svc.similar(images[0].read_bytes(), Scope("local"), name="x.png")
            with pytest.raises(Exception):  # noqa: B017 - any user error is counted as one
                await svc.similar(b"not an image", Scope("local"), name="bad.png")
            async for _ in svc.ask_stream("noise?", Scope("local")):
                pass
            assert (await svc.stats("local")).items == 3  # passes straight through
            samples = await asyncio.get_running_loop().run_in_executor(None, _scrape, port)
    finally:
        stop()
    assert samples['pixrag_requests_total{command="search",outcome="ok"}'] == 2
    assert samples['pixrag_requests_total{command="index",outcome="ok"}'] == 2
    assert samples['pixrag_requests_total{command="similar",outcome="ok"}'] == 1
    assert samples['pixrag_requests_total{command="similar",outcome="user_error"}'] == 1
    assert samples['pixrag_requests_total{command="ask",outcome="ok"}'] == 1
    assert samples['pixrag_requests_total{command="stats",outcome="ok"}'] == 1
    assert samples['pixrag_request_seconds_count{command="search"}'] == 2
    assert samples['pixrag_request_seconds_sum{command="search"}'] > 0
    assert samples['pixrag_items{space="local"}'] == 3
    assert samples['pixrag_items{space="team"}'] == 1
    assert samples["pixrag_index_queue_depth"] == 0
    assert samples['pixrag_model_errors_total{kind="model"}'] == 0
    assert samples['pixrag_model_errors_total{kind="llm"}'] == 0
    # While indexing, the files not finished yet were in the gauge.
    assert queue_seen[0] == 2 and queue_seen[-1] == 0


def test_metrics_port_from_the_environment_serves_a_bot_process(
        tmp_path: Path, tiny_clip: Path) -> None:
    """A long-running `pixrag` process with PIXRAG_METRICS__PORT serves /metrics."""
    port = _free_port()
    env = cli_env(tmp_path / "data", tiny_clip, PIXRAG_METRICS__PORT=str(port),
                  PIXRAG_METRICS__HOST="127.0.0.1", PIXRAG_SLACK__MODE="http",
                  PIXRAG_SLACK__HOST="127.0.0.1", PIXRAG_SLACK__PORT=str(_free_port()),
                  SLACK_BOT_TOKEN="xoxb-test-token-123", SLACK_SIGNING_SECRET="s3cret-signing")
    with subprocess.Popen([*pixrag_cmd(), "slack"], cwd=tmp_path, env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            import time

            deadline = time.monotonic() + 120
            samples: dict[str, float] = {}
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    samples = _scrape(port)
                    break
                except OSError:
                    time.sleep(0.5)
            assert samples, f"no /metrics; exit {proc.poll()}"
            assert "pixrag_index_queue_depth" in samples
            assert samples.get('pixrag_model_errors_total{kind="llm"}') == 0
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("token xoxb-very-secret-value in a URL")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("pixrag.test", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_json_log_lines_without_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["xoxb-very-secret-value", "short"]))
    handler.handle(_record("plain %s", "message"))
    handler.handle(_record("request to %s failed", "https://x/?t=xoxb-very-secret-value",
                           exc=True))
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(docs) == 2
    assert set(docs[0]) == {"time", "level", "logger", "message"}
    assert docs[0]["message"] == "plain message" and docs[0]["level"] == "ERROR"
    assert docs[0]["logger"] == "pixrag.test" and docs[0]["time"].endswith("+00:00")
    assert "ValueError" in docs[1]["exception"]
    assert "xoxb-very-secret-value" not in stream.getvalue()
    assert "[redacted]" in docs[1]["message"] and "[redacted]" in docs[1]["exception"]


def test_cli_logs_json_lines_when_asked(tmp_path: Path, tiny_clip: Path) -> None:
    write_images(tmp_path / "in", 2)
    env = cli_env(tmp_path / "data", tiny_clip, PIXRAG_LOG_FORMAT="json")
    proc = subprocess.run([*pixrag_cmd(), "-v", "index", str(tmp_path / "in")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line is one JSON object, progress too
    assert all({"time", "level", "logger", "message"} <= set(d) for d in docs)
    assert docs[0] == {**docs[0], "logger": "pixrag", "level": "INFO",
                       "message": "loading models..."}
    assert any(d["logger"] == "core.models.clip" and "loaded" in d["message"] for d in docs)
    # An error is a JSON line too.
    env["PIXRAG_EMBEDDING__MODEL"] = str(tmp_path / "no-model")
    env["PIXRAG_DATA_DIR"] = str(tmp_path / "other-data")  # not a model mismatch
    proc = subprocess.run([*pixrag_cmd(), "search", "x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1
    [doc] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.strip()]
    assert doc["level"] == "ERROR" and doc["message"].startswith("error: cannot load the CLIP")
    # Text stays the default.
    env.pop("PIXRAG_LOG_FORMAT")
    env["PIXRAG_EMBEDDING__MODEL"] = str(tiny_clip)
    env["PIXRAG_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run([*pixrag_cmd(), "-v", "search", "x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert " INFO core.models.clip: CLIP " in proc.stderr  # the text tower, for the query


def test_metrics_port_taken_is_a_config_error() -> None:
    from core.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as exc:
            serve(Metrics(), port, "127.0.0.1")
    assert f"cannot listen on 127.0.0.1:{port}" in str(exc.value)
    assert "PIXRAG_METRICS__PORT" in str(exc.value)


async def test_eval_warns_when_targets_are_indexed_under_other_names(
        tmp_path: Path, tiny_clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    examples = write_images(tmp_path / "examples", 1, prefix="example")
    evalset = tmp_path / "evalset"
    (evalset / "images").mkdir(parents=True)
    target = evalset / "images" / "slide.png"
    target.write_bytes(examples[0].read_bytes())  # byte-identical to an example
    other = write_images(evalset / "images", 1, prefix="other", seed=9)[0]
    queries = [{"query_image": "images/slide.png", "target": "slide.png"},
               {"query_image": str(other), "target": other.name}]
    (evalset / "eval.json").write_text(json.dumps(queries), encoding="utf-8")
    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths(examples, "local")  # the quick start's store
        await svc.index_paths([evalset / "images"], "local")
        caplog.clear()
        result = await run_eval(svc, Scope("local", admin=True), evalset / "eval.json")
    assert result["per_query"][0]["rank"] is None  # results name example0.png
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 labelled target file(s) are indexed under other names" in warnings[0]
    assert str(target) in warnings[0] and str(examples[0].resolve()) in warnings[0]
    assert "--data-dir" in warnings[0]

    # A store of its own: no warning.
    async with open_service(make_settings(tmp_path / "data2", tiny_clip), Secrets({})) as svc:
        await svc.index_paths([evalset / "images"], "local")
        caplog.clear()
        result = await run_eval(svc, Scope("local", admin=True), evalset / "eval.json")
    assert result["recall@1"] == 1.0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


async def test_text_left_queued_is_finished_by_the_next_index_run(
        tmp_path: Path, tiny_clip: Path) -> None:
    # A run that stopped after the first phase (`--no-wait`, or killed) leaves its items
    # waiting for text: `pixrag stats` says so, and the next `pixrag index` finishes them,
    # even one that has nothing new to index.
    from tests.corpus import png_bytes, text_image

    data = tmp_path / "data"
    shot = tmp_path / "shot.png"
    shot.write_bytes(png_bytes(text_image("Error 0x80070005\nAccess denied")))
    async with open_service(make_settings(data, tiny_clip, PIXRAG_INDEX__OCR="true"),
                            Secrets({})) as svc:
        svc.enricher.kick = lambda: None  # the text phase never starts, as in a killed run
        report = await svc.index_paths([shot], "local", wait=False)
        assert len(report.indexed) == 1
        assert (await svc.stats("local")).waiting_for_text == 1
    env = cli_env(data, tiny_clip, PIXRAG_INDEX__OCR="true")
    stats = run_cli(["stats"], env, cwd=tmp_path)
    assert "waiting for text (OCR, passages): 1 " in stats.stdout, stats.stdout
    early = run_cli(["search", "0x80070005", "--json"], env, cwd=tmp_path)
    assert json_out(early)["results"] == []  # its text is not read yet; stderr says why
    assert "1 item(s) of space 'local' are still waiting for their text" in early.stderr
    # The advice is followed to the letter: the command it names works as written.
    advice = early.stderr.split("`")[1].split()
    assert advice[0] == "pixrag", early.stderr
    again = run_cli([str(shot) if a == "PATH" else a for a in advice[1:]], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "indexed 0 item(s)" in again.stdout  # nothing new: the file is already indexed
    assert "also read the text of 1 item(s) an earlier run left waiting" in again.stdout
    assert json_out(run_cli(["stats", "--json"], env, cwd=tmp_path))["waiting_for_text"] == 0
    assert "waiting for text" not in run_cli(["stats"], env, cwd=tmp_path).stdout
    hits = json_out(run_cli(["search", "0x80070005", "--json"], env, cwd=tmp_path))["results"]
    assert hits and hits[0]["source"] == str(shot.resolve())
    assert "keyword" in hits[0]["signals"]  # found by its OCR text, not only by CLIP


def test_a_blank_document_leaves_check_clean(tmp_path: Path, tiny_clip: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`pixrag index docs/ && pixrag check` in CI: a blank notes file among the documents
    made every check fail (exit 1, a "stale_file_mark"), again after each repair."""
    folder = tmp_path / "docs"
    write_images(folder, 1)
    (folder / "blank.md").write_text("  \n\n\t\n")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tiny_clip))
    monkeypatch.setenv("PIXRAG_INDEX__OCR", "false")
    monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "none")
    blank = str((folder / "blank.md").resolve())
    for _ in range(2):  # the second run says the same: nothing to index, not "already"
        capsys.readouterr()
        assert main(["index", str(folder), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert {"source": blank, "reason": "no content to index"} in report["skipped"]
        assert main(["check", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["ok"] is True and doc["problems"] == [] and doc["items"] == 1
