"""Shortcuts, the "add files" modal and the feedback buttons."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import convert, render, replies
from bot.slack import messages as msg
from bot.slack.deps import Deps
from core.errors import UnsupportedInput
from core.types import Upload

log = logging.getLogger(__name__)

SIMILAR_SHORTCUT = "pixrag_similar"
INDEX_MESSAGE_SHORTCUT = "pixrag_index_message"
ADD_FILES_SHORTCUT = "pixrag_add_files"


def register(app: AsyncApp, deps: Deps) -> None:
    @app.message_shortcut(SIMILAR_SHORTCUT)
    async def on_similar(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        found = await replies.similar(
            deps,
            client,
            team=context.team_id or "",
            channel=body["channel"]["id"],
            user=body["user"]["id"],
            message=body["message"],
        )
        if not found:
            await respond(msg.NO_FILES, response_type="ephemeral")

    @app.message_shortcut(INDEX_MESSAGE_SHORTCUT)
    async def on_index_message(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        message = body["message"]
        files = convert.indexable_files(message.get("files"))
        if not files:
            await respond(msg.NO_FILES, response_type="ephemeral")
            return
        async with deps.uploads(
            client,
            channel=body["channel"]["id"],
            ts=str(message["ts"]),
            author=str(message.get("user", "")),
            files=files,
        ) as (uploads, problems):
            await _index_and_report(deps, context, uploads, problems, respond=respond)

    @app.shortcut(ADD_FILES_SHORTCUT)
    async def on_add_files(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=render.index_modal("", False))

    @app.view(render.INDEX_MODAL)
    async def on_index_modal(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        user = body["user"]["id"]
        meta = json.loads(view.get("private_metadata") or "{}")
        channel, private = str(meta.get("channel", "")), bool(meta.get("private"))
        state = view["state"]["values"][render.INDEX_BLOCK][render.INDEX_ACTION]
        uploads: list[Upload] = []
        problems: list[UnsupportedInput] = []
        files = []
        for file in state.get("files") or []:
            if not file.get("url_private"):  # older payloads carry only the id
                file = (await client.files_info(file=file["id"]))["file"]
            files.append(file)
        async with deps.fetched(files) as datas:
            for file, data in zip(files, datas, strict=True):
                if isinstance(data, UnsupportedInput):
                    problems.append(data)
                    continue
                origin = convert.origin_for(
                    channel=channel, message="", file_id=str(file["id"]), author=user,
                    private=private, link=str(file.get("permalink", "")),
                )
                uploads.append(Upload(name=convert.file_name(file), data=data,
                                      source=origin.link or convert.file_name(file),
                                      origin=origin))
            text = await _index_and_report(deps, context, uploads, problems)
        # A modal has no thread to answer in: the report goes to the user's DM with the app.
        await client.chat_postMessage(channel=user, text=text)

    @app.action(render.FEEDBACK_UP)
    @app.action(render.FEEDBACK_DOWN)
    async def on_feedback(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        # A click is a request: spam must not flood the stored feedback.
        deps.check_rate(context.team_id or "", body["user"]["id"])
        ref = convert.parse_feedback(action["value"])
        await deps.service.record_feedback(
            convert.space_for(context.team_id or ""),
            question=ref.question,
            verdict="up" if action["action_id"] == render.FEEDBACK_UP else "down",
            source_ids=ref.source_ids,
            user=body["user"]["id"],
            platform=convert.PLATFORM,
        )
        await respond(msg.FEEDBACK_THANKS, response_type="ephemeral", replace_original=False)


async def _index_and_report(
    deps: Deps,
    context: AsyncBoltContext,
    uploads: list[Upload],
    problems: list[UnsupportedInput],
    *,
    respond: AsyncRespond | None = None,
) -> str:
    space = convert.space_for(context.team_id or "")
    report = await deps.service.index_uploads(uploads, space) if uploads else None
    text = render.index_report_text(report) if report else msg.NO_FILES
    if problems:
        text += "\n" + msg.ERROR.format(error=render.escape("; ".join(map(str, problems[:3]))))
    log.info("indexed %d upload(s) into %s", len(uploads), space)
    if respond is not None:
        await respond(text, response_type="ephemeral")
    return text
