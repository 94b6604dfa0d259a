"""Builders of odd, broken and hostile input files for tests.

Each ``*_bytes`` function returns the file content; :func:`write_corpus` writes one of each
into a folder and returns ``{key: path}``. Everything is generated here, quickly, offline.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# ---------------------------------------------------------------- images


def jpeg_bytes(image: Image.Image, quality: int = 90, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(image: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kwargs)
    return buf.getvalue()


def text_image(text: str, size: tuple[int, int] = (640, 360), font_px: int = 36) -> Image.Image:
    """Black text on white, like a slide or a screenshot (OCR and near-duplicate tests)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_px)
    y = 20
    for line in text.splitlines():
        draw.text((24, y), line, fill="black", font=font)
        y += int(font_px * 1.4)
    return img


def truncated_jpeg_bytes() -> bytes:
    data = jpeg_bytes(Image.radial_gradient("L").convert("RGB").resize((400, 300)))
    return data[: len(data) // 2]


def html_bytes() -> bytes:
    # What Slack sends for url_private without a token: a login page, status 200.
    return (b"<!DOCTYPE html>\n<html lang=\"en\"><head><title>Slack</title></head>"
            b"<body><form action=\"/signin\">Sign in to continue</form></body></html>\n")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png_bytes(side: int = 60_000) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: ~0.5 MB on disk, 3.6 GB as RGB pixels.

    Built in ~10 ms: a raw deflate of a block of zero rows, fully flushed, is the same bytes
    every time, so the stream is that piece repeated; Adler-32 of n zero bytes is closed-form.
    """
    row_len = 1 + (side + 7) // 8  # filter byte + packed bits
    rows_per_block = 1024
    blocks, rest = divmod(side, rows_per_block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(bytes(row_len * rows_per_block)) + comp.flush(zlib.Z_FULL_FLUSH)
    if blocks > 1:
        again = comp.compress(bytes(row_len * rows_per_block)) + comp.flush(zlib.Z_FULL_FLUSH)
        assert again == piece
    tail = comp.compress(bytes(row_len * rest)) + comp.flush(zlib.Z_FINISH)
    total = row_len * side
    adler = ((total % 65521) << 16) | 1
    idat = b"\x78\xda" + piece * blocks + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def huge_jpeg_bytes(width: int = 16_320, height: int = 12_240) -> bytes:
    """A valid baseline 4:2:0 colour JPEG of ``width`` x ``height`` (a 200 MP phone photo).

    Written by hand so no 600 MB image is ever built: one-symbol Huffman tables make every
    8x8 block "DC diff 0, end of block" = two zero bits, so the scan is just zero bytes
    (~1.2 MB) and the picture is uniform grey.
    """
    assert width % 16 == 0 and height % 16 == 0
    def seg(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    jfif = seg(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = seg(0xFFDB, b"\x00" + b"\x01" * 64)
    sof = seg(0xFFC0, struct.pack(">BHHB", 8, height, width, 3)
              + bytes([1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]))
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one symbol (0), code "0"
    dht = seg(0xFFC4, b"\x00" + one_code + b"\x10" + one_code)
    sos = seg(0xFFDA, bytes([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]))
    mcus = (width // 16) * (height // 16)
    scan = bytes((mcus * 6 * 2 + 7) // 8)  # 6 blocks per MCU, 2 bits per block
    return b"\xff\xd8" + jfif + dqt + sof + dht + sos + scan + b"\xff\xd9"


def cmyk_jpeg_bytes() -> bytes:
    """Pure red in CMYK (Pillow writes Adobe-style inverted CMYK with an APP14 marker)."""
    return jpeg_bytes(Image.new("CMYK", (64, 48), (0, 255, 255, 0)))


def png16_bytes() -> bytes:
    """A 16-bit greyscale horizontal ramp 0..65535 (mode I;16)."""
    import numpy as np

    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    return png_bytes(Image.fromarray(ramp))


def exif_rotated_jpeg_bytes() -> bytes:
    """80x40 stored pixels, left half red, right half blue, EXIF orientation 6.

    Displayed (rotated 90 degrees clockwise) it is 40x80 with red on top.
    """
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(img, exif=exif.tobytes())


def animated_gif_bytes() -> bytes:
    """Three frames: red, green, blue."""
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def palette_alpha_png_bytes() -> bytes:
    """Palette image: left half transparent (index 0), right half opaque green (index 1)."""
    img = Image.new("P", (40, 20), 0)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0] * (254 * 3))
    img.paste(1, (20, 0, 40, 20))
    return png_bytes(img, transparency=0)


def la_png_bytes() -> bytes:
    """Grey+alpha: left half fully transparent black, right half opaque black."""
    img = Image.new("LA", (40, 20), (0, 0))
    img.paste((0, 255), (20, 0, 40, 20))
    return png_bytes(img)


def rgba_png_bytes() -> bytes:
    img = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    img.paste((0, 0, 255, 255), (20, 0, 40, 20))
    return png_bytes(img)


def one_bit_png_bytes() -> bytes:
    img = Image.new("1", (40, 20), 0)
    img.paste(1, (20, 0, 40, 20))
    return png_bytes(img)


def svg_bytes() -> bytes:
    return (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
            b'height="10"><rect width="10" height="10" fill="red"/></svg>\n')


def heic_bytes() -> bytes:
    """Just the ISO-BMFF ``ftyp`` box of a HEIC file (all sniffing looks at)."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + b"\x00" * 64


def zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "hello")
    return buf.getvalue()


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    import random

    data = random.Random(seed).randbytes(n)
    # Make sure it cannot start with a magic number by accident.
    return b"\x00\x01" + data[2:]


