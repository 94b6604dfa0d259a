"""Events API listeners: mentions, DMs, auto-indexing, deletions, App Home."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import convert, render, replies
from bot.slack import messages as msg
from bot.slack.deps import Deps

log = logging.getLogger(__name__)

INDEXED_REACTION = "card_index_dividers"


def register(app: AsyncApp, deps: Deps) -> None:
    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        await replies.answer(
            deps,
            client,
            team=context.team_id or "",
            channel=event["channel"],
            user=event.get("user", ""),
            ts=event["ts"],
            thread_ts=event.get("thread_ts"),
            text=event.get("text", ""),
            files=event.get("files"),
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
        )

    @app.event("message")
    async def on_message(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        team = context.team_id or ""
        subtype = event.get("subtype")
        if subtype == "message_deleted":
            await _forget_message(deps, team, str(event.get("channel", "")),
                                  str(event.get("deleted_ts", "")))
            return
        if subtype not in convert.USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return
        if event.get("channel_type") == "im":
            await replies.answer(
                deps,
                client,
                team=team,
                channel=event["channel"],
                user=event["user"],
                ts=event["ts"],
                thread_ts=event.get("thread_ts"),
                text=event.get("text", ""),
                files=event.get("files"),
                bot_user_id=context.bot_user_id,
                bot_id=context.bot_id,
            )
            return
        files = convert.indexable_files(event.get("files"))
        if files:
            await _autoindex(deps, client, team, event, files)

    @app.event("file_deleted")
    async def on_file_deleted(event: dict[str, Any], context: AsyncBoltContext) -> None:
        space = convert.space_for(context.team_id or "")
        # file_deleted names only the file; message=None matches it in any message.
        removed = await deps.service.forget_origin(
            space, attachment=str(event["file_id"])
        )
        if removed:
            log.info("file %s deleted in Slack: removed %d item(s)", event["file_id"], len(removed))

    @app.event("app_home_opened")
    async def on_home(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        if event.get("tab", "home") != "home":
            return
        from bot.slack.backfill import home_blocks  # backfill imports this module

        stats = await deps.service.stats(convert.space_for(context.team_id or ""))
        view = render.home_view(stats)
        if await deps.is_admin(client, event["user"]):
            view["blocks"] += home_blocks()
        await client.views_publish(user_id=event["user"], view=view)


async def _forget_message(deps: Deps, team: str, channel: str, ts: str) -> None:
    if not ts:
        return
    # A ts is unique only within its channel: match both.
    removed = await deps.service.forget_origin(convert.space_for(team), message=ts,
                                               channel=channel or None)
    if removed:
        log.info("message %s deleted in Slack: removed %d item(s)", ts, len(removed))


async def _autoindex(
    deps: Deps,
    client: AsyncWebClient,
    team: str,
    event: dict[str, Any],
    files: list[Any],
) -> None:
    """Index files shared in channels an admin opted in (``/pixrag autoindex on``)."""
    space = convert.space_for(team)
    channel = event["channel"]
    if channel not in await deps.service.autoindex_channels(space):
        return
    if not deps.autoindex_allowed(team, channel):
        # No reaction tells the poster it was not indexed; the shortcut can still add it.
        log.warning("auto-index of %s/%s skipped: more than %d messages a minute here",
                    channel, event["ts"], deps.settings.slack.autoindex_per_minute)
        return
    async with deps.uploads(
        client, channel=channel, ts=event["ts"], author=event["user"], files=files
    ) as (uploads, problems):
        report = await deps.service.index_uploads(uploads, space) if uploads else None
    log.info(
        "auto-indexed %s/%s: %d item(s), %d problem(s)",
        channel,
        event["ts"],
        len(report.indexed) if report else 0,
        len(problems) + (len(report.failed) if report else 0),
    )
    if report and report.indexed:
        await replies.react(client, channel, event["ts"], INDEXED_REACTION)
    failed = [str(p) for p in problems]
    failed += [f"{f.source}: {f.error}" for f in (report.failed if report else [])]
    if failed:
        await client.chat_postEphemeral(
            channel=channel,
            user=event["user"],
            text=msg.ERROR.format(error=render.escape("; ".join(failed[:3]))),
        )
