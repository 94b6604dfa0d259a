"""The reply flows behind commands and buttons: each converts, calls core, renders.

Item-level access (is this item visible here?) is core's: ``get_item``, ``similar_to_item``
and ``forget(..., scope=...)`` take the asker's Scope; nothing here re-implements the rule.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import discord

from bot.discord import access, convert, download, messages, render, views
from bot.discord.convert import Refused
from bot.discord.deps import Deps
from bot.discord.markdown import code, escape
from bot.discord.shown import shown_from_message
from core.errors import NotFound
from core.types import Answer, Hit, IndexReport, Scope, Upload

log = logging.getLogger(__name__)

MAX_BUTTON_RESULTS = 5


async def send_results(
    deps: Deps, interaction: discord.Interaction, query: str, hits: list[Hit]
) -> None:
    """The gallery reply (after a defer): embeds + thumbnails + buttons."""
    if not hits:
        await interaction.followup.send(messages.NO_RESULTS)
        return
    shown = render.gallery(query, hits, deps.settings.discord.max_thumbnails)
    token = deps.shown.remember(query, shown.ids)
    view = views.result_view(token, similar_seeds(hits[: len(shown.ids)]))
    await interaction.followup.send(
        content=shown.content, embeds=shown.embeds, files=shown.files, view=view
    )


def similar_seeds(hits: list[Hit]) -> list[tuple[int, str]]:
    """(result number, item id) of shown results that have an image to search from."""
    seeds = [(n, h.id) for n, h in enumerate(hits, 1) if h.kind in ("image", "page")]
    return seeds[:MAX_BUTTON_RESULTS]


def report_text(report: IndexReport) -> str:
    lines = [messages.INDEXED.format(indexed=len(report.indexed))]
    lines += [
        messages.INDEX_SKIPPED.format(source=code(s.source), reason=escape(s.reason))
        for s in report.skipped
    ]
    lines += [
        messages.INDEX_FAILED.format(source=code(f.source), error=escape(f.error))
        for f in report.failed
    ]
    return render.split_text("\n".join(lines), render.CONTENT_LIMIT)[0]


def query_image(attachments: list[discord.Attachment]) -> discord.Attachment:
    images = [a for a in attachments if convert.is_image(a)]
    if not images:
        raise Refused(messages.MESSAGE_HAS_NO_QUERY_IMAGE)
    return images[0]


def check_image(deps: Deps, image: discord.Attachment) -> None:
    if not convert.is_image(image):
        raise Refused(messages.NOT_AN_IMAGE.format(name=code(image.filename)))
    convert.check_attachments([image], deps.settings.discord)


async def similar_to(
    deps: Deps, interaction: discord.Interaction, image: discord.Attachment
) -> None:
    """Reverse search by an attachment (after a defer); the download waits for room."""
    cfg = deps.settings.discord
    async with download.admitted(deps.service.admission, [image], cfg,
                                  query=True) as (data,):
        scope = convert.scope_for(interaction)
        hits = await deps.service.similar(data, scope, name=image.filename)
    await send_results(deps, interaction, f"similar to {image.filename}", hits)


async def ask(
    deps: Deps,
    interaction: discord.Interaction,
    question: str,
    image: discord.Attachment | None,
) -> None:
    scope = convert.scope_for(interaction)
    if image is None:
        await stream_answer(deps, interaction, question, scope, image=None, image_name="image")
        return
    cfg = deps.settings.discord
    async with download.admitted(deps.service.admission, [image], cfg,
                                  query=True) as (data,):
        await stream_answer(
            deps, interaction, question, scope, image=data, image_name=image.filename
        )


async def stream_answer(
    deps: Deps,
    interaction: discord.Interaction,
    question: str,
    scope: Scope,
    *,
    image: bytes | None,
    image_name: str,
) -> None:
    """Edit the deferred reply as the answer grows (throttled), then render the final answer."""
    text = ""
    final: Answer | None = None
    last_edit = time.monotonic()
    stream = deps.service.ask_stream(question, scope, image=image, image_name=image_name)
    async for part in stream:
        if isinstance(part, Answer):
            final = part
            continue
        text += part
        now = time.monotonic()
        if now - last_edit >= deps.stream_interval:
            last_edit = now
            await interaction.edit_original_response(content=render.streaming(question, text))
    if final is None:  # the stream contract says the Answer comes last; treat absence as a bug
        raise RuntimeError("ask_stream ended without an Answer")
    pieces = render.answer_pieces(question, final, deps.settings.discord.max_thumbnails)
    first = pieces[0]
    token = deps.shown.remember(question, first.ids)
    view = views.result_view(token, similar_seeds(final.sources[: len(first.ids)]))
    await interaction.edit_original_response(
        content=first.content, embeds=first.embeds, attachments=first.files, view=view
    )
    for piece in pieces[1:]:
        await interaction.followup.send(piece.content)


async def index(
    deps: Deps,
    interaction: discord.Interaction,
    files: list[discord.Attachment],
    linked: discord.Message | None,
) -> IndexReport:
    """Index slash-command files and a linked message's files under one admission ticket
    (two tickets taken one after the other could wait on each other)."""
    cfg = deps.settings.discord
    from_link = [a for a in linked.attachments if convert.is_indexable(a)] if linked else []
    if linked is not None and not from_link:
        raise Refused(messages.MESSAGE_HAS_NO_IMAGES)
    everything = files + from_link
    async with download.admitted(deps.service.admission, everything, cfg) as datas:
        uploads = [
            Upload(a.filename, d, a.filename, convert.interaction_origin(interaction, a))
            for a, d in zip(files, datas, strict=False)
        ]
        if linked is not None:
            uploads += [
                Upload(a.filename, d, linked.jump_url, convert.origin_for(linked, a))
                for a, d in zip(from_link, datas[len(files):], strict=True)
            ]
        return await deps.service.index_uploads(uploads, convert.scope_for(interaction).space)


async def index_message(
    deps: Deps, interaction: discord.Interaction, message: discord.Message
) -> IndexReport:
    atts = [a for a in message.attachments if convert.is_indexable(a)]
    cfg = deps.settings.discord
    async with download.message_uploads(deps.service.admission, message, atts, cfg) as uploads:
        space = convert.space_for(interaction.guild_id, interaction.user.id)
        return await deps.service.index_uploads(uploads, space)


async def fetch_linked(interaction: discord.Interaction, link_text: str) -> discord.Message:
    """The message a link points to, only if it is in the same guild (or this DM)."""
    link = convert.parse_link(link_text)
    client = interaction.client
    expected = str(interaction.guild_id) if interaction.guild_id else "@me"
    if link.guild != expected:
        raise Refused(messages.BAD_LINK)
    try:
        channel = client.get_channel(link.channel) or await client.fetch_channel(link.channel)
    except discord.HTTPException as exc:
        raise Refused(messages.LINK_NOT_FOUND) from exc
    # The link's guild part is user input: the channel's real guild decides.
    real_guild = getattr(getattr(channel, "guild", None), "id", None)
    if interaction.guild_id is not None and real_guild != interaction.guild_id:
        raise Refused(messages.BAD_LINK)
    if interaction.guild_id is None and channel.id != interaction.channel_id:
        raise Refused(messages.BAD_LINK)
    if not isinstance(channel, discord.abc.Messageable):
        raise Refused(messages.LINK_NOT_FOUND)
    try:
        return await channel.fetch_message(link.message)
    except discord.HTTPException as exc:
        raise Refused(messages.LINK_NOT_FOUND) from exc


async def forget(deps: Deps, interaction: discord.Interaction, ref: str) -> list[str]:
    """Forget by item id or message link, as far as the asker's scope can see (server admins:
    the whole server); [] when nothing visible matches. Non-managers may only forget what
    came from their own messages."""
    ref = ref.strip()
    scope = convert.scope_for(interaction, admin=access.is_admin(interaction))
    manager = access.is_manager(deps.settings, interaction)
    user = str(interaction.user.id)
    if ref.startswith("https://"):
        link = convert.parse_link(ref)
        if not manager and str((await fetch_linked(interaction, ref)).author.id) != user:
            raise Refused(messages.NOT_ALLOWED_FORGET)
        return await deps.service.forget_origin(
            scope.space, message=str(link.message), scope=scope
        )
    hit = await deps.service.get_item(scope, ref)
    if hit is None:
        return []
    if not manager and hit.origin.author != user:
        raise Refused(messages.NOT_ALLOWED_FORGET)
    try:
        return await deps.service.forget(scope.space, ref, scope=scope)
    except NotFound:  # gone in between (another process): same answer
        return []


async def record_feedback(
    deps: Deps, interaction: discord.Interaction, verdict: Literal["up", "down"], token: str
) -> None:
    deps.check_rate(interaction)  # a click is a request: spam must not flood the feedback
    shown = deps.shown.get(token) or shown_from_message(interaction.message)
    if shown is None or not shown.ids:
        await interaction.response.send_message(messages.FEEDBACK_EXPIRED, ephemeral=True)
        return
    await interaction.response.send_message(messages.FEEDBACK_THANKS, ephemeral=True)
    await deps.service.record_feedback(
        convert.space_for(interaction.guild_id, interaction.user.id),
        question=shown.question,
        verdict=verdict,
        source_ids=list(shown.ids),
        user=str(interaction.user.id),
        platform="discord",
    )


async def more_like(deps: Deps, interaction: discord.Interaction, item_id: str) -> None:
    """"More like #n": core checks the item is visible here and searches from it."""
    deps.check_rate(interaction)
    scope = convert.scope_for(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    hit = await deps.service.get_item(scope, item_id)
    if hit is None:
        raise Refused(messages.MORE_GONE)
    try:
        hits = await deps.service.similar_to_item(scope, item_id)
    except NotFound as exc:
        raise Refused(messages.MORE_GONE) from exc
    await send_results(deps, interaction, f"more like {render.title_of(hit)}", hits)