# ---------------------------------------------------------------- PDFs


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str], *, encrypted: bool = False,
              size: tuple[int, int] = (612, 792)) -> bytes:
    """A minimal PDF with one Helvetica text line per page (a real text layer).

    ``encrypted`` adds a Standard security handler whose user password is not empty, so
    readers must refuse it without a password.
    """
    objects: list[bytes] = []
    n_pages = len(pages)
    page_ids = [4 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                   b"/Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        content_id = page_ids[i] + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>".encode())
        lines = [f"({_pdf_escape(line)}) Tj 0 -30 Td" for line in text.splitlines()]
        stream = ("BT /F1 24 Tf 72 700 Td " + " ".join(lines) + " ET").encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    encrypt_ref = ""
    if encrypted:
        objects.append(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <"
                       + b"22" * 32 + b"> /P -44 >>")
        encrypt_ref = f" /Encrypt {len(objects)} 0 R /ID [<{'ab' * 16}> <{'ab' * 16}>]"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{encrypt_ref} >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def broken_page_pdf_bytes(pages: list[str], broken: int) -> bytes:
    """A PDF whose page tree points page ``broken`` (1-based) at its font object, not a page:
    real generators leave such trees (a page count that is off, a damaged page object)."""
    data = pdf_bytes(pages)
    ref = f"{4 + 2 * (broken - 1)} 0 R".encode()
    kids = data.index(b"/Kids [")
    end = data.index(b"]", kids)
    fixed = data[kids:end].replace(ref, b"3 0 R".rjust(len(ref)))
    return data[:kids] + fixed + data[end:]  # same length: the xref offsets still hold


def scanned_pdf_bytes(pages: int = 1) -> bytes:
    """An image-only PDF (no text layer), like a scan: Pillow writes one image per page."""
    imgs = [text_image(f"Scanned page {i + 1}") for i in range(pages)]
    buf = io.BytesIO()
    imgs[0].save(buf, "PDF", save_all=True, append_images=imgs[1:], resolution=72)
    return buf.getvalue()


# ---------------------------------------------------------------- text

TXT = "Quarterly report\n\nRevenue grew 12% in Q3.\r\nThe office moves to Berlin in May.\n"
MD = "# Runbook\n\nRestart the **ingest** worker with `systemctl restart pixrag`.\n\n<br/>\n"


# ---------------------------------------------------------------- all of it


def corpus_bytes() -> dict[str, tuple[str, bytes]]:
    """``key -> (file name, content)`` for every odd case (the huge ones excluded)."""
    return {
        "empty": ("empty.jpg", b""),
        "truncated_jpeg": ("truncated.jpg", truncated_jpeg_bytes()),
        "html_as_jpg": ("login.jpg", html_bytes()),
        "cmyk_jpeg": ("cmyk.jpg", cmyk_jpeg_bytes()),
        "png16": ("gray16.png", png16_bytes()),
        "exif_rotated": ("rotated.jpg", exif_rotated_jpeg_bytes()),
        "animated_gif": ("animated.gif", animated_gif_bytes()),
        "palette_alpha": ("palette_alpha.png", palette_alpha_png_bytes()),
        "la_png": ("la.png", la_png_bytes()),
        "rgba_png": ("rgba.png", rgba_png_bytes()),
        "one_bit_png": ("one_bit.png", one_bit_png_bytes()),
        "svg": ("drawing.svg", svg_bytes()),
        "heic": ("photo.heic", heic_bytes()),
        "zip_as_png": ("archive.png", zip_bytes()),
        "random": ("random.bin", random_bytes()),
        "pdf_text": ("report.pdf", pdf_bytes(["Invoice INV-20931\nTotal 420 EUR",
                                              "Page two: payment due March 7"])),
        "pdf_scanned": ("scan.pdf", scanned_pdf_bytes()),
        "pdf_encrypted": ("secret.pdf", pdf_bytes(["top secret"], encrypted=True)),
        "pdf_truncated": ("broken.pdf", pdf_bytes(["cut short"])[:60]),
        "txt": ("notes.txt", TXT.encode()),
        "md": ("runbook.md", MD.encode()),
        "txt_utf16": ("notes16.txt", TXT.encode("utf-16")),
    }


def write_corpus(folder: Path, *, bomb: bool = True) -> dict[str, Path]:
    """Write every corpus file into ``folder``; ``bomb`` adds the 60000x60000 PNG (0.4 MB)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = corpus_bytes()
    if bomb:
        files["bomb_png"] = ("bomb.png", bomb_png_bytes())
    out: dict[str, Path] = {}
    for key, (name, data) in files.items():
        path = folder / name
        path.write_bytes(data)
        out[key] = path
    return out


if __name__ == "__main__":  # pragma: no cover - handy for poking at files by hand
    import sys

    for k, p in write_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")).items():
        print(k, p, os.path.getsize(p))
