"""Deterministic test images for the benchmarks: natural-photo-like pictures without text,
text slides, a terminal screenshot, a document page and a phone screenshot.

Photos are built the way natural images look to a detector: a 1/f ("pink") spectrum, which
real scenes have, rather than white noise, which no camera produces after its own denoising.
A sky gradient, a horizon, soft-edged objects with their own texture, mild sensor grain, and
JPEG compression at the end. Small real photos are also used when scikit-learn ships its two
sample pictures (``china.jpg``, ``flower.jpg``).
"""

from __future__ import annotations

import io
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"

#: Photo sizes from 1 MP to 12 MP (4:3 and 3:2, landscape and portrait).
PHOTO_SIZES = [(1280, 960), (1600, 1200), (2048, 1536), (1200, 1600), (3000, 2000),
               (4032, 3024)]


def font(path: str, size: int) -> Any:
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _pink(rng: np.random.Generator, h: int, w: int, exponent: float = 1.8) -> np.ndarray:
    """A 1/f^exponent noise field in [-1, 1], made small and scaled up (cheap at 12 MP)."""
    sh, sw = max(8, h // 8), max(8, w // 8)
    fy = np.fft.fftfreq(sh)[:, None]
    fx = np.fft.rfftfreq(sw)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** exponent
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(sh, sw))
    field /= np.abs(field).max() + 1e-9
    img = Image.fromarray(((field + 1) * 127.5).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1


def photo(i: int, size: tuple[int, int] = (1280, 960)) -> Image.Image:
    """A deterministic natural-photo-like image with no text."""
    rng = np.random.default_rng(7000 + i)
    full = size
    # Photos are drawn at most 800 px wide and scaled up (cameras' own detail is soft at full
    # resolution too, and 160 of them must be quick to make); the grain is added at full size.
    k = max(1, -(-max(size) // 800))
    w, h = size[0] // k, size[1] // k
    horizon = int(h * rng.uniform(0.35, 0.65))
    y = np.arange(h, dtype=np.float32)[:, None]
    sky_top = rng.uniform(60, 200, 3)
    sky_bottom = rng.uniform(150, 250, 3)
    ground = rng.uniform(40, 160, 3)
    t = np.clip(y / max(horizon, 1), 0, 1)[..., None]
    sky = sky_top * (1 - t) + sky_bottom * t
    base = np.where((y < horizon)[..., None], sky, ground).astype(np.float32)
    base = np.broadcast_to(base, (h, w, 3)).copy()
    # Large-scale light and texture (clouds, grass, foliage): 1/f fields per channel.
    tex = _pink(rng, h, w)
    base += (tex * rng.uniform(25, 55))[..., None]
    base += np.stack([_pink(rng, h, w, 2.2) * 12 for _ in range(3)], axis=-1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    # Objects: soft blobs and boxes (trees, rocks, buildings), each with its own shading.
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(5, 14))):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(horizon // 2, h))
        rx, ry = int(rng.integers(w // 30, w // 6)), int(rng.integers(h // 30, h // 5))
        colour = (*(int(v) for v in rng.integers(20, 230, 3)), int(rng.integers(160, 255)))
        if rng.random() < 0.6:
            d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
        else:
            d.rectangle((cx - rx, cy - 2 * ry, cx + rx, cy + ry), fill=colour)
    layer = layer.filter(ImageFilter.GaussianBlur(max(1.5, w / 900)))
    img.paste(layer, (0, 0), layer)
    shade = np.asarray(img, dtype=np.float32)
    shade *= (1 + 0.15 * _pink(rng, h, w, 1.5))[..., None]
    img = Image.fromarray(np.clip(shade, 0, 255).astype(np.uint8))
    if k > 1:
        img = img.resize(full, Image.Resampling.BICUBIC)
    grain = rng.normal(0, 3.0, (full[1], full[0], 1)).astype(np.float32)  # after denoising
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255)
                           .astype(np.uint8))


def as_jpeg(image: Image.Image, quality: int = 88) -> Image.Image:
    """Round-trip through JPEG (what a phone hands over), decoded again."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


TOPICS = [
    ("Q3 2025 Results", ["Revenue grew 12% year over year to $48.2M",
                         "Operating margin improved from 14.1% to 17.6%",
                         "EMEA led growth (+21%), APAC flat, Americas +9%",
                         "Churn fell to 2.3% after the onboarding redesign"]),
    ("Hiring Plan 2026", ["Twelve engineers for the data platform team",
                          "Two designers for the mobile app redesign",
                          "Support in Lisbon opens in March",
                          "Budget approved by the board on 14 May"]),
    ("Incident Postmortem", ["Database failover took 41 minutes",
                             "Root cause: expired TLS certificate on replica",
                             "Alert fired but paged the wrong rotation",
                             "Action: automate certificate renewal"]),
    ("Roadmap Q4", ["Launch webhooks v2 with retries",
                    "Single sign-on for enterprise plans",
                    "Rate limits per API key, not per account",
                    "Deprecate the legacy CSV importer"]),
    ("Security Audit", ["SOC 2 Type II report due in November",
                        "Rotate all production secrets quarterly",
                        "Enforce hardware keys for administrators",
                        "Pen test found two medium issues, both fixed"]),
]


def slide(i: int, size: tuple[int, int] = (1280, 720)) -> Image.Image:
    """A presentation slide: coloured title bar, four or five bullets."""
    rng = np.random.default_rng(9000 + i)
    w, h = size
    title, bullets = TOPICS[i % len(TOPICS)]
    bg = tuple(int(v) for v in rng.integers(235, 256, 3))
    bar = tuple(int(v) for v in rng.integers(20, 120, 3))
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w, h // 7), fill=bar)
    d.text((w // 25, h // 28), f"{title} ({i})", font=font(SANS, h // 16), fill="white")
    body = font(SANS, h // 28)
    for k, line in enumerate(bullets):
        d.text((w // 18, h // 5 + k * h // 9), f"\u2022 {line}", font=body, fill=(25, 25, 25))
    return img


def terminal(size: tuple[int, int] = (1280, 720)) -> Image.Image:
    img = Image.new("RGB", size, (18, 18, 18))
    d = ImageDraw.Draw(img)
    mono = font(MONO, 18)
    lines = ["$ kubectl get pods -n payments",
             "worker-5c6d7e8f9-abcde   0/1   CrashLoopBackOff   17   42m",
             "$ kubectl logs worker-5c6d7e8f9-abcde",
             "Error: connect ECONNREFUSED 10.0.3.17:5432",
             "exit status 0x80070005"]
    for k, line in enumerate(lines):
        d.text((16, 16 + k * 28), line, font=mono, fill=(220, 220, 220))
    return img


CONTRACT = ("the customer shall pay each invoice within thirty days of receipt and the "
            "provider shall keep all customer data in the agreed region")


def document_page(size: tuple[int, int] = (1190, 1684)) -> Image.Image:
    """A scanned A4 page at 144 dpi: 10 pt body text (~20 px), the smallest text OCR reads."""
    img = Image.new("RGB", size, (250, 250, 246))
    d = ImageDraw.Draw(img)
    d.text((110, 120), "Master Services Agreement", font=font(SANS, 40), fill=(10, 10, 10))
    body = font(SANS, 20)
    words = CONTRACT.split()
    for k in range(40):
        line = " ".join(words[(k * 3) % len(words):] + words[:(k * 3) % len(words)])[:88]
        d.text((110, 220 + k * 34), line, font=body, fill=(30, 30, 30))
    return img


def phone_screenshot(size: tuple[int, int] = (1080, 2340)) -> Image.Image:
    """A chat app screenshot: status bar, bubbles of 15-17 px-high text at phone density."""
    img = Image.new("RGB", size, (245, 245, 245))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, size[0], 180), fill=(40, 90, 160))
    d.text((60, 90), "Team chat", font=font(SANS, 48), fill="white")
    small = font(SANS, 34)
    for k in range(10):
        x = 60 if k % 2 == 0 else 420
        top = 260 + k * 200
        d.rounded_rectangle((x, top, x + 600, top + 140), 30,
                            fill=(255, 255, 255) if k % 2 == 0 else (200, 230, 255))
        d.text((x + 30, top + 45), f"Deploy {k + 1} finished at 14:{k:02d}", font=small,
               fill=(20, 20, 20))
    return img


def photo_with_sign(i: int, size: tuple[int, int] = (2048, 1536)) -> Image.Image:
    """A photo with a street sign in it: the gate must let it through."""
    img = photo(i, size)
    d = ImageDraw.Draw(img)
    w, h = size
    x, y = w // 5, h // 2
    d.rectangle((x, y, x + w // 3, y + h // 10), fill=(20, 90, 40))
    d.text((x + w // 60, y + h // 50), "Lyon Part-Dieu 3 km", font=font(SANS, h // 24),
           fill="white")
    return img


SIGNS = ["Lyon Part-Dieu 3 km", "Exit 12 Airport", "Platform 4 Geneva", "Open 9am to 6pm",
         "Parking Level B2"]


def photo_with_sign_text(i: int, size: tuple[int, int], share: float) -> tuple[Image.Image, str]:
    """A photo with a one-line sign whose letters are ``share`` of the photo's height, at a
    varying place and colour; returns the photo and the sign's text."""
    img = photo(300 + i, size)
    w, h = size
    px = int(h * share)
    text = SIGNS[i % len(SIGNS)]
    d = ImageDraw.Draw(img)
    f = font(SANS, px)
    x = int(w * (0.1 + 0.3 * ((i * 7) % 5) / 5))
    y = int(h * (0.3 + 0.4 * ((i * 3) % 5) / 5))
    shade = i % 4
    d.rectangle((x - px // 2, y - px // 3, x + d.textlength(text, font=f) + px // 2, y + px * 1.4),
                fill=(20 + 10 * shade, 90, 40 + 30 * shade))
    d.text((x, y), text, font=f, fill="white")
    return img, text


def sklearn_photos() -> list[tuple[str, Image.Image]]:
    """scikit-learn's two sample photos (a temple, a flower), when it is installed."""
    spec = find_spec("sklearn")
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent / "datasets" / "images"
    out = []
    for name in ("china.jpg", "flower.jpg"):
        if (folder / name).is_file():
            out.append((name, Image.open(folder / name).convert("RGB")))
    return out


def desktop_screenshot(size: tuple[int, int] = (1920, 1080), px: int = 13) -> Image.Image:
    """A full-HD desktop screenshot with small UI text (menus, a code editor, a status bar)."""
    img = Image.new("RGB", size, (236, 236, 236))
    d = ImageDraw.Draw(img)
    ui = font(SANS, px)
    code = font(MONO, px + 1)
    d.rectangle((0, 0, size[0], px + 12), fill=(50, 50, 55))
    for k, item in enumerate(["File", "Edit", "View", "Go", "Run", "Terminal", "Help"]):
        d.text((10 + 70 * k, 5), item, font=ui, fill=(230, 230, 230))
    d.rectangle((0, px + 12, 260, size[1]), fill=(245, 245, 245))
    for k in range(30):
        d.text((14, px + 24 + k * (px + 9)), f"module_{k:02d}.py", font=ui, fill=(40, 40, 40))
    d.rectangle((260, px + 12, size[0], size[1] - 24), fill=(30, 30, 30))
    src = ["def handler(event, context):", "    user = event['user_id']",
           "    rows = db.query('SELECT * FROM orders WHERE user = %s', user)",
           "    return {'status': 200, 'count': len(rows)}"]
    for k in range(36):
        d.text((280, px + 24 + k * (px + 10)), src[k % len(src)], font=code,
               fill=(210, 210, 190))
    d.rectangle((0, size[1] - 24, size[0], size[1]), fill=(0, 120, 200))
    d.text((10, size[1] - 20), "Ln 42, Col 7  UTF-8  Python 3.11", font=ui, fill="white")
    return img
