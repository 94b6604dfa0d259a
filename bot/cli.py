"""The ``pixrag`` command line: the operator's adapter over :mod:`core.service`.

Lives in ``bot`` (not ``core``) because it is an adapter like the chat bots, and because
``pixrag discord`` / ``pixrag slack`` must import them while ``core`` never may.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import Secrets, Settings, load_settings
from core.errors import PixragError
from core.types import Answer, Hit, Scope

log = logging.getLogger("pixrag")


#: How often the one-line progress is printed when stderr is not a terminal (CI, docker logs).
PROGRESS_EVERY_S = 5.0
K_RANGE = (1, 100)
#: What finishes text left queued: `index` needs a PATH, and any run, even of files already
#: indexed (only counted then), reads the whole queue.
FINISH_TEXT = "`pixrag index PATH` (any file or folder, e.g. one already indexed)"


def _k_value(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not K_RANGE[0] <= k <= K_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be between {K_RANGE[0]} and {K_RANGE[1]}, "
                                         f"not {k}")
    return k


def _space_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _path(text: str) -> Path:
    # Path("") is the current folder: never what an empty argument (an unset variable) meant.
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text).expanduser()  # also "~/c.toml" in quotes, which no shell expanded


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pixrag")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Global options are accepted before and after the command; after wins.
    d = None if top else argparse.SUPPRESS
    p.add_argument("--config", type=_path, default=d, metavar="FILE",
                   help="config file (default: ./config.toml if present)")
    p.add_argument("--data-dir", type=_path, default=d, metavar="DIR",
                   help="data directory (default: $PIXRAG_DATA_DIR, else the config's "
                        "data_dir, ~/.local/share/pixrag)")
    p.add_argument("--space", type=_space_name, default=d, metavar="NAME",
                   help="space (tenant) to use (default: local)")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print one JSON document on stdout (default: text for people)")
    p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="more logging on stderr; -vv for debug (default: warnings only)")


def _k(p: argparse.ArgumentParser, default: str = "[retrieval] k, 5") -> None:
    p.add_argument("-k", type=_k_value, default=None, metavar="N",
                   help=f"number of results, {K_RANGE[0]}-{K_RANGE[1]} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixrag", description="Multimodal RAG over your images, slides and PDFs.",
        epilog="Command-line contract, JSON shapes and exit codes: docs/CLI.md")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the version and exit")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        return p

    p = cmd("index", "index files and folders (recursive): images, PDFs, text documents "
            "(.txt .md .rst .csv .tsv .log)")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="files and folders to index (required, except with --recaption)")
    p.add_argument("--recaption", action="store_true",
                   help="caption again the indexed items that have no caption (a failed "
                   "caption request), only those under PATHs if given (default: off)")
    p.add_argument("--no-wait", action="store_true",
                   help="return once items are findable by image search; their text (OCR, "
                   "passages) follows in the next run or in the bots (default: wait for both)")
    p = cmd("search", "text -> best images/pages/chunks")
    p.add_argument("text", nargs="+", metavar="TEXT", help="what to look for (required)")
    _k(p)
    p = cmd("similar", "reverse image search from a file")
    p.add_argument("image", type=Path, metavar="IMAGE", help="image file to match (required)")
    _k(p)
    p = cmd("ask", "retrieve + answer, with sources")
    p.add_argument("question", nargs="*", metavar="QUESTION",
                   help="the question (default: none; then --image is required)")
    _k(p)
    p.add_argument("--image", type=Path, default=None, metavar="FILE",
                   help="ask about this image (default: none)")
    p = cmd("forget", "remove items (and their blobs) by id or by source path")
    p.add_argument("refs", nargs="+", metavar="ID|PATH",
                   help="item ids, files or folders as they were indexed (required)")
    cmd("stats", "counts per kind, model, store location")
    p = cmd("eval", "recall@1/5 and MRR of labelled queries")
    p.add_argument("file", type=Path, metavar="FILE", help="JSON list of labelled queries "
                   "(required; format in docs/CLI.md)")
    _k(p, default="10")
    p.set_defaults(k=10)
    from core.evaluate import DEFAULT_COMPARE, PRESETS

    p.add_argument("--compare", nargs="*", default=None, metavar="CONFIG",
                   help="run the queries under several retrieval configurations and print a "
                   f"table: preset names ({', '.join(PRESETS)}) or key=value,... overrides "
                   "of [retrieval], optionally NAME:key=value,... (default: off; with no "
                   f"CONFIG: {', '.join(DEFAULT_COMPARE)})")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="only the queries whose \"split\" is NAME, e.g. dev or test "
                   "(default: all)")
    p = cmd("reindex", "re-embed what a model change requires, beside the live index")
    p.add_argument("--force", action="store_true",
                   help="re-embed images even when the model did not change (default: only "
                   "what changed)")
    p = cmd("check", "compare catalog, vectors, keyword index and blobs; report problems")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed: re-embed, rebuild rows, drop orphans "
                   "(default: report only)")
    p = cmd("migrate", "copy this index into another storage configuration (no re-embedding)")
    p.add_argument("--to", type=_path, required=True, metavar="CONFIG",
                   help="config file of the target, e.g. server mode with [store] url, "
                   "[catalog] url, [blobs] url; PIXRAG_* variables apply to the source only "
                   "(default: none, required)")
    p = cmd("health", "check the store, the catalog and that the model loads (changes nothing)")
    p.add_argument("--skip-model", action="store_true",
                   help="check the store and catalog only (default: also load the model)")
    p = cmd("feedback", "chat feedback (Helpful / Not helpful)")
    p.add_argument("action", choices=["export"], help="what to do: export (required)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write to this file (default: stdout)")
    p.add_argument("--all-spaces", action="store_true",
                   help="export every space (default: only --space)")
    p = cmd("discord", "run the Discord bot (DISCORD_TOKEN from the environment)")
    p.add_argument("--sync", action="store_true", default=None,
                   help="sync slash commands now, globally or to [discord] sync_guild "
                        "(default: [discord] sync, false)")
    cmd("slack", "run the Slack app (SLACK_BOT_TOKEN, and SLACK_APP_TOKEN in Socket Mode or "
        "SLACK_SIGNING_SECRET in HTTP mode)")
    return parser


def _setup_logging(verbose: int, settings: Settings | None, command: str) -> None:
    from core.config import SECRET_NAMES
    from core.logformat import configure

    long_running = command in ("discord", "slack")
    level = logging.DEBUG if verbose > 1 else logging.INFO if (verbose or long_running) \
        else logging.WARNING
    if settings is not None and long_running and not verbose:
        level = logging.getLevelName(settings.log_level.upper())
        level = level if isinstance(level, int) else logging.INFO
    # Before the settings loaded (a config error) the variable is all there is to go by.
    fmt = settings.log_format if settings is not None \
        else os.environ.get("PIXRAG_LOG_FORMAT", "text")
    configure(level, fmt, secrets=[v for k in SECRET_NAMES if (v := os.environ.get(k))])
    # huggingface_hub logs each retry twice (its own handler and ours): keep it for -v.
    for noisy in ("httpx", "httpx2", "chromadb", "urllib3", "discord.gateway", "PIL",
                  "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING if verbose
                                              else logging.ERROR if noisy == "huggingface_hub"
                                              else logging.WARNING))
    if not (verbose or long_running):
        # A short command reports a server it cannot reach in one line of its own; the pool's
        # retry warnings (several lines each) before it would only bury that line.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def _quiet_libraries() -> None:
    # Environment, not imports: transformers reads these when (and only if) a command loads a
    # model; importing it here would cost every command seconds.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:  # already imported (an embedding program): tell it
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    # The hub adds its own stderr handler when imported and also propagates to ours: every
    # warning printed twice. The logger object exists before the import: no import needed.
    logging.getLogger("huggingface_hub").propagate = False


_exit_gc_frozen = False


def main(argv: Sequence[str] | None = None) -> int:
    global _exit_gc_frozen
    if not _exit_gc_frozen:
        # The interpreter's last garbage collection walks every object torch and chromadb
        # created at import: 0.3-1 s of a short command's exit. atexit handlers run just
        # before it, and frozen objects are left to the process's end.
        atexit.register(gc.freeze)
        _exit_gc_frozen = True
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
    except BrokenPipeError:
        # The reader went away (`pixrag stats | head -1`): not an error of ours. Python's
        # documented recipe: point stdout at devnull so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "index" and not args.paths and not args.recaption:
        parser.error("index: the following arguments are required: PATH")
    if args.command == "ask" and not " ".join(args.question).strip() and args.image is None:
        # A usage error at once, rather than an error after the models have loaded.
        parser.error("ask: give a QUESTION, or an image to ask about with --image FILE")
    settings: Settings | None = None
    if args.command == "health":
        # A health check never downloads: a model that is not here is a failed check.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        settings = load_settings(args.config, data_dir=args.data_dir or _env_data_dir())
        _setup_logging(args.verbose, settings, args.command)
        _quiet_libraries()
        return asyncio.run(_run(args, settings))
    except BrokenPipeError:
        raise
    except PixragError as exc:
        if settings is None:
            _setup_logging(args.verbose, None, args.command)
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so briefly; the traceback is for -v
        log.debug("internal error", exc_info=True)
        if args.verbose:
            log.exception("internal error")
        return _fail(args, f"internal error ({type(exc).__name__}: {exc}); "
                     "run with -v for details")


def _env_data_dir() -> Path | None:
    value = os.environ.get("PIXRAG_DATA_DIR")
    return Path(value) if value else None


def _fail(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    _say(f"error: {message}", logging.ERROR)
    return 1


def _say(message: str, level: int = logging.INFO) -> None:
    """A line for the person on stderr: ``pixrag: ...``, or with JSON logs one more JSON log
    line, so a log shipper never meets a line it cannot parse."""
    if _json_logs():
        from core.logformat import JsonFormatter

        record = logging.LogRecord("pixrag", level, __file__, 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr, flush=True)
    else:
        print(f"pixrag: {message}", file=sys.stderr, flush=True)


def _json_logs() -> bool:
    from core.logformat import JsonFormatter

    handlers = logging.getLogger().handlers
    return any(isinstance(h.formatter, JsonFormatter) for h in handlers) or (
        not handlers and os.environ.get("PIXRAG_LOG_FORMAT") == "json")


#: The exit status of a run stopped by SIGTERM (128 + 15, what a shell reports for it).
EXIT_TERMINATED = 143


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    """The command, stopped cleanly by SIGTERM (``docker stop``, systemd, ``timeout``) as by
    Ctrl-C: stores closed, a text batch in hand given back. Without a handler the default
    action ends the process on the spot, and as a container's PID 1 the signal is ignored
    until the SIGKILL that follows."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def on_term() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    # Not on Windows, nor outside the main thread (tests calling main() from a worker).
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        return await _run_command(args, settings)
    except asyncio.CancelledError:
        if not terminated:
            raise
        _say("stopped (SIGTERM)")
        return EXIT_TERMINATED
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


