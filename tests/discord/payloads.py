"""Builders for the gateway payloads tests send (shapes as Discord sends them)."""

from __future__ import annotations

import io
import itertools
from typing import Any

from PIL import Image

from tests.discord.fakediscord import APP_ID, user

VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5
MEMBER_PERMS = VIEW_CHANNEL | SEND_MESSAGES
_ids = itertools.count(970000000000000000)


def next_id() -> int:
    return next(_ids)


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    img = Image.new("RGB", size, color)
    # A second colour block so images are not all flat.
    img.paste((255 - color[0], color[1], 255 - color[2]), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def channel(cid: int, guild: int, *, private: bool = False, name: str = "general",
            ctype: int = 0, parent: int | None = None) -> dict[str, Any]:
    overwrites = (
        [{"id": str(guild), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}] if private else []
    )
    data: dict[str, Any] = {
        "id": str(cid), "type": ctype, "guild_id": str(guild), "name": name, "position": 0,
        "permission_overwrites": overwrites, "nsfw": False, "parent_id": None, "topic": None,
        "last_message_id": None, "rate_limit_per_user": 0,
    }
    if ctype in (11, 12):  # thread
        data.update(parent_id=str(parent), owner_id="1", message_count=0, member_count=1,
                    thread_metadata={"archived": False, "auto_archive_duration": 60,
                                     "archive_timestamp": "2026-01-01T00:00:00+00:00",
                                     "locked": False})
    return data


def guild(gid: int, channels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(gid), "name": f"guild-{gid}", "icon": None, "owner_id": "1",
        "roles": [{"id": str(gid), "name": "@everyone", "permissions": str(MEMBER_PERMS),
                   "position": 0, "color": 0, "hoist": False, "managed": False,
                   "mentionable": False, "flags": 0}],
        "channels": channels, "threads": [], "members": [], "member_count": 1,
        "emojis": [], "stickers": [], "features": [], "large": False, "unavailable": False,
        "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "mfa_level": 0, "premium_tier": 0,
        "preferred_locale": "en-US", "afk_timeout": 300, "nsfw_level": 0,
        "system_channel_flags": 0, "voice_states": [], "presences": [],
    }


def member(uid: int, perms: int = MEMBER_PERMS, roles: list[str] | None = None) -> dict[str, Any]:
    return {"user": user(uid, f"user{uid}"), "roles": roles or [], "joined_at":
            "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0,
            "permissions": str(perms)}


def attachment(url: str, name: str, size: int, ctype: str = "image/png") -> dict[str, Any]:
    return {"id": str(next_id()), "filename": name, "size": size, "url": url,
            "proxy_url": url, "content_type": ctype, "width": 64, "height": 48}


def message(mid: int, channel_id: int, guild_id: int | None, author: int,
            attachments: list[dict[str, Any]], content: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(mid), "channel_id": str(channel_id), "type": 0, "content": content,
        "author": user(author, f"user{author}"), "attachments": attachments, "embeds": [],
        "components": [], "mentions": [], "mention_roles": [], "mention_everyone": False,
        "pinned": False, "tts": False, "timestamp": "2026-01-01T00:00:00+00:00",
        "edited_timestamp": None, "flags": 0,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["member"] = {k: v for k, v in member(author).items() if k != "user"}
    return data


def _base(itype: int, guild_id: int | None, channel_data: dict[str, Any], uid: int,
          perms: int, roles: list[str] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(next_id()), "application_id": str(APP_ID), "type": itype,
        "token": f"tok{next_id()}", "version": 1, "channel_id": channel_data["id"],
        "channel": channel_data, "locale": "en-US", "app_permissions": str(1 << 40),
        "attachment_size_limit": 26214400, "entitlements": [],
        "authorizing_integration_owners": {}, "context": 0 if guild_id else 1,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["guild_locale"] = "en-US"
        data["member"] = member(uid, perms, roles)
    else:
        data["user"] = user(uid, f"user{uid}")
    return data


def command(name: str, options: list[dict[str, Any]], *, guild_id: int | None,
            channel_data: dict[str, Any], uid: int, perms: int = MEMBER_PERMS,
            roles: list[str] | None = None,
            attachments: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CHAT_INPUT interaction. ``options`` as Discord sends them (type + value)."""
    data = _base(2, guild_id, channel_data, uid, perms, roles)
    data["data"] = {"id": str(next_id()), "name": name, "type": 1, "options": options}
    if attachments:
        data["data"]["resolved"] = {"attachments": attachments}
    return data


def string_opt(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "type": 3, "value": value}


def attachment_opt(name: str, att: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": 11, "value": att["id"]}


def subcommand(name: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "type": 1, "options": options}


def message_menu(name: str, target: dict[str, Any], *, guild_id: int | None,
                 channel_data: dict[str, Any], uid: int, perms: int = MEMBER_PERMS
                 ) -> dict[str, Any]:
    data = _base(2, guild_id, channel_data, uid, perms, None)
    data["data"] = {"id": str(next_id()), "name": name, "type": 3, "target_id": target["id"],
                    "resolved": {"messages": {target["id"]: target}}}
    return data


def button(custom_id: str, msg: dict[str, Any], *, guild_id: int | None,
           channel_data: dict[str, Any], uid: int) -> dict[str, Any]:
    data = _base(3, guild_id, channel_data, uid, MEMBER_PERMS, None)
    data["data"] = {"custom_id": custom_id, "component_type": 2}
    data["message"] = msg
    return data
