"""The two reply flows shared by mentions, DMs and shortcuts: answer, and find similar."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import convert, render
from bot.slack import messages as msg
from bot.slack.deps import Deps, thread_history
from core.media import pdf
from core.types import Answer, Hit, Turn

log = logging.getLogger(__name__)

STREAM_EDIT_INTERVAL_S = 1.5
QUERY_PAGE_PX = 1024  # a PDF query's first page, rendered just large enough for CLIP and OCR


async def react(client: AsyncWebClient, channel: str, ts: str, name: str = "eyes") -> None:
    """Acknowledge visibly at once; a failed reaction must not stop the answer."""
    try:
        await client.reactions_add(channel=channel, timestamp=ts, name=name)
    except SlackApiError as exc:
        log.info("reactions.add %s failed: %s", name, exc.response.get("error"))


async def answer(
    deps: Deps,
    client: AsyncWebClient,
    *,
    team: str,
    channel: str,
    user: str,
    ts: str,
    thread_ts: str | None,
    text: str,
    files: Sequence[Mapping[str, Any]] | None,
    bot_user_id: str | None,
    bot_id: str | None = None,
) -> None:
    """Answer a mention / DM in its thread, with citations, thumbnails and feedback buttons."""
    await react(client, channel, ts)
    root = thread_ts or ts
    question = convert.strip_mentions(text)
    queries = convert.query_files(files)
    if not question and not queries:
        await client.chat_postMessage(channel=channel, thread_ts=root, text=msg.EMPTY_QUESTION)
        return
    deps.check_rate(team, user)
    image: bytes | None = None
    image_name = "image"
    if queries:
        image_name = convert.file_name(queries[0])
        image = await query_image(queries[0], await deps.fetch(queries[0]))
    history: list[Turn] = []
    if thread_ts and thread_ts != ts:
        history = await thread_history(
            client, channel=channel, thread_ts=thread_ts, before_ts=ts, asker=user,
            bot_user_id=bot_user_id, bot_id=bot_id,
        )
    # An image alone is a question too: core asks "what is in this image?" and searches by it.
    stream = deps.service.ask_stream(
        question,
        await deps.scope(client, team, channel),
        image=image,
        image_name=image_name,
        history=history,
    )
    result, posted = await _stream_into_thread(client, channel, root, stream)
    fallback, blocks = render.answer_message(result, question or msg.DEFAULT_IMAGE_QUESTION)
    if posted:
        await client.chat_update(channel=channel, ts=posted, text=fallback, blocks=blocks)
    else:
        await client.chat_postMessage(
            channel=channel, thread_ts=root, text=fallback, blocks=blocks, unfurl_links=False
        )
    shown = result.cited or result.sources
    numbers = {h.id: n for n, h in enumerate(result.sources, 1)}
    await upload_thumbnails(deps, client, channel, root, [(numbers[h.id], h) for h in shown])


async def query_image(file: Mapping[str, Any], data: bytes) -> bytes:
    """A PDF is searched by its first page: core's reverse search takes images."""
    if not convert.is_pdf(file):
        return data
    return await asyncio.to_thread(_first_page_png, data, convert.file_name(file))


def _first_page_png(data: bytes, name: str) -> bytes:
    (page,) = pdf.render_pages(data, name, [1], max_side=QUERY_PAGE_PX)
    out = io.BytesIO()
    page.image.save(out, "PNG")
    return out.getvalue()


async def _stream_into_thread(
    client: AsyncWebClient,
    channel: str,
    root: str,
    stream: AsyncIterator[str | Answer],
) -> tuple[Answer, str | None]:
    """Show the answer as the model writes it: one message, edited at most every 1.5 s.

    Returns the final Answer and the ts of the message already posted (None if none was).
    """
    text, posted, last = "", None, 0.0
    async with contextlib.aclosing(stream) as parts:  # type: ignore[type-var]
        async for part in parts:
            if isinstance(part, Answer):
                return part, posted
            text += part
            preview = render.clip(render.escape(text), render.MAX_SECTION - 2) + " …"
            now = time.monotonic()
            if posted is None:
                resp = await client.chat_postMessage(
                    channel=channel, thread_ts=root, text=preview, unfurl_links=False
                )
                posted, last = str(resp["ts"]), now
            elif now - last >= STREAM_EDIT_INTERVAL_S:  # chat.update is rate limited (~1/s)
                await client.chat_update(channel=channel, ts=posted, text=preview)
                last = now
    raise RuntimeError("answer stream ended without a final Answer")


async def similar(
    deps: Deps,
    client: AsyncWebClient,
    *,
    team: str,
    channel: str,
    user: str,
    message: Mapping[str, Any],
) -> bool:
    """Reverse search with the first image of ``message``, results in its thread.

    Returns False when the message has no usable file (the caller says so).
    """
    queries = convert.query_files(message.get("files"))
    if not queries:
        return False
    deps.check_rate(team, user)
    ts = str(message.get("ts", ""))
    root = str(message.get("thread_ts") or ts)
    await react(client, channel, ts)
    name = convert.file_name(queries[0])
    data = await query_image(queries[0], await deps.fetch(queries[0]))
    hits = await deps.service.similar(data, await deps.scope(client, team, channel), name=name)
    # The query image itself may be indexed (auto-index): it is not a useful result.
    hits = [h for h in hits if h.origin.message != ts]
    fallback, blocks = render.hits_message(
        hits, msg.SIMILAR_HEADER.format(name=render.escape(name)), f"similar:{name}"
    )
    await client.chat_postMessage(
        channel=channel, thread_ts=root, text=fallback, blocks=blocks, unfurl_links=False
    )
    await upload_thumbnails(deps, client, channel, root, list(enumerate(hits, 1)))
    return True


async def upload_thumbnails(
    deps: Deps,
    client: AsyncWebClient,
    channel: str,
    thread_ts: str,
    numbered: Sequence[tuple[int, Hit]],
) -> None:
    """Source thumbnails into the thread (files_upload_v2), numbered like the citations."""
    uploads: list[dict[str, Any]] = []
    for n, hit in numbered:
        if len(uploads) >= deps.settings.slack.max_thumbnails:
            break
        if hit.thumbnail and Path(hit.thumbnail).is_file():
            label = hit.name or hit.id
            uploads.append(
                {"file": hit.thumbnail, "filename": f"{n}-{Path(label).stem}.jpg",
                 "title": f"[{n}] {label}"}
            )
    if not uploads:
        return
    await client.files_upload_v2(
        file_uploads=uploads,
        channel=channel,
        thread_ts=thread_ts,
        initial_comment=msg.THUMBNAILS_COMMENT,
    )