async def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    from core.app import open_service

    secrets = Secrets.from_env()
    space = args.space or "local"
    _require_tokens(args.command, settings, secrets)  # before minutes of model loading
    if args.command == "health":
        return await _health(args, settings, secrets)
    if args.command == "migrate":
        return await _migrate(args, settings, secrets)
    if args.command == "index" and not args.recaption and not any(
            p.exists() or p.is_symlink() for p in args.paths):
        # Nothing to index: say so before opening (or creating) an index and loading models.
        from core.ingest import discover
        from core.types import IndexReport

        _, _, failed = discover(list(args.paths))
        return _print_index(args, IndexReport(failed=failed))
    progress = _progress(args) if args.command in ("index", "reindex") else None
    maintenance = args.command in ("reindex", "check")
    fresh = not settings.data_path.exists()
    if fresh and maintenance and not settings.catalog.url:
        # "ok: 0 item(s)" alone would pass a check of the wrong folder (a typo) as healthy.
        _say(f"there is no index at {settings.data_path}: nothing indexed there yet "
             "(check --data-dir, PIXRAG_DATA_DIR or data_dir)", logging.WARNING)
    try:
        async with contextlib.AsyncExitStack() as stack:
            svc = await stack.enter_async_context(
                open_service(settings, secrets, check_models=not maintenance))
            if settings.metrics.port:
                svc = _serve_metrics(stack, svc, settings)
            return await _command(args, settings, secrets, svc, space, progress)
    finally:
        if fresh and args.command in _READ_ONLY:
            # A question asked of a data folder that did not exist (a typo in
            # PIXRAG_DATA_DIR, say) leaves no empty index behind.
            from core.app import remove_if_empty_index

            remove_if_empty_index(settings.data_path)
    raise AssertionError("unreachable")  # pragma: no cover - the stack never swallows


