"""Captions end to end: a signal of their own, failures reported and counted, re-captioning,
and the stand-in vision model that serves the eval set's hand-written captions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from core.app import open_service
from core.config import Secrets, load_settings
from core.types import Scope, is_caption_passage
from eval.vlm_server import UNKNOWN, CaptionBook, VisionServer
from tests.answer.fakellm import FakeLLM, Reply
from tests.cli.helpers import noise_bytes

EVAL = Path(__file__).resolve().parents[2] / "eval"


def _env(tiny_clip: Path, base_url: str, **extra: str) -> dict[str, str]:
    return {"PIXRAG_EMBEDDING__MODEL": str(tiny_clip),
            "PIXRAG_ANSWER__PROVIDER": "openai-compatible",
            "PIXRAG_ANSWER__BASE_URL": base_url, "PIXRAG_ANSWER__MODEL": "vlm",
            "PIXRAG_ANSWER__MAX_RETRIES": "0", "PIXRAG_INDEX__CAPTIONS": "true",
            "PIXRAG_INDEX__OCR": "false", "PIXRAG_RETRIEVAL__MIN_CLIP": "1.0", **extra}


def _jpeg(path: Path, scale: float) -> bytes:
    with Image.open(path) as im:
        small = im.convert("RGB").resize((int(im.width * scale), int(im.height * scale)))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=60)
    return buf.getvalue()


def test_caption_ids_are_told_apart() -> None:
    assert is_caption_passage("abc#c0") and is_caption_passage("abc#c12")
    assert not is_caption_passage("abc#0") and not is_caption_passage("abc")


def test_vision_server_recognises_resized_reencoded_eval_images() -> None:
    book = CaptionBook.load()
    assert len(book.names) == 120
    for name in ("img_001.png", "img_050.png", "img_119.png"):
        data = _jpeg(EVAL / "images" / name, 0.4)
        assert book.match(Image.open(io.BytesIO(data))) == name
    assert book.match(Image.open(io.BytesIO(noise_bytes(3, (400, 300))))) is None


async def test_failed_captions_are_reported_counted_and_recaptioned(
    tmp_path: Path, tiny_clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.png").write_bytes(noise_bytes(40 + i, (96, 64)))
    async with FakeLLM() as llm:
        llm.default = Reply(status=500, message="model crashed")
        settings = load_settings(None, environ=_env(tiny_clip, llm.openai_url),
                                 data_dir=tmp_path / "data")
        async with open_service(settings, Secrets({})) as svc:
            report = await svc.index_paths([folder], "local")
            assert len(report.indexed) == 3 and report.failed == []
            warned = sorted(Path(w.source).name for w in report.warnings)
            assert warned == ["p0.png", "p1.png", "p2.png"]
            assert all(w.error.startswith("indexed without a caption: caption failed")
                       for w in report.warnings)
            assert "warnings" in report.to_json()
            stats = await svc.stats("local")
            assert stats.without_caption == 3 and stats.to_json()["without_caption"] == 3
            assert await svc.search("zebra crossing", Scope("local")) == []

            # The model is back: --recaption asks once per image, nothing else is redone.
            llm.default = Reply(deltas=["A zebra crossing at night in the rain."])
            asked = len(llm.requests)
            again = await svc.recaption([], "local")
            assert len(again.indexed) == 3 and again.warnings == []
            assert len(llm.requests) - asked == 3
            assert (await svc.stats("local")).without_caption == 0
            hits = await svc.search("zebra crossing", Scope("local"))
            assert hits and "caption" in hits[0].signals and "text" not in hits[0].signals
            assert (await svc.recaption([], "local")).indexed == []  # nothing left to do
            assert len(llm.requests) - asked == 3
            # Captions are a dense signal only: the keyword index never holds them.
            assert await svc.library.keyword_search(Scope("local", admin=True), "zebra", 5) == []


async def test_recaption_needs_captions_on(service) -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="captions"):
        await service.recaption([], "local")
    assert (await service.stats("local")).without_caption is None
    assert "without_caption" not in (await service.stats("local")).to_json()


async def test_eval_captions_find_what_the_pixels_do_not_say(tmp_path: Path,
                                                             tiny_clip: Path) -> None:
    """The stand-in vision model through the real indexing path: a question that needs the
    caption's knowledge (what an error means) finds its screenshot with OCR off."""
    folder = tmp_path / "set"
    folder.mkdir()
    captions = json.loads((EVAL / "captions.json").read_text(encoding="utf-8"))
    names = ["img_001.png", "img_002.png", "img_003.png", "img_060.png"]
    for name in names:
        (folder / name).write_bytes((EVAL / "images" / name).read_bytes())
    async with VisionServer(CaptionBook.load()) as vlm:
        settings = load_settings(None, environ=_env(tiny_clip, vlm.base_url),
                                 data_dir=tmp_path / "data")
        async with open_service(settings, Secrets({})) as svc:
            report = await svc.index_paths([folder], "local")
            assert report.warnings == []
            await svc.index_paths([folder], "other")  # same bytes: captions come from cache
            assert sorted(vlm.requests.elements()) == sorted(names)  # one request per image
            rows = await svc.library.rows(Scope("local", admin=True),
                                          [i.id for i in report.indexed])
            assert {Path(r.source).name: r.text for r in rows.values()} == {
                n: captions[n] for n in names}
            hits = await svc.search("java build cannot find a method on the order model",
                                    Scope("local"))
            assert hits[0].name == "img_060.png" and "caption" in hits[0].signals
    assert UNKNOWN not in captions.values()


async def test_recaption_narrowed_to_paths(tmp_path: Path, tiny_clip: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for n, folder in enumerate((a, b)):
        folder.mkdir()
        (folder / "x.png").write_bytes(noise_bytes(70 + n, (96, 64)))
    async with FakeLLM() as llm:
        llm.default = Reply(status=500)
        settings = load_settings(None, environ=_env(tiny_clip, llm.openai_url),
                                 data_dir=tmp_path / "data")
        async with open_service(settings, Secrets({})) as svc:
            await svc.index_paths([a, b], "local")
            assert (await svc.stats("local")).without_caption == 2
            llm.default = Reply(deltas=["A lighthouse on a cliff."])
            only_a = await svc.recaption([a], "local")
            assert [Path(i.source).parent.name for i in only_a.indexed] == ["a"]
            assert (await svc.stats("local")).without_caption == 1
            rest = await svc.recaption([b / "x.png"], "local")  # a file works too
            assert [Path(i.source).parent.name for i in rest.indexed] == ["b"]
            assert (await svc.stats("local")).without_caption == 0
