"""Core results -> Block Kit, within Slack's limits.

Limits (Block Kit reference): 50 blocks per message, 3000 characters per section text,
10 elements per context block, 2000 characters per button value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.slack import messages as msg
from core.types import Answer, Hit, IndexReport, Stats

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_VALUE = 2000
MAX_FALLBACK_TEXT = 3000
MAX_SNIPPET = 280

FEEDBACK_UP = "pixrag_feedback_up"
FEEDBACK_DOWN = "pixrag_feedback_down"
INDEX_MODAL = "pixrag_index_modal"
INDEX_BLOCK = "pixrag_files"
INDEX_ACTION = "pixrag_file_input"

Block = dict[str, Any]


def escape(text: str) -> str:
    """Slack mrkdwn control characters; retrieved text must not become mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(msg.TRUNCATED)] + msg.TRUNCATED


def split_text(text: str, limit: int = MAX_SECTION) -> list[str]:
    """Split on paragraph/line/space boundaries into pieces of at most ``limit`` chars."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = max(rest.rfind(sep, 0, limit) for sep in ("\n\n", "\n", " "))
        if cut <= limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def context(texts: Sequence[str]) -> Block:
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": clip(t, MAX_SECTION)} for t in texts[:MAX_CONTEXT_ELEMENTS]
        ],
    }


def hit_label(hit: Hit) -> str:
    """File name linked to the message it came from, when there is a link."""
    name = escape(hit.name or hit.source.rsplit("/", 1)[-1] or hit.id)
    link = hit.origin.link or (hit.source if hit.source.startswith(("http://", "https://")) else "")
    label = f"<{link}|{name}>" if link and "|" not in link and ">" not in link else name
    if hit.page is not None:
        label += f" (page {hit.page})"
    return label


def hit_line(n: int, hit: Hit) -> str:
    return f"*[{n}]* {hit_label(hit)} · {hit.kind} · score {hit.score:.2f}"


def why(hit: Hit) -> list[str]:
    """Why it matched, one context element per signal (at most 10)."""
    return [f"{escape(k)} {v:.2f}" for k, v in list(hit.signals.items())[:MAX_CONTEXT_ELEMENTS]]


def feedback_value(question: str, source_ids: Sequence[str]) -> str:
    """Button value with what ``record_feedback`` needs, shortened to Slack's 2000 chars."""
    ids = list(source_ids)
    while True:
        value = json.dumps({"q": question, "s": ids}, ensure_ascii=False, separators=(",", ":"))
        excess = len(value) - MAX_BUTTON_VALUE
        if excess <= 0:
            return value
        if len(question) > 200:  # shorten the question first, it is only a label for eval
            question = question[: max(200, len(question) - excess - 3)]
        elif ids:
            ids.pop()
        else:
            question = question[: max(0, len(question) - excess)]


def feedback_block(question: str, hits: Sequence[Hit]) -> Block:
    value = feedback_value(question, [h.id for h in hits])
    return {
        "type": "actions",
        "block_id": "pixrag_feedback",
        "elements": [
            {
                "type": "button",
                "action_id": FEEDBACK_UP,
                "text": {"type": "plain_text", "text": msg.FEEDBACK_UP},
                "value": value,
            },
            {
                "type": "button",
                "action_id": FEEDBACK_DOWN,
                "text": {"type": "plain_text", "text": msg.FEEDBACK_DOWN},
                "value": value,
            },
        ],
    }


def _fit(blocks: list[Block], tail: list[Block]) -> list[Block]:
    """Keep ``tail`` (feedback buttons) and as many leading blocks as the 50-block limit allows."""
    room = MAX_BLOCKS - len(tail)
    if len(blocks) > room:
        blocks = [*blocks[: room - 1], context([msg.TRUNCATED])]
    return blocks + tail