#: Commands that only read the index (or, for check and reindex, have nothing to do without
#: one): pointed at a folder that did not exist, they leave no empty index there.
_READ_ONLY = frozenset({"stats", "search", "similar", "ask", "forget", "feedback", "eval",
                        "check", "reindex"})


async def _say_if_empty(svc: Any, settings: Settings, space: str) -> None:
    """Nothing found: when the space holds nothing at all, or items whose text is not read
    yet, say so on stderr (the JSON document on stdout stays as it is)."""
    stats = await svc.stats(space)
    if stats.items:
        if stats.waiting_for_text:
            _say(f"{stats.waiting_for_text} item(s) of space {space!r} are still waiting for "
                 f"their text (OCR, passages): {FINISH_TEXT} finishes them")
        return
    others = ", ".join(sorted(n for n, c in stats.spaces.items() if c and n != space))
    if others:
        _say(f"space {space!r} is empty; these hold items: {others} (choose with --space)")
    else:
        _say(f"the index at {settings.data_path} is empty: add files with "
             "`pixrag index PATH`")


def _serve_metrics(stack: contextlib.AsyncExitStack, svc: Any, settings: Settings) -> Any:
    from core.metrics import InstrumentedService, Metrics, serve

    metrics = Metrics()
    stack.callback(serve(metrics, settings.metrics.port, settings.metrics.host))
    return InstrumentedService(svc, metrics, asyncio.get_running_loop())


