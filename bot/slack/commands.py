"""Slash commands: ``/ask`` and ``/pixrag index|forget|autoindex|stats``. ``ack()`` first."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import backfill, convert, render
from bot.slack import messages as msg
from bot.slack.deps import Deps
from core.errors import NotFound, PermissionDenied
from core.types import Scope

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    @app.command("/ask")
    async def on_ask(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        question = command.get("text", "").strip()
        if not question:
            await ack(msg.ASK_USAGE)
            return
        await ack(msg.ASK_ACK.format(question=render.escape(question)))
        team, user, channel = context.team_id or "", command["user_id"], command["channel_id"]
        deps.check_rate(team, user)
        result = await deps.service.ask(question, await deps.scope(client, team, channel))
        fallback, blocks = render.answer_message(result, question)
        asked = render.context([msg.ASKED.format(user=user, question=render.escape(question))])
        # Through response_url: it works in channels the bot was never invited to.
        await respond(
            text=fallback,
            blocks=[asked, *blocks][: render.MAX_BLOCKS],
            response_type="in_channel",
        )

    @app.command("/pixrag")
    async def on_pixrag(
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        sub, arg = convert.command_args(command.get("text", ""))
        team, user, channel = context.team_id or "", command["user_id"], command["channel_id"]
        space = convert.space_for(team)
        if sub == "index":
            await ack()
            private = (await deps.channels.get(client, channel)).private
            await client.views_open(
                trigger_id=command["trigger_id"], view=render.index_modal(channel, private)
            )
        elif sub == "forget" and arg:
            await ack()
            removed = await _forget(deps, client, space, channel, user, arg)
            await respond(msg.FORGET_DONE.format(n=len(removed)), response_type="ephemeral")
        elif sub == "autoindex" and arg.lower() in ("on", "off"):
            await ack()
            if not await deps.is_admin(client, user):
                raise PermissionDenied(msg.NOT_ADMIN)
            on = arg.lower() == "on"
            await deps.service.set_autoindex(space, channel, on)
            log.info("autoindex %s for %s in %s by %s", arg, channel, space, user)
            if on:
                private = (await deps.channels.get(client, channel)).private
                note = msg.AUTOINDEX_PRIVATE if private else ""
                text = msg.AUTOINDEX_ON.format(channel=channel, private=note)
            else:
                text = msg.AUTOINDEX_OFF.format(channel=channel)
            # In the channel: everyone there should know their files are being indexed.
            await respond(text, response_type="in_channel")
        elif sub == "stats":
            await ack()
            stats = await deps.service.stats(space)
            await respond(render.stats_text(stats), response_type="ephemeral")
        elif sub == "backfill":
            await ack()
            text = await backfill.command(deps, client, team=team, user=user, channel=channel,
                                          arg=arg)
            await respond(text, response_type="ephemeral")
        elif sub == "forget":
            await ack(msg.FORGET_USAGE)
        else:
            await ack(msg.PIXRAG_USAGE)


async def _forget(
    deps: Deps, client: AsyncWebClient, space: str, channel: str, user: str, ref: str
) -> list[str]:
    """Remove by item id or message link, as far as the asker can see from ``channel``
    (admins: the whole workspace); only the author or an admin may."""
    admin = await deps.is_admin(client, user)
    scope = Scope(space, channel, admin, shared=(await deps.channels.get(client, channel)).shared)
    link = convert.parse_message_link(ref)
    if link:
        link_channel, ts = link
        if not admin and await _author(client, link_channel, ts) != user:
            raise PermissionDenied(msg.NOT_AUTHOR)
        removed = await deps.service.forget_origin(
            space, message=ts, channel=link_channel, scope=scope
        )
        if not removed:
            raise NotFound(msg.FORGET_NOT_FOUND.format(ref=ref))
        return removed
    item_id = ref.strip("<>` ")
    # Core decides visibility: a private item seen from elsewhere does not exist here.
    item = await deps.service.get_item(scope, item_id)
    if item is None:
        raise NotFound(msg.FORGET_NOT_FOUND.format(ref=item_id))
    if not admin and item.origin.author != user:
        raise PermissionDenied(msg.NOT_AUTHOR)
    return await deps.service.forget(space, item_id, scope=scope)


async def _author(client: AsyncWebClient, channel: str, ts: str) -> str:
    try:
        resp = await client.conversations_replies(channel=channel, ts=ts, limit=1)
    except SlackApiError as exc:
        log.info("conversations.replies %s/%s failed: %s", channel, ts, exc.response.get("error"))
        return ""
    found = resp.get("messages") or []
    return str(found[0].get("user", "")) if found else ""
