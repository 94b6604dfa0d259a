"""Sniffing by content and safe decoding of odd, broken and hostile images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import IndexSettings
from core.errors import UnsupportedImage, UnsupportedInput
from core.media.imageio import Decoded, Limits, decode_text, load_image, sniff, to_jpeg, to_rgb
from tests import corpus

LIMITS = Limits.from_settings(IndexSettings())
FILES = corpus.corpus_bytes()


def load(key: str, **kwargs: object) -> Decoded:
    name, data = FILES[key]
    return load_image(data, name, LIMITS, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    return corpus.huge_jpeg_bytes()


# ---------------------------------------------------------------- sniff


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("cmyk_jpeg", "image"), ("png16", "image"), ("animated_gif", "image"),
        ("palette_alpha", "image"), ("truncated_jpeg", "image"),
        ("pdf_text", "pdf"), ("pdf_scanned", "pdf"), ("pdf_encrypted", "pdf"),
        ("txt", "text"), ("md", "text"), ("txt_utf16", "text"),
    ],
)
def test_sniff_classifies_by_content(key: str, expected: str) -> None:
    name, data = FILES[key]
    assert sniff(data, name) == expected


@pytest.mark.parametrize(
    ("key", "error", "reason"),
    [
        ("empty", UnsupportedInput, "empty file"),
        ("html_as_jpg", UnsupportedImage, "not an image: looks like HTML"),
        ("zip_as_png", UnsupportedImage, "not an image: looks like a ZIP archive"),
        ("random", UnsupportedInput, "unsupported file type"),
        ("svg", UnsupportedImage, "SVG vector images are not supported"),
        ("heic", UnsupportedImage, "HEIC/HEIF images are not supported"),
    ],
)
def test_sniff_refuses_with_a_specific_reason(key: str, error: type, reason: str) -> None:
    name, data = FILES[key]
    with pytest.raises(error) as info:
        sniff(data, name)
    assert info.value.reason.startswith(reason)
    assert str(info.value).startswith(f"{name}: ")


def test_extension_accepts_text_but_never_binary() -> None:
    png = FILES["palette_alpha"][1]
    assert sniff(png, "notes.txt") == "image"  # content wins over the name
    with pytest.raises(UnsupportedInput, match="not text"):
        sniff(corpus.random_bytes(), "notes.txt")
    with pytest.raises(UnsupportedInput):
        sniff(b"abc\x00def", "notes.md")
    assert sniff(b"plain words", "snippet") == "text"  # chat snippets have no extension
    with pytest.raises(UnsupportedInput, match="unsupported file type"):
        sniff(b"print('hi')\n", "script.py")
    with pytest.raises(UnsupportedImage, match="looks like text"):
        sniff(b"hello", "photo.jpg")
    with pytest.raises(UnsupportedInput, match="looks like HTML"):
        sniff(corpus.html_bytes(), "page.html")


def test_decode_text_handles_boms_and_newlines() -> None:
    expected = corpus.TXT.replace("\r\n", "\n")
    assert decode_text(corpus.TXT.encode("utf-16"), "a.txt") == expected
    assert decode_text(corpus.TXT.encode("utf-16-be").join([b"\xfe\xff", b""]), "a.txt") \
        == expected
    assert decode_text(b"\xef\xbb\xbf" + corpus.TXT.encode(), "a.txt") == expected
    assert decode_text("Grüße, naïve café".encode(), "a.md") == "Grüße, naïve café"
    with pytest.raises(UnsupportedInput, match="a.txt: not a text file"):
        decode_text(b"\xff\xfe\x00", "a.txt")
    with pytest.raises(UnsupportedInput, match="a.txt: not a text file"):
        decode_text(corpus.random_bytes(), "a.txt")


def test_text_from_windows_editors_is_read() -> None:
    # Windows-1252 (Notepad before 2019, Excel's CSV/TXT export) and UTF-16 without a mark.
    words = "Café “menu” – crème brûlée for €12\r\nNaïve résumé"
    expected = words.replace("\r\n", "\n")
    assert decode_text(words.encode("cp1252"), "a.txt") == expected
    assert sniff(words.encode("cp1252"), "notes.md") == "text"
    assert decode_text("café au lait".encode("latin-1"), "a.txt") == "café au lait"
    assert decode_text(words.encode("utf-16-le"), "a.txt") == expected
    assert decode_text(words.encode("utf-16-be"), "a.txt") == expected
    assert sniff(words.encode("utf-16-le"), "notes.txt") == "text"
    assert decode_text("Grüße".encode(), "a.md") == "Grüße"  # UTF-8 stays UTF-8


# ---------------------------------------------------------------- load_image: modes


def test_cmyk_jpeg_is_red_not_inverted() -> None:
    d = load("cmyk_jpeg")
    assert (d.format, d.image.mode, d.image.size) == ("JPEG", "RGB", (64, 48))
    r, g, b = d.image.getpixel((32, 24))
    assert r > 230 and g < 30 and b < 30


def test_16bit_png_is_scaled_not_clipped() -> None:
    d = load("png16")
    row = np.asarray(d.image)[16, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253
    assert 110 <= row[128] <= 145  # mid-grey, not white
    assert np.all(np.diff(row) >= 0)


def test_exif_orientation_is_applied() -> None:
    d = load("exif_rotated")
    assert d.image.size == (40, 80)
    assert (d.width, d.height) == (40, 80)
    top, bottom = d.image.getpixel((20, 10)), d.image.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 50  # red on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_animated_gif_gives_first_frame() -> None:
    d = load("animated_gif")
    assert d.format == "GIF" and d.image.mode == "RGB"
    assert d.image.getpixel((16, 16)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("key", "left", "right"),
    [
        ("palette_alpha", (255, 255, 255), (0, 200, 0)),
        ("la_png", (255, 255, 255), (0, 0, 0)),
        ("rgba_png", (255, 255, 255), (0, 0, 255)),
        ("one_bit_png", (0, 0, 0), (255, 255, 255)),
    ],
)
def test_transparency_is_composited_on_white(key: str, left: tuple, right: tuple) -> None:
    d = load(key)
    assert d.image.mode == "RGB"
    assert d.image.getpixel((5, 10)) == left
    assert d.image.getpixel((35, 10)) == right


@pytest.mark.parametrize("mode", ["I", "F", "I;16", "YCbCr", "LAB", "HSV", "RGBX", "PA"])
def test_to_rgb_any_mode(mode: str) -> None:
    base = Image.linear_gradient("L").resize((16, 64))  # black at the top, white below
    if mode in ("I", "I;16"):
        img = Image.fromarray(np.asarray(base, dtype=np.uint16) * 257)
        img = img if mode == "I;16" else img.convert("I")
    elif mode == "F":
        img = Image.fromarray(np.asarray(base, dtype=np.float32) * 1000.0)
    else:
        img = base.convert("RGB").convert(mode) if mode != "PA" else base.convert("PA")
    assert img.mode == mode
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (16, 64)
    grey = np.asarray(out.convert("L"), dtype=int)
    assert grey[:4].mean() < 60 and grey[-4:].mean() > 190


# ---------------------------------------------------------------- load_image: limits, damage


def test_bomb_refused_from_header_before_decoding() -> None:
    data = corpus.bomb_png_bytes()
    assert len(data) < 1_000_000
    with pytest.raises(UnsupportedImage) as info:
        load_image(data, "bomb.png", LIMITS)
    assert info.value.reason == "image is 60000x60000 pixels, limit is 250,000,000"


def test_byte_limit_checked_first() -> None:
    name, data = FILES["cmyk_jpeg"]
    with pytest.raises(UnsupportedImage, match="limit is"):
        load_image(data, name, Limits(max_bytes=100, max_pixels=10**9, max_side=10**5))


def test_side_limit() -> None:
    data = corpus.png_bytes(Image.new("L", (3000, 10)))
    with pytest.raises(UnsupportedImage, match="3000x10 pixels, the longest side limit is 2,000"):
        load_image(data, "strip.png", Limits(10**9, 10**9, 2000))


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("truncated_jpeg", "truncated or corrupt image ("),
        ("html_as_jpg", "not an image: looks like HTML"),
        ("svg", "SVG vector images are not supported"),
        ("heic", "HEIC/HEIF images are not supported"),
        ("zip_as_png", "not an image: looks like a ZIP archive"),
        ("random", "not an image"),
        ("empty", "empty file"),
        ("pdf_text", "not an image: it is a PDF"),
    ],
)
def test_unreadable_images_raise_unsupported_image(key: str, reason: str) -> None:
    with pytest.raises(UnsupportedImage) as info:
        load(key)
    assert info.value.reason.startswith(reason)


def test_corrupt_png_body() -> None:
    data = bytearray(FILES["palette_alpha"][1])
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 14] = b"\xff" * 10
    with pytest.raises(UnsupportedImage, match="truncated or corrupt image"):
        load_image(bytes(data), "bad.png", LIMITS)


def test_200mp_photo_decodes_in_draft_mode(
    huge_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.media.imageio")
    d = load_image(huge_jpeg, "phone.jpg", LIMITS, max_side=2040)
    # 16320x12240 is above Pillow's own bomb limit (178 MP): no error, no warning.
    assert (d.width, d.height) == (16_320, 12_240)
    assert d.image.size == (2040, 1530) and d.image.mode == "RGB"
    assert d.image.getpixel((100, 100)) == (128, 128, 128)
    # libjpeg decoded at 1/8 scale: the DCT-scaled size is what was decoded, not 200 MP.
    assert "decoded at 2040x1530 (draft)" in caplog.text


def test_200mp_photo_other_target(huge_jpeg: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="core.media.imageio")
    d = load_image(huge_jpeg, "phone.jpg", LIMITS, max_side=1000)
    assert d.image.size == (1000, 750)
    assert "decoded at 2040x1530 (draft)" in caplog.text  # 1/8 is the smallest DCT scale


def test_200mp_photo_refused_under_a_lower_pixel_limit(huge_jpeg: bytes) -> None:
    with pytest.raises(UnsupportedImage, match="16320x12240 pixels, limit is 100,000,000"):
        load_image(huge_jpeg, "phone.jpg", Limits(10**9, 100_000_000, 40_000))


def test_small_images_are_not_upscaled_and_max_side_none_keeps_size() -> None:
    img = Image.radial_gradient("L").convert("RGB").resize((300, 200))
    data = corpus.jpeg_bytes(img)
    assert load_image(data, "a.jpg", LIMITS).image.size == (300, 200)
    assert load_image(data, "a.jpg", LIMITS, max_side=None).image.size == (300, 200)
    small = load_image(data, "a.jpg", LIMITS, max_side=150)
    assert small.image.size == (150, 100) and (small.width, small.height) == (300, 200)


def test_webp_and_tiff_and_bmp_load() -> None:
    img = Image.new("RGB", (20, 10), (10, 200, 30))
    for fmt in ("WEBP", "TIFF", "BMP"):
        import io

        buf = io.BytesIO()
        img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        name = f"x.{fmt.lower()}"
        assert sniff(buf.getvalue(), name) == "image"
        d = load_image(buf.getvalue(), name, LIMITS)
        assert d.format == fmt and d.image.getpixel((5, 5)) == (10, 200, 30)


def test_to_jpeg_downscales() -> None:
    img = Image.new("RGBA", (800, 400), (0, 0, 255, 0))
    jpeg = to_jpeg(img, 200, quality=70)
    assert jpeg[:3] == b"\xff\xd8\xff"
    with Image.open(__import__("io").BytesIO(jpeg)) as out:
        assert out.size == (200, 100)
        assert out.convert("RGB").getpixel((10, 10)) == (255, 255, 255)
    assert img.size == (800, 400)  # the input is not modified


def test_write_corpus(tmp_path: Path) -> None:
    files = corpus.write_corpus(tmp_path / "c")
    assert files["empty"].stat().st_size == 0
    assert files["bomb_png"].stat().st_size < 1_000_000
    assert files["pdf_text"].read_bytes().startswith(b"%PDF-")
    assert {p.parent for p in files.values()} == {tmp_path / "c"}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "PNG"])
def test_every_exif_orientation_matches_pillow(orientation: int, fmt: str) -> None:
    import io

    from PIL import ImageOps

    img = Image.new("RGB", (60, 30), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 10))  # a red corner makes every orientation distinct
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(buf.getvalue())) as ref_file:
        expected = ImageOps.exif_transpose(ref_file.convert("RGB"))
    d = load_image(buf.getvalue(), f"o.{fmt.lower()}", LIMITS)
    assert d.image.size == expected.size == (d.width, d.height)
    diff = np.abs(np.asarray(d.image, dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() <= 2


def test_icon_loads_its_largest_image_on_white() -> None:
    import io

    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(buf, "ICO", sizes=[(16, 16), (32, 32),
                                                                         (64, 64)])
    assert sniff(buf.getvalue(), "favicon.ico") == "image"
    d = load_image(buf.getvalue(), "favicon.ico", LIMITS)
    assert d.format == "ICO" and d.image.size == (64, 64)
    assert d.image.getpixel((5, 5)) == (255, 255, 255)  # transparent, shown on white


def test_icon_size_is_checked_from_its_images_before_decoding() -> None:
    import io
    import struct

    # The icon's directory says 16x16; the PNG inside is 3000x3000. Pillow decodes an icon
    # as it opens it, so the check must read the PNG's own header first.
    png = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(png, "PNG")
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png.getvalue()), 22)
    ico = struct.pack("<HHH", 0, 1, 1) + entry + png.getvalue()
    limits = Limits(max_bytes=LIMITS.max_bytes, max_pixels=1_000_000, max_side=LIMITS.max_side)
    with pytest.raises(UnsupportedImage, match="3000x3000 pixels, limit is 1,000,000"):
        load_image(ico, "big.ico", limits)