async def _command(args: argparse.Namespace, settings: Settings, secrets: Secrets, svc: Any,
                   space: str, progress: Any) -> int:
    if args.command == "reindex":
        from core.maintenance import reindex

        report = await reindex(svc.c, progress=progress, force=args.force)
        return _print_index(args, report)
    if args.command == "check":
        return _print_check(args, await svc.check(repair=args.repair))
    scope = Scope(space=space, admin=True)  # the CLI is the operator's tool
    if args.command == "index" and args.recaption:
        report = await svc.recaption(args.paths, space, progress=_progress(args, "text"))
        return _print_index(args, report)
    if args.command == "index":
        report = await svc.index_paths(args.paths, space, progress=progress,
                                       wait=not args.no_wait,
                                       text_progress=_progress(args, "text"))
        code = _print_index(args, report)
        missing = [p for p in args.paths if not p.exists()]
        return 1 if missing else code
    if args.command == "search":
        hits = await svc.search(" ".join(args.text), scope, args.k)
        if not hits:
            await _say_if_empty(svc, settings, space)
        return _print_hits(args, hits, _best_possible(settings, image_query=False))
    if args.command == "similar":
        data = _read_file(args.image, settings)
        hits = await svc.similar(data, scope, args.k, name=args.image.name)
        if not hits:
            await _say_if_empty(svc, settings, space)
        return _print_hits(args, hits, _best_possible(settings, image_query=True))
    if args.command == "ask":
        return await _ask(args, settings, svc, scope)
    if args.command == "forget":
        return await _forget(args, svc, space)
    if args.command == "stats":
        stats = await svc.stats(space)
        if args.json:
            _dump(stats.to_json())
        else:
            print(f"space {space}: {stats.items} items "
                  + ", ".join(f"{n} {k}" for k, n in stats.by_kind.items()))
            print(f"model: {stats.model}  text model: {stats.text_model}")
            print(f"store: {stats.store}")
            if stats.waiting_for_text:
                print(f"waiting for text (OCR, passages): {stats.waiting_for_text} "
                      f"(findable by image already; {FINISH_TEXT} or a running bot "
                      "finishes them)")
            if stats.without_caption:
                print(f"without a caption: {stats.without_caption} "
                      "(pixrag index --recaption tries again)")
            for name, n in stats.spaces.items():
                print(f"  {name}: {n}")
        return 0
    if args.command == "eval":
        from core.evaluate import compare, run_eval

        if args.compare is not None:
            table = await compare(svc, scope, args.file, args.compare, k=args.k,
                                  split=args.split)
            if args.json:
                _dump(table)
            else:
                _print_compare(table["configs"])
            return 0
        result = await run_eval(svc, scope, args.file, k=args.k, split=args.split,
                                with_kinds=not args.json)
        if args.json:
            _dump(result)
        else:
            print(f"n={result['n']}  recall@1={result['recall@1']:.3f}  "
                  f"recall@5={result['recall@5']:.3f}  mrr={result['mrr']:.3f}")
            if len(result["by_kind"]) > 1:
                for kind, m in result["by_kind"].items():
                    print(f"  {kind}: n={m['n']}  recall@1={m['recall@1']:.3f}  "
                          f"recall@5={m['recall@5']:.3f}  mrr={m['mrr']:.3f}")
            for q in result["per_query"]:
                label = q.get("query") or q.get("query_image")
                print(f"  rank {q['rank'] or '-':>3}  {label}")
        return 0
    if args.command == "feedback":
        entries = await svc.export_feedback(None if args.all_spaces else space)
        text = json.dumps(entries, indent=2, ensure_ascii=False)
        if args.out:
            _write_file(args.out, text + "\n")
            if args.json:
                _dump({"written": str(args.out), "entries": len(entries)})
            else:
                print(f"wrote {len(entries)} entries to {args.out}")
        else:
            print(text)
        return 0
    if args.command in ("discord", "slack"):
        await svc.start_background()  # text left queued by an earlier run resumes
    if args.command == "discord":
        from bot.discord.app import run_discord

        await run_discord(svc, settings, secrets, sync=args.sync)
        return 0
    if args.command == "slack":
        from bot.slack.app import run_slack

        await run_slack(svc, settings, secrets)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


