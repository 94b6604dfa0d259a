"""Hybrid retrieval: fusion, cut-off, near-duplicates, OCR-backed search, captions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance

from core.app import open_service
from core.config import Secrets, load_settings
from core.retrieve import fuse, term_coverage, terms
from core.types import Scope
from tests.corpus import png_bytes, text_image


def test_fuse_weighted_rrf_orders_by_agreement() -> None:
    lists = {
        "text": [("a", 0.9), ("b", 0.8), ("c", 0.1)],
        "keyword": [("b", 5.0), ("a", 1.0)],
        "clip": [("c", 0.3), ("a", 0.2)],
    }
    fused = fuse(lists, {"text": 1.0, "keyword": 1.0, "clip": 0.1}, rrf_k=10)
    assert [f.item for f in fused] == ["a", "b", "c"]
    assert fused[0].signals == {"text": 0.9, "keyword": 1.0, "clip": 0.2}
    assert fused[0].ranks == {"text": 1, "keyword": 2, "clip": 2}
    # A heavier keyword weight flips the top two.
    fused = fuse(lists, {"text": 1.0, "keyword": 3.0, "clip": 0.1}, rrf_k=10)
    assert [f.item for f in fused][:2] == ["b", "a"]


def test_fuse_counts_an_item_once_per_signal() -> None:
    fused = fuse({"text": [("a", 0.9), ("a", 0.8), ("b", 0.7)]}, {"text": 1.0}, rrf_k=1)
    assert [f.item for f in fused] == ["a", "b"]
    assert fused[1].ranks["text"] == 2


def test_terms_and_coverage() -> None:
    assert terms("Which slide covers the pricing?") == ["covers", "pricing"]
    assert term_coverage(["pricing", "enterprise"], "Enterprise plan pricing: $40") == 1.0
    assert term_coverage(["pricing", "zebra"], "Pricing tiers") == 0.5
    assert term_coverage([], "anything") == 0.0


SLIDES = {
    "pricing.png": "Atlas Cloud pricing\nEnterprise plan $40 per seat\nTeam plan $12 per seat",
    "outage.png": "Postmortem: March outage\nRoot cause: expired TLS certificate\nDuration 47 min",
    "hiring.png": "Hiring plan 2025\n6 backend engineers\n2 designers in Berlin",
}


@pytest.fixture
async def ocr_service(tmp_path: Path, tiny_clip: Path):
    env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip), "PIXRAG_ANSWER__PROVIDER": "none",
           # Random CLIP weights: its floor is meaningless, keep it out of the cut-off.
           "PIXRAG_RETRIEVAL__MIN_CLIP": "1.0", "PIXRAG_RETRIEVAL__MIN_CLIP_IMAGE": "1.0"}
    settings = load_settings(None, environ=env, data_dir=tmp_path / "data")
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in SLIDES.items():
        (folder / name).write_bytes(png_bytes(text_image(text, size=(900, 360), font_px=30)))
    async with open_service(settings, Secrets({})) as svc:
        report = await svc.index_paths([folder], "local")
        assert len(report.indexed) == 3, report
        yield svc


async def test_ocr_text_makes_screenshots_findable(ocr_service) -> None:
    svc = ocr_service
    scope = Scope("local")
    hits = await svc.search("how much is the enterprise seat price?", scope)
    assert hits and hits[0].name == "pricing.png"
    assert {"text", "keyword"} <= set(hits[0].signals)
    assert "Enterprise" in hits[0].text
    hits = await svc.search("expired certificate", scope)
    assert hits[0].name == "outage.png"
    # Nothing about it in the index: the cut-off returns nothing rather than noise.
    assert await svc.search("zebra migration across the Serengeti savanna", scope) == []


async def test_image_query_uses_its_own_text(ocr_service) -> None:
    svc = ocr_service
    # A different rendering of the same words is no near-duplicate: the OCR text finds it.
    query = text_image("Root cause: expired TLS certificate", size=(700, 200), font_px=28)
    hits = await svc.similar(png_bytes(query), Scope("local"))
    assert hits and hits[0].name == "outage.png"
    assert "near_duplicate" not in hits[0].signals
    assert "keyword" in hits[0].signals or "text" in hits[0].signals


def _photo(seed: int) -> Image.Image:
    im = Image.new("RGB", (480, 360), (20 * seed % 255, 90, 160))
    d = ImageDraw.Draw(im)
    for i in range(12):
        x, y = (seed * 37 + i * 53) % 400, (seed * 91 + i * 29) % 300
        colour = ((seed * 50 + i * 20) % 255, i * 20, 200 - i * 9)
        d.ellipse([x, y, x + 40 + i * 3, y + 30 + seed], fill=colour)
    return im


async def test_near_duplicates_found_and_collapsed(service, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(6):
        (folder / f"p{seed}.png").write_bytes(png_bytes(_photo(seed)))
    # A re-encoded, brightened copy of p3 is indexed too: results collapse the pair into one.
    copy = ImageEnhance.Brightness(_photo(3)).enhance(1.2).resize((400, 300))
    buf = io.BytesIO()
    copy.save(buf, "JPEG", quality=60)
    (folder / "p3-copy.jpg").write_bytes(buf.getvalue())
    report = await service.index_paths([folder], "local")
    assert len(report.indexed) == 7
    edited = _photo(3).crop((20, 20, 460, 340)).convert("L").convert("RGB")
    hits = await service.similar(png_bytes(edited), Scope("local"), k=5)
    assert hits[0].name in {"p3.png", "p3-copy.jpg"}
    assert "near_duplicate" in hits[0].signals
    names = [h.name for h in hits]
    assert not ({"p3.png", "p3-copy.jpg"} <= set(names)), names


async def test_captions_join_text_and_are_requested_once(tmp_path: Path, tiny_clip: Path) -> None:
    from tests.answer.fakellm import FakeLLM, Reply

    async with FakeLLM() as llm:
        llm.default = Reply(deltas=["A bar chart of quarterly revenue for the Zephyr product."])
        env = {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip),
               "PIXRAG_ANSWER__PROVIDER": "openai-compatible",
               "PIXRAG_ANSWER__BASE_URL": llm.openai_url, "PIXRAG_ANSWER__MODEL": "vlm",
               "PIXRAG_ANSWER__MAX_RETRIES": "0",
               "PIXRAG_INDEX__CAPTIONS": "true", "PIXRAG_INDEX__OCR": "false",
               "PIXRAG_RETRIEVAL__MIN_CLIP": "1.0"}
        settings = load_settings(None, environ=env, data_dir=tmp_path / "data")
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "chart.png").write_bytes(png_bytes(_photo(1)))
        (folder / "same-bytes.png").write_bytes(png_bytes(_photo(1)))
        async with open_service(settings, Secrets({})) as svc:
            await svc.index_paths([folder], "local")
            await svc.index_paths([folder], "local")
            await svc.index_paths([folder], "other-space")  # same bytes: cached caption
            hits = await svc.search("Zephyr revenue chart", Scope("local"))
        assert len(llm.requests) == 1
        assert hits and hits[0].name in {"chart.png", "same-bytes.png"}
        assert "caption" in hits[0].signals


def test_tile_boxes_cover_long_images_only() -> None:
    from core.ingest import tile_boxes

    assert tile_boxes(Image.new("RGB", (1280, 960))) == []  # a photo: no tiles
    tiles = tile_boxes(Image.new("RGB", (1170, 2532)))  # a phone screenshot
    assert len(tiles) == 3 and all(t.size == (1170, 1170) for t in tiles)
    wide = tile_boxes(Image.new("RGB", (4000, 500)))  # a panorama: capped
    assert len(wide) == 6 and all(t.size == (500, 500) for t in wide)


async def test_long_screenshot_tiles_collapse_into_their_image(service, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    tall = Image.new("RGB", (300, 900), "white")  # 3:1
    ImageDraw.Draw(tall).rectangle([20, 700, 280, 880], fill="red")  # outside the centre crop
    (folder / "tall.png").write_bytes(png_bytes(tall))
    (folder / "photo.png").write_bytes(png_bytes(_photo(2)))
    report = await service.index_paths([folder], "local")
    assert len(report.indexed) == 2
    store = await service.library.vectors()
    assert store.count("clip") == 2 + 3  # two items, three tiles of the tall one
    bottom = tall.crop((0, 600, 300, 900))
    hits = await service.similar(png_bytes(bottom), Scope("local", admin=True), k=5)
    assert [h.name for h in hits].count("tall.png") <= 1  # tiles never show up as results
    removed = await service.forget("local", str((folder / "tall.png").resolve()))
    assert len(removed) == 1
    assert (await service.library.vectors()).count("clip") == 1  # its tiles went with it


def test_widescreen_is_not_tiled() -> None:
    from core.ingest import tile_boxes

    assert tile_boxes(Image.new("RGB", (1920, 1080))) == []


def test_protect_top_keeps_the_dense_best_in_sight() -> None:
    from core.retrieve import Fused, protect_top

    fused = [Fused(i, 1.0 - n / 10) for n, i in enumerate("abcdefgh")]
    order = lambda fs: "".join(f.item for f in fs)  # noqa: E731
    # Keyword/CLIP pushed the dense favourites g and h down: they come back into the top 5,
    # the fused order is kept around them, nothing is lost.
    assert order(protect_top(fused, ["g", "h", "a"])) == "abcghdef"
    assert order(protect_top(fused, ["b", "c"])) == "abcdefgh"  # already in sight: unchanged
    assert order(protect_top(fused, [])) == "abcdefgh"
    assert order(protect_top(fused, ["h"], within=2)) == "ahbcdefg"
    assert order(protect_top(fused, ["zz"])) == "abcdefgh"  # not a candidate: ignored