def answer_message(answer: Answer, question: str) -> tuple[str, list[Block]]:
    """``(fallback text, blocks)`` for an answer with numbered sources and feedback buttons."""
    if answer.status == "no_model" and answer.sources:
        # Retrieval only: the sources with their snippets and scores are the whole reply.
        return hits_message(answer.sources, msg.NO_MODEL_HEADER, question)
    blocks: list[Block] = []
    if answer.status == "no_sources" and not answer.sources:
        body = answer.text or msg.NO_SOURCES
    elif answer.status == "unavailable":
        body = f"{msg.UNAVAILABLE}\n{answer.text}".strip()
    else:
        body = answer.text
    # Model output is untrusted: escaping keeps it from pinging @channel or faking links.
    blocks.extend(section(piece) for piece in split_text(escape(body or msg.NO_SOURCES)))
    if answer.sources:
        lines = [hit_line(n, h) for n, h in enumerate(answer.sources, 1)]
        sources = msg.SOURCES_HEADER + "\n" + "\n".join(lines)
        blocks.extend(section(piece) for piece in split_text(sources))
    tail = [feedback_block(question, answer.sources)] if answer.sources else []
    # The fallback text is mrkdwn too (notifications): escaped like the blocks.
    return clip(escape(body or msg.NO_SOURCES), MAX_FALLBACK_TEXT), _fit(blocks, tail)


def hits_message(hits: Sequence[Hit], header: str, question: str) -> tuple[str, list[Block]]:
    """Search / similar results: one section per hit with a snippet, why it matched, buttons."""
    if not hits:
        return msg.NO_RESULTS, [section(msg.NO_RESULTS)]
    blocks: list[Block] = [section(header)]
    for n, hit in enumerate(hits, 1):
        text = hit_line(n, hit)
        if hit.text:
            text += "\n> " + escape(clip(" ".join(hit.text.split()), MAX_SNIPPET))
        blocks.append(section(text))
        reasons = why(hit)
        if reasons:
            blocks.append(context(reasons))
    fallback = header + " " + escape(", ".join(h.name or h.source for h in hits))
    return clip(fallback, MAX_FALLBACK_TEXT), _fit(blocks, [feedback_block(question, hits)])


def index_report_text(report: IndexReport) -> str:
    skipped = failed = ""
    if report.skipped:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in report.skipped[:3])
        skipped = msg.INDEX_SKIPPED.format(n=len(report.skipped), reasons=escape(reasons))
    if report.failed:
        reasons = "; ".join(f"{f.source}: {f.error}" for f in report.failed[:3])
        failed = msg.INDEX_FAILED.format(n=len(report.failed), reasons=escape(reasons))
    text = msg.INDEX_REPORT.format(indexed=len(report.indexed), skipped=skipped, failed=failed)
    return clip(text, MAX_SECTION)


def _kinds(stats: Stats) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(stats.by_kind.items()) if n)


def stats_text(stats: Stats) -> str:
    return msg.STATS.format(items=stats.items, kinds=_kinds(stats) or "none", model=stats.model)


def home_view(stats: Stats) -> dict[str, Any]:
    kinds = _kinds(stats)
    text_model = f"\n*Text model:* `{escape(stats.text_model)}`" if stats.text_model else ""
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": msg.HOME_TITLE}},
            section(msg.HOME_INTRO),
            section(
                msg.HOME_STATS.format(
                    items=stats.items,
                    kinds=f" ({kinds})" if kinds else "",
                    model=escape(stats.model),
                    text_model=text_model,
                )
            ),
            {"type": "divider"},
            section(msg.HOME_HOWTO),
        ],
    }


def index_modal(channel: str, private: bool) -> dict[str, Any]:
    """Modal with a file input; ``private_metadata`` remembers where it was opened."""
    help_text = (
        msg.INDEX_MODAL_HELP_PRIVATE.format(channel=channel)
        if private
        else msg.INDEX_MODAL_HELP_PUBLIC
    )
    return {
        "type": "modal",
        "callback_id": INDEX_MODAL,
        "private_metadata": json.dumps({"channel": channel, "private": private}),
        "title": {"type": "plain_text", "text": msg.INDEX_MODAL_TITLE},
        "submit": {"type": "plain_text", "text": msg.INDEX_MODAL_SUBMIT},
        "blocks": [
            section(help_text),
            {
                "type": "input",
                "block_id": INDEX_BLOCK,
                "label": {"type": "plain_text", "text": msg.INDEX_MODAL_LABEL},
                "element": {
                    "type": "file_input",
                    "action_id": INDEX_ACTION,
                    "filetypes": ["png", "jpg", "jpeg", "gif", "webp", "pdf", "txt", "md", "csv",
                                  "tsv"],
                    "max_files": 10,
                },
            },
        ],
    }
