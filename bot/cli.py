"""The ``pixrag`` command line: the operator's adapter over :mod:`core.service`.

Lives in ``bot`` (not ``core``) because it is an adapter like the chat bots, and because
``pixrag discord`` / ``pixrag slack`` must import them while ``core`` never may.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import Secrets, Settings, load_settings
from core.errors import PixragError
from core.types import Answer, Hit, Scope

log = logging.getLogger("pixrag")


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Global options are accepted before and after the command; after wins.
    d = None if top else argparse.SUPPRESS
    p.add_argument("--config", type=Path, default=d, help="config file (default ./config.toml)")
    p.add_argument("--data-dir", type=Path, default=d,
                   help="data directory (default $PIXRAG_DATA_DIR or ~/.local/share/pixrag)")
    p.add_argument("--space", default=d, help="space (tenant) to use (default: local)")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print one JSON document on stdout")
    p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="more logging on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixrag", description="Multimodal RAG over your images, slides and PDFs.")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        return p

    p = cmd("index", "index files and folders (recursive): images, PDFs, text/markdown")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--no-wait", action="store_true",
                   help="return once items are findable by image search; their text (OCR, "
                   "passages) is indexed by the next run or the bots (default: wait for both)")
    p = cmd("search", "text -> best images/pages/chunks")
    p.add_argument("text", nargs="+")
    p.add_argument("-k", type=int, default=None)
    p = cmd("similar", "reverse image search from a file")
    p.add_argument("image", type=Path)
    p.add_argument("-k", type=int, default=None)
    p = cmd("ask", "retrieve + answer, with sources")
    p.add_argument("question", nargs="*")
    p.add_argument("-k", type=int, default=None)
    p.add_argument("--image", type=Path, default=None, help="ask about this image")
    p = cmd("forget", "remove items (and their blobs) by id or by source path")
    p.add_argument("refs", nargs="+")
    cmd("stats", "counts per kind, model, store location")
    p = cmd("eval", "recall@1/5 and MRR of labelled queries")
    p.add_argument("file", type=Path)
    p.add_argument("-k", type=int, default=10)
    p = cmd("reindex", "re-embed what a model change requires, beside the live index")
    p.add_argument("--force", action="store_true",
                   help="re-embed images even when the model did not change")
    p = cmd("migrate", "copy this index into another storage configuration (no re-embedding)")
    p.add_argument("--to", type=Path, required=True, metavar="CONFIG",
                   help="config file of the target (e.g. server mode: [store] url, [catalog] "
                   "url, [blobs] url); PIXRAG_* variables apply to the source only")
    p = cmd("check", "compare catalog, vectors, keyword index and blobs; report problems")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed (re-embed, rebuild rows, drop orphans)")
    p = cmd("feedback", "chat feedback (Helpful / Not helpful)")
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", type=Path, default=None, help="write to this file (default stdout)")
    p.add_argument("--all-spaces", action="store_true", help="export every space")
    p = cmd("discord", "run the Discord bot (DISCORD_TOKEN from the environment)")
    p.add_argument("--sync", action="store_true", default=None,
                   help="sync slash commands now (globally, or to [discord] sync_guild)")
    cmd("slack", "run the Slack app (SLACK_BOT_TOKEN + SLACK_APP_TOKEN or SIGNING_SECRET)")
    return parser


def _setup_logging(verbose: int, settings: Settings | None, command: str) -> None:
    long_running = command in ("discord", "slack")
    level = logging.DEBUG if verbose > 1 else logging.INFO if (verbose or long_running) \
        else logging.WARNING
    if settings is not None and long_running and not verbose:
        level = logging.getLevelName(settings.log_level.upper())
        level = level if isinstance(level, int) else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "chromadb", "urllib3", "discord.gateway", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _quiet_libraries() -> None:
    # Environment, not imports: transformers reads these when (and only if) a command loads a
    # model; importing it here would cost every command seconds.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # The hub adds its own stderr handler when imported and also propagates to ours: every
    # warning printed twice. The logger object exists before the import: no import needed.
    logging.getLogger("huggingface_hub").propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings(args.config, data_dir=args.data_dir or _env_data_dir())
        _setup_logging(args.verbose, settings, args.command)
        _quiet_libraries()
        return asyncio.run(_run(args, settings))
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
    print(f"pixrag: error: {message}", file=sys.stderr)
    return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from core.app import open_service

    secrets = Secrets.from_env()
    space = args.space or "local"
    _require_tokens(args.command, settings, secrets)  # before minutes of model loading
    if args.command == "reindex":
        async with open_service(settings, secrets, check_models=False) as svc:
            from core.maintenance import reindex

            report = await reindex(svc.c, progress=_progress_bar(args), force=args.force)
            return _print_index(args, report)
    if args.command == "migrate":
        return await _migrate(args, settings, secrets)
    if args.command == "check":
        async with open_service(settings, secrets, check_models=False) as svc:
            return _print_check(args, await svc.check(repair=args.repair))
    async with open_service(settings, secrets) as svc:
        scope = Scope(space=space, admin=True)  # the CLI is the operator's tool
        if args.command == "index":
            report = await svc.index_paths(args.paths, space, progress=_progress_bar(args),
                                           wait=not args.no_wait,
                                           text_progress=_progress_bar(args, "text"))
            return _print_index(args, report)
        if args.command == "search":
            hits = await svc.search(" ".join(args.text), scope, args.k)
            return _print_hits(args, hits)
        if args.command == "similar":
            data = _read_file(args.image)
            hits = await svc.similar(data, scope, args.k, name=args.image.name)
            return _print_hits(args, hits)
        if args.command == "ask":
            return await _ask(args, svc, scope)
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
                for name, n in stats.spaces.items():
                    print(f"  {name}: {n}")
            return 0
        if args.command == "eval":
            from core.evaluate import run_eval

            result = await run_eval(svc, scope, args.file, k=args.k)
            if args.json:
                _dump(result)
            else:
                print(f"n={result['n']}  recall@1={result['recall@1']:.3f}  "
                      f"recall@5={result['recall@5']:.3f}  mrr={result['mrr']:.3f}")
                for q in result["per_query"]:
                    label = q.get("query") or q.get("query_image")
                    print(f"  rank {q['rank'] or '-':>3}  {label}")
            return 0
        if args.command == "feedback":
            entries = await svc.export_feedback(None if args.all_spaces else space)
            text = json.dumps(entries, indent=2, ensure_ascii=False)
            if args.out:
                args.out.write_text(text + "\n", encoding="utf-8")
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


def _require_tokens(command: str, settings: Settings, secrets: Secrets) -> None:
    from core.errors import ConfigError

    needed = {"discord": ["DISCORD_TOKEN"],
              "slack": ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN" if settings.slack.mode == "socket"
                        else "SLACK_SIGNING_SECRET"]}.get(command, [])
    for name in needed:
        if not secrets.get(name):
            raise ConfigError(name, f"environment variable not set (see docs/{command.upper()}.md)")


def _read_file(path: Path) -> bytes:
    from core.errors import UnsupportedInput

    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnsupportedInput(str(path), f"cannot read file ({exc.strerror or exc})") from exc


def _progress_bar(args: argparse.Namespace, what: str = "file") -> Any:
    if args.json or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit=what, file=sys.stderr, dynamic_ncols=True,
                       desc="text" if what == "text" else "files")
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _dump(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=None))


def _print_index(args: argparse.Namespace, report: Any) -> int:
    if args.json:
        _dump(report.to_json())
        return 0
    files = len({i.source for i in report.indexed})
    print(f"indexed {len(report.indexed)} item(s) from {files} file(s), "
          f"{len(report.skipped)} skipped, {len(report.failed)} failed")
    for s in report.skipped:
        if s.reason.startswith("already indexed"):
            continue
        print(f"  skipped {s.source}: {s.reason}")
    already = sum(1 for s in report.skipped if s.reason.startswith("already indexed"))
    if already:
        print(f"  {already} file(s) already indexed")
    for f in report.failed:
        print(f"  FAILED {f.source}: {f.error}")
    for w in getattr(report, "warnings", []):
        print(f"  warning {w.source}: {w.error}")
    return 0


async def _migrate(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    from core.migrate import migrate
    from core.textembed import build_text_embedder

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


def _print_check(args: argparse.Namespace, report: dict[str, Any]) -> int:
    if args.json:
        _dump(report)
    else:
        if report["ok"]:
            print(f"ok: {report['items']} item(s), catalog, vectors, keyword index and "
                  "blobs agree")
        for p in report["problems"]:
            fixed = "  [repaired]" if p["repaired"] else ""
            where = p["source"] or p["item"]
            print(f"  {p['kind']}: {where}: {p['detail']}{fixed}")
        if report["problems"] and not report["repaired"]:
            print("run `pixrag check --repair` to fix what can be fixed")
    unrepaired = [p for p in report["problems"] if not p["repaired"]]
    return 0 if not unrepaired else 1


def _print_hits(args: argparse.Namespace, hits: list[Hit]) -> int:
    if args.json:
        _dump({"results": [h.to_json() for h in hits]})
        return 0
    if not hits:
        print("no matches")
    for n, h in enumerate(hits, 1):
        page = f" p.{h.page}" if h.page else ""
        why = ", ".join(f"{k} {v:.2f}" for k, v in h.signals.items())
        print(f"{n:>2}. {h.score:.4f}  {h.kind:<5} {h.source}{page}  [{why}]")
    return 0


async def _ask(args: argparse.Namespace, svc: Any, scope: Scope) -> int:
    question = " ".join(args.question)
    image = _read_file(args.image) if args.image else None
    name = args.image.name if args.image else "image"
    if args.json:
        answer = await svc.ask(question, scope, k=args.k, image=image, image_name=name)
        _dump(answer.to_json())
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
    if final.sources:
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