async def _health(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from core.health import run_checks

    loop = asyncio.get_running_loop()
    report = await loop.run_in_executor(
        None, lambda: run_checks(settings, secrets, model=not args.skip_model))
    if args.json:
        _dump(report.to_json())
    else:
        for name, part in report.parts.items():
            print(f"{name:<8} {'ok' if part.ok else 'FAILED':<7} {part.detail}")
    return 0 if report.ok else 1


def _require_tokens(command: str, settings: Settings, secrets: Secrets) -> None:
    from core.errors import ConfigError

    # Each with what it is and where it comes from: an operator who meant HTTP mode learns that
    # Socket Mode (the default) is why an app token is asked for.
    needed = {"discord": [("DISCORD_TOKEN", "the bot token from the Developer Portal's Bot "
                           "page")],
              "slack": [("SLACK_BOT_TOKEN", "the bot token xoxb-..."),
                        ("SLACK_APP_TOKEN", "Socket Mode, the default [slack] mode, needs the "
                         "app-level token xapp-...; HTTP mode ([slack] mode = \"http\") needs "
                         "SLACK_SIGNING_SECRET instead") if settings.slack.mode == "socket"
                        else ("SLACK_SIGNING_SECRET", "HTTP mode ([slack] mode = \"http\") "
                              "verifies Slack's requests with it")]}.get(command, [])
    for name, what in needed:
        if not secrets.get(name):
            raise ConfigError(name, f"environment variable not set ({what}); see "
                              f"docs/{command.upper()}.md")


def _read_file(path: Path, settings: Settings) -> bytes:
    """The image to search with or ask about: a file, or a pipe (``/dev/stdin``), at most
    ``[index] max_bytes`` of it, the limit an indexed file has."""
    from core.ingest import read_query_file

    return read_query_file(path, settings.index.max_bytes)


def _write_file(path: Path, text: str) -> None:
    from core.errors import UnsupportedInput

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UnsupportedInput(str(path), f"cannot write file ({exc.strerror or exc})") from exc


def _progress(args: argparse.Namespace, phase: str = "files") -> Any:
    """Progress on stderr (stdout stays the report / the JSON document): a bar on a terminal,
    else one line every few seconds so CI and container logs show a long run is alive. The
    first phase's starts before the models load, so the first seconds are not a blank screen;
    the second phase ("text": OCR, passages) gets a bar of its own."""
    if sys.stderr.isatty():
        return _Bar(phase)
    return _Lines(phase)


class _Bar:
    def __init__(self, phase: str = "files") -> None:
        from tqdm import tqdm

        self.phase = phase
        # Only the words until there is something to count (a bar of 0 files looks stuck).
        desc = "loading models..." if phase == "files" else "text (OCR, passages)"
        self.bar = tqdm(total=None, desc=desc, bar_format="{desc}",
                        unit="file" if phase == "files" else "item", file=sys.stderr,
                        dynamic_ncols=True, leave=False, delay=0 if phase == "files" else 1)

    def __call__(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.bar_format = None
            self.bar.set_description("indexing" if self.phase == "files" else "text",
                                     refresh=False)
            self.bar.reset(total=total)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.bar.close()


class _Lines:
    def __init__(self, phase: str = "files") -> None:
        self.start = time.monotonic()
        self.last = self.start
        self.printed = False
        self.what = ("indexed", "files") if phase == "files" else ("read the text of", "items")
        if phase == "files":
            _say("loading models...")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if now - self.last < PROGRESS_EVERY_S and not (finished and self.printed):
            return
        self.last = now
        self.printed = True
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", about {_duration((total - done) / rate)} left" if rate and not finished else ""
        verb, noun = self.what
        _say(f"{verb} {done:,} of {total:,} {noun} ({100 * done // max(total, 1)}%)"
             f", {rate:.1f} {noun}/s{eta}")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _print_compare(configs: list[dict[str, Any]]) -> None:
    """One row per configuration, then one per configuration and kind."""
    width = max([len(c["name"]) for c in configs] + [13])
    print(f"{'configuration':<{width}}  {'kind':<10} {'n':>4}  {'R@1':>5}  {'R@5':>5}  "
          f"{'MRR':>5}")
    for c in configs:
        rows = [("all", c)] + (list(c["by_kind"].items()) if len(c["by_kind"]) > 1 else [])
        for kind, m in rows:
            print(f"{c['name'] if kind == 'all' else '':<{width}}  {kind:<10} {m['n']:>4}  "
                  f"{m['recall@1']:>5.3f}  {m['recall@5']:>5.3f}  {m['mrr']:>5.3f}")


def _dump(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=None))


def _print_index(args: argparse.Namespace, report: Any) -> int:
    """Print the report; exit 1 when nothing could be done (every file failed)."""
    everything_failed = bool(report.failed) and not report.indexed and not report.skipped
    code = 1 if everything_failed else 0
    if args.json:
        _dump(report.to_json())
        return code
    files = len({i.source for i in report.indexed})
    print(f"indexed {len(report.indexed)} item(s) from {files} file(s), "
          f"{len(report.skipped)} skipped, {len(report.failed)} failed")
    already = 0
    for s in report.skipped:
        if s.reason == "already indexed":  # the same file again: one count, not a list
            already += 1
            continue
        # Also "already indexed (same content as OTHER)": a file never indexed under this
        # path, so say under which one its content is found.
        print(f"  skipped {s.source}: {s.reason}")
    if already:
        print(f"  {already} file(s) already indexed")
    for f in report.failed:
        print(f"  FAILED {f.source}: {f.error}")
    for w in getattr(report, "warnings", []):
        print(f"  warning {w.source}: {w.error}")
    if getattr(report, "resumed", 0):
        print(f"  also read the text of {report.resumed} item(s) an earlier run left waiting")
    return code


def _print_check(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """Exit 1 while problems remain that were not repaired."""
    if args.json:
        _dump(report)
    else:
        if report["ok"]:
            print(f"ok: {report['items']} item(s); catalog, vectors, keyword index and blobs "
                  "agree")
        for p in report["problems"]:
            fixed = "  [repaired]" if p["repaired"] else ""
            print(f"  {p['kind']}: {p['source'] or p['item']}: {p['detail']}{fixed}")
        if report["problems"] and not report["repaired"]:
            print("run `pixrag check --repair` to fix what can be fixed")
    return 1 if any(not p["repaired"] for p in report["problems"]) else 0


async def _migrate(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from core.migrate import migrate
    from core.models.textembed import build_text_embedder

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXRAG_")}
    target = load_settings(args.to, environ=env)
    text = build_text_embedder(settings.text, secrets)
    report = await migrate(settings, target, {"clip": settings.embedding.model,
                                              "text": text.model_id})
    if args.json:
        _dump(report)
    else:
        word = "copied and verified" if report["ok"] else "copied, but counts DIFFER"
        print(f"{word}: {report['items']['target']} item(s), "
              + ", ".join(f"{ch} vectors {v['target']}" for ch, v in report["vectors"].items())
              + f", keyword rows {report['keyword_rows']['target']}, "
              f"originals {report['originals']['target']}")
    return 0 if report["ok"] else 1


def _best_possible(settings: Settings, *, image_query: bool) -> float:
    """The fused score of a result that maxes every signal the query uses: the top of the
    0-100 relevance scale shown to people (the raw score stays in --json)."""
    r = settings.retrieval
    weights = [r.weight_text, r.weight_keyword, r.weight_clip]
    if image_query:
        weights.append(r.weight_near_duplicate)
    if r.fusion == "rrf":
        return sum(w / (r.rrf_k + 1) for w in weights)
    return sum(weights)


def relevance(score: float, best: float) -> int:
    """0-100: the share of the best possible fused score."""
    return max(0, min(100, round(100 * score / best))) if best > 0 else 0


def snippet(text: str, width: int = 96) -> str:
    """The matched text on one line, trimmed to ``width`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "\u2026"


def _print_hits(args: argparse.Namespace, hits: list[Hit], best: float) -> int:
    if args.json:
        _dump({"results": [h.to_json() for h in hits]})
        return 0
    if not hits:
        print("no matches")
        return 0
    print("rank  relevance  source")
    for n, h in enumerate(hits, 1):
        page = f", page {h.page}" if h.page else ""
        print(f"{n:>4}  {relevance(h.score, best):>5}/100  {h.origin.link or h.source}{page}")
        if h.text.strip():
            print(f"{'':17}{snippet(h.text)}")
    return 0


async def _ask(args: argparse.Namespace, settings: Settings, svc: Any, scope: Scope) -> int:
    question = " ".join(args.question)
    image = _read_file(args.image, settings) if args.image else None
    name = args.image.name if args.image else "image"
    if args.json:
        answer = await svc.ask(question, scope, k=args.k, image=image, image_name=name)
        _dump(answer.to_json())
        if not answer.sources:
            await _say_if_empty(svc, settings, scope.space)
        return 0
    final: Answer | None = None
    async for part in svc.ask_stream(question, scope, k=args.k, image=image, image_name=name):
        if isinstance(part, Answer):
            final = part
        else:
            sys.stdout.write(part)
            sys.stdout.flush()
    assert final is not None
    print()
    if not final.sources:
        await _say_if_empty(svc, settings, scope.space)
    else:
        print("\nSources:")
        cited = set(final.citations)
        for n, h in enumerate(final.sources, 1):
            page = f", page {h.page}" if h.page else ""
            mark = "" if n in cited else "  (also retrieved)"
            print(f"  [{n}] {h.source}{page}{mark}")
            if h.thumbnail:
                print(f"       thumbnail: {h.thumbnail}")
    if final.usage.input_tokens or final.usage.output_tokens:
        print(f"\n({final.provider} {final.model}: {final.usage.input_tokens} in / "
              f"{final.usage.output_tokens} out tokens)", file=sys.stderr)
    return 0


async def _forget(args: argparse.Namespace, svc: Any, space: str) -> int:
    from core.errors import NotFound

    removed: list[str] = []
    missing: list[str] = []
    for ref in args.refs:
        try:
            removed += await svc.forget(space, ref)
        except NotFound:
            missing.append(ref)
    if args.json:
        _dump({"removed": removed, "not_found": missing})
    else:
        print(f"removed {len(removed)} item(s)")
        for ref in missing:
            print(f"  not found: {ref}")
    return 1 if missing and not removed else 0


if __name__ == "__main__":
    sys.exit(main())
