#!/usr/bin/env python3
# ruff: noqa: S311, T201  (seeded random is the point; a script that reports what it built)
"""Build PixRAG's labelled evaluation set.

Regenerates, deterministically and with Pillow only:

  eval/images/img_NNN.png   ~120 synthetic images: presentation slides, terminal / IDE
                            error screenshots and charts (indexed by `pixrag index eval/images`)
  eval/queries/*.jpg        edited copies of ~30 images (reverse-image queries; NOT indexed)
  eval/eval.json            text questions paraphrasing image content, with a dev/test split
  eval/eval_extra.json      more text questions of the same kind (a spare pool, same dev/test split)
  eval/eval_images.json     reverse-image queries {"query_image", "target"}
  eval/manifest.json        what each image shows (kind, title) - for debugging results

Usage:  python eval/build_eval.py            (from the repository root or anywhere)
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

sys.dont_write_bytecode = True  # keep eval/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
from content import CHARTS, SLIDES, TERMINALS  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
QUERIES = HERE / "queries"
SEED = 20250604

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def font(name: str, size: int):
    key = (name, size)
    if key not in _font_cache:
        path = FONT_DIR / f"{name}.ttf"
        try:
            _font_cache[key] = ImageFont.truetype(str(path), size)
        except OSError:
            _font_cache[key] = ImageFont.load_default(size=size)
    return _font_cache[key]


def text_w(draw: ImageDraw.ImageDraw, s: str, f) -> float:
    return draw.textlength(s, font=f)


def wrap(draw, s: str, f, width: float) -> list[str]:
    words, lines, cur = s.split(" "), [], ""
    for w in words:
        trial = w if not cur else cur + " " + w
        if text_w(draw, trial, f) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = w
    if cur:
        lines.append(cur)
    return lines


def hexc(s: str) -> tuple[int, int, int]:
    s = s.lstrip("#")
    return tuple(int(s[i : i + 2], 16) for i in (0, 2, 4))


def save_png(img: Image.Image, path: Path, colors: int = 96) -> None:
    img = img.convert("RGB").quantize(
        colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    img.save(path, format="PNG", optimize=True)


# --------------------------------------------------------------------------- slides
SLIDE_THEMES = [
    # bg, title, text, accent, band-text
    dict(bg="#FFFFFF", title="#1F2937", text="#374151", accent="#2563EB", band="#FFFFFF"),
    dict(bg="#0F172A", title="#F8FAFC", text="#CBD5E1", accent="#38BDF8", band="#0F172A"),
    dict(bg="#FFFBF5", title="#7C2D12", text="#431407", accent="#EA580C", band="#FFFFFF"),
    dict(bg="#F0FDF4", title="#14532D", text="#1F2937", accent="#16A34A", band="#FFFFFF"),
    dict(bg="#FAF5FF", title="#4C1D95", text="#312E81", accent="#7C3AED", band="#FFFFFF"),
    dict(bg="#1E1E1E", title="#FDE68A", text="#E5E7EB", accent="#F59E0B", band="#1E1E1E"),
    dict(bg="#F8FAFC", title="#0F766E", text="#334155", accent="#0D9488", band="#FFFFFF"),
    dict(bg="#FFF1F2", title="#881337", text="#3F3F46", accent="#E11D48", band="#FFFFFF"),
]
SLIDE_LAYOUTS = ["band", "sidebar", "centered", "split", "plain"]


def render_slide(spec: dict, idx: int, rng: random.Random) -> Image.Image:
    W, H = 1280, 720
    th = SLIDE_THEMES[spec.get("theme", idx) % len(SLIDE_THEMES)]
    layout = spec.get("layout") or SLIDE_LAYOUTS[idx % len(SLIDE_LAYOUTS)]
    bg, tc, xc, ac = (hexc(th[k]) for k in ("bg", "title", "text", "accent"))
    img = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(img)
    f_title = font("DejaVuSans-Bold", 44)
    f_sub = font("DejaVuSans-Oblique", 24)
    f_bul = font("DejaVuSans", 27)
    f_foot = font("DejaVuSans", 18)
    title, bullets = spec["title"], spec["bullets"]
    sub = spec.get("subtitle")

    if layout == "band":
        d.rectangle([0, 0, W, 150], fill=ac)
        tl = wrap(d, title, f_title, W - 140)
        y = 75 - len(tl) * 27
        for line in tl:
            d.text((70, y), line, font=f_title, fill=hexc(th["band"]))
            y += 54
        x0, y0, bw = 90, 190, W - 180
        if sub:
            d.text((x0 - 20, 165), sub, font=f_sub, fill=xc)
            y0 = 215
    elif layout == "sidebar":
        d.rectangle([0, 0, 28, H], fill=ac)
        tl = wrap(d, title, f_title, W - 160)
        y = 55
        for line in tl:
            d.text((80, y), line, font=f_title, fill=tc)
            y += 56
        if sub:
            d.text((82, y + 4), sub, font=f_sub, fill=ac)
            y += 40
        d.line([80, y + 14, 380, y + 14], fill=ac, width=4)
        x0, y0, bw = 100, y + 45, W - 200
    elif layout == "centered":
        tl = wrap(d, title, f_title, W - 200)
        y = 50
        for line in tl:
            d.text(((W - text_w(d, line, f_title)) / 2, y), line, font=f_title, fill=tc)
            y += 56
        if sub:
            d.text(((W - text_w(d, sub, f_sub)) / 2, y + 2), sub, font=f_sub, fill=xc)
            y += 38
        d.line([W / 2 - 120, y + 14, W / 2 + 120, y + 14], fill=ac, width=5)
        x0, y0, bw = 150, y + 50, W - 300
    elif layout == "split":
        d.rectangle([0, 0, 420, H], fill=ac)
        tl = wrap(d, title, font("DejaVuSans-Bold", 40), 340)
        y = max(120, H / 2 - len(tl) * 26 - 40)
        for line in tl:
            d.text((40, y), line, font=font("DejaVuSans-Bold", 40), fill=hexc(th["band"]))
            y += 52
        if sub:
            for sl in wrap(d, sub, f_sub, 340):
                d.text((40, y + 10), sl, font=f_sub, fill=hexc(th["band"]))
                y += 32
        x0, y0, bw = 470, 90, W - 520
    else:  # plain
        d.text((70, 50), title, font=f_title, fill=tc)
        y = 110
        if sub:
            d.text((72, y), sub, font=f_sub, fill=xc)
            y += 40
        d.line([0, y + 10, W, y + 10], fill=ac, width=2)
        x0, y0, bw = 90, y + 40, W - 180

    # bullets
    y = y0
    avail = H - 60 - y0
    lines = []
    for b in bullets:
        level = 1 if b.startswith("  ") else 0
        lines.append((level, wrap(d, b.strip(), f_bul, bw - 40 - level * 40)))
    total = sum(len(wl) for _, wl in lines) * 37 + len(lines) * 14
    gap = 14 if total <= avail else 6
    for level, wl in lines:
        bx = x0 + level * 40
        r = 7 if level == 0 else 5
        d.ellipse([bx, y + 12, bx + 2 * r, y + 12 + 2 * r], fill=ac)
        for _j, line in enumerate(wl):
            d.text((bx + 34, y), line, font=f_bul, fill=xc)
            y += 37
        y += gap
    # footer
    foot = spec.get("footer", "Company confidential")
    d.text((70 if layout != "split" else 470, H - 38), foot, font=f_foot, fill=xc)
    num = str(spec.get("page", rng.randint(3, 38)))
    d.text((W - 70 - text_w(d, num, f_foot), H - 38), num, font=f_foot, fill=xc)
    return img


# --------------------------------------------------------------------------- terminals
TERM_THEMES = {
    "dark": dict(
        bg="#1E1E1E",
        fg="#D4D4D4",
        bar="#323233",
        bartext="#CCCCCC",
        prompt="#6A9955",
        err="#F14C4C",
        warn="#CCA700",
        dim="#808080",
        path="#569CD6",
    ),
    "ubuntu": dict(
        bg="#300A24",
        fg="#EEEEEC",
        bar="#2C2C2C",
        bartext="#DDDDDD",
        prompt="#8AE234",
        err="#EF2929",
        warn="#FCE94F",
        dim="#AAAAAA",
        path="#729FCF",
    ),
    "solar": dict(
        bg="#002B36",
        fg="#93A1A1",
        bar="#073642",
        bartext="#EEE8D5",
        prompt="#859900",
        err="#DC322F",
        warn="#B58900",
        dim="#586E75",
        path="#268BD2",
    ),
    "mac": dict(
        bg="#151515",
        fg="#E8E8E8",
        bar="#3A3A3A",
        bartext="#D0D0D0",
        prompt="#5FD7FF",
        err="#FF5F5F",
        warn="#FFD75F",
        dim="#8A8A8A",
        path="#87AFFF",
    ),
    "dracula": dict(
        bg="#282A36",
        fg="#F8F8F2",
        bar="#21222C",
        bartext="#F8F8F2",
        prompt="#50FA7B",
        err="#FF5555",
        warn="#F1FA8C",
        dim="#6272A4",
        path="#BD93F9",
    ),
}
ERR_WORDS = (
    "error",
    "Error",
    "ERROR",
    "FATAL",
    "fatal:",
    "panic:",
    "Traceback",
    "CONFLICT",
    "Exception",
    "failed",
    "FAILED",
    "denied",
    "Denied",
    "Segmentation",
    "OOMKilled",
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "[emerg]",
    "[error]",
    "ERR!",
    "Killed",
    "rejected",
)
WARN_WORDS = ("warning", "WARN", "Warning", "hint:", "help:", "note:", "-->")


def line_color(line: str, th: dict, prompt_prefixes: tuple[str, ...]) -> str:
    s = line.lstrip()
    if any(line.startswith(p) for p in prompt_prefixes):
        return "prompt"
    if any(w in line for w in ERR_WORDS):
        return "err"
    if any(s.startswith(w) for w in WARN_WORDS) or "warning" in s[:20]:
        return "warn"
    if s.startswith(('File "', "at ", "#", "//")):
        return "path"
    return "fg"


def render_terminal(spec: dict, idx: int, rng: random.Random) -> Image.Image:
    W, H = spec.get("size", (1280, 760))
    th = TERM_THEMES[spec.get("theme", list(TERM_THEMES)[idx % len(TERM_THEMES)])]
    fsize = spec.get("font", 19)
    f = font("DejaVuSansMono", fsize)
    fb = font("DejaVuSansMono-Bold", fsize)
    img = Image.new("RGB", (W, H), hexc(th["bg"]))
    d = ImageDraw.Draw(img)
    style = spec.get("style", "term")
    top = 0
    # window chrome
    bar_h = 34
    d.rectangle([0, 0, W, bar_h], fill=hexc(th["bar"]))
    for i, c in enumerate(("#FF5F57", "#FEBC2E", "#28C840")):
        d.ellipse([14 + i * 22, 11, 26 + i * 22, 23], fill=hexc(c))
    wt = spec.get("window", "bash")
    ft = font("DejaVuSans", 16)
    d.text(((W - text_w(d, wt, ft)) / 2, 8), wt, font=ft, fill=hexc(th["bartext"]))
    top = bar_h
    if style == "ide":
        # tab strip like an editor's bottom panel
        d.rectangle([0, top, W, top + 34], fill=(37, 37, 38))
        x = 16
        for name in ("PROBLEMS", "OUTPUT", "DEBUG CONSOLE", "TERMINAL", "PORTS"):
            col = (231, 231, 231) if name == "TERMINAL" else (150, 150, 150)
            d.text((x, top + 8), name, font=font("DejaVuSans", 15), fill=col)
            if name == "TERMINAL":
                d.line(
                    [x, top + 31, x + text_w(d, name, font("DejaVuSans", 15)), top + 31],
                    fill=(0, 122, 204),
                    width=2,
                )
            x += text_w(d, name, font("DejaVuSans", 15)) + 28
        top += 34
    elif style == "console":
        # browser devtools console
        d.rectangle([0, top, W, top + 34], fill=(41, 42, 45))
        x = 16
        for name in ("Elements", "Console", "Sources", "Network", "Performance", "Application"):
            col = (232, 234, 237) if name == "Console" else (154, 160, 166)
            d.text((x, top + 8), name, font=font("DejaVuSans", 15), fill=col)
            if name == "Console":
                d.line(
                    [x, top + 31, x + text_w(d, name, font("DejaVuSans", 15)), top + 31],
                    fill=(138, 180, 248),
                    width=2,
                )
            x += text_w(d, name, font("DejaVuSans", 15)) + 26
        top += 34
    pad = 18
    cw = text_w(d, "M", f)
    maxc = int((W - 2 * pad) / cw)
    lh = int(fsize * 1.38)
    prompts = tuple(spec.get("prompts", ("$ ",))) + ("❯ ", "PS ", "➜ ")

    def to_rows(lines: list[str]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for raw in lines:
            kind = line_color(raw, th, prompts)
            for tag in ("err", "dim", "warn", "fg"):
                if raw.startswith(f"!{tag} "):
                    raw, kind = raw[len(tag) + 2 :], tag
            if not raw:
                rows.append(("", kind))
                continue
            while len(raw) > maxc:
                cut = raw.rfind(" ", 0, maxc)
                cut = cut if cut > maxc * 0.6 else maxc
                rows.append((raw[:cut], kind))
                raw = raw[cut:].lstrip() if cut < maxc else raw[cut:]
            rows.append((raw, kind))
        return rows

    rows = to_rows(spec["lines"])
    visible = (H - top - 2 * pad) // lh
    # earlier shell history above the error, as in a real screenshot (noise for retrieval)
    if spec.get("prompts") and style != "console" and spec.get("noise", True):
        p0 = spec["prompts"][0]
        blocks = [list(b) for b in NOISE]
        rng.shuffle(blocks)
        budget = visible - len(rows) - rng.randint(1, 4)
        pre: list[str] = []
        for b in blocks[: rng.randint(1, 4)]:
            b = [p0 + x[2:] if x.startswith("$ ") else x for x in b]
            if len(to_rows(pre + b)) <= budget:
                pre += b
        rows = to_rows(pre) + rows
    visible = (H - top - 2 * pad) // lh
    if len(rows) > visible:  # scrolled: keep the bottom, like a real terminal
        rows = rows[-visible:]
    y = top + pad
    for text, kind in rows:
        if style == "console" and kind == "err":
            d.rectangle([0, y - 3, W, y + lh - 3], fill=(78, 36, 41))
        if kind == "prompt":
            # split prompt from command
            for p in prompts:
                if text.startswith(p):
                    break
            else:
                p = ""
            pre = p
            if "$ " in text[:80] and not pre:
                pre = text[: text.index("$ ") + 2]
            d.text((pad, y), pre, font=fb, fill=hexc(th["prompt"]))
            d.text((pad + text_w(d, pre, fb), y), text[len(pre) :], font=f, fill=hexc(th["fg"]))
        else:
            d.text((pad, y), text, font=f, fill=hexc(th[kind]))
        y += lh
    if spec.get("cursor", True):
        d.rectangle([pad, y, pad + cw, y + fsize + 2], fill=hexc(th["fg"]))
    return img


NOISE = [
    ["$ ls", "Makefile  README.md  docker-compose.yml  docs  scripts  src  tests"],
    [
        "$ git status",
        "On branch main",
        "Your branch is up to date with 'origin/main'.",
        "",
        "nothing to commit, working tree clean",
    ],
    [
        "$ git log --oneline -3",
        "a41c9e2 (HEAD -> main) fix lint warnings",
        "9b03d17 bump dependencies",
        "e77f210 add /healthz endpoint",
    ],
    ["$ date", "Tue Oct 14 09:12:37 UTC 2025"],
    ["$ uptime", " 09:12:40 up 12 days,  3:04,  2 users,  load average: 0.41, 0.37, 0.33"],
    ["$ export LOG_LEVEL=debug"],
    ["$ source .env"],
    ["$ history | tail -n 2", "  501  vim .env", "  502  make lint"],
    ["$ echo $SHELL", "/bin/zsh"],
    ["$ make lint", "ruff check .", "All checks passed!"],
]


# --------------------------------------------------------------------------- charts
PALETTES = [
    ["#2563EB", "#F97316", "#10B981", "#EF4444", "#8B5CF6", "#EAB308", "#06B6D4", "#EC4899"],
    ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7"],
    ["#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#E6AB02", "#A6761D", "#666666"],
    ["#0EA5E9", "#6366F1", "#F43F5E", "#84CC16", "#F59E0B", "#14B8A6", "#A855F7", "#64748B"],
]


def fmt(v: float, unit: str = "") -> str:
    s = f"{v:,.1f}" if isinstance(v, float) and not v.is_integer() else f"{int(v):,}"
    return s + unit


def nice_max(v: float) -> tuple[float, float]:
    """A round axis maximum a little above v, and a round tick step."""
    if v <= 0:
        return 1, 0.2
    e = 10 ** math.floor(math.log10(v))
    top = next(m * e for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12) if m * e >= v * 1.08)
    for n in (5, 4, 6, 3):
        step = top / n
        mant = step / 10 ** math.floor(math.log10(step))
        if abs(mant * 2 - round(mant * 2)) < 1e-9:
            return top, step
    return top, top / 5


def render_chart(spec: dict, idx: int, rng: random.Random) -> Image.Image:
    W, H = spec.get("size", (1200, 750))
    dark = spec.get("dark", False)
    bg = (24, 26, 32) if dark else ((255, 255, 255) if idx % 3 else (250, 250, 247))
    fg = (230, 230, 230) if dark else (33, 37, 41)
    grid = (60, 64, 72) if dark else (225, 228, 232)
    pal = [hexc(c) for c in PALETTES[spec.get("palette", idx) % len(PALETTES)]]
    img = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(img)
    f_title = font("DejaVuSans-Bold", 32)
    f_lab = font("DejaVuSans", 22)
    f_tick = font("DejaVuSans", 19)
    f_val = font("DejaVuSans-Bold", 18)
    title = spec["title"]
    d.text(((W - text_w(d, title, f_title)) / 2, 24), title, font=f_title, fill=fg)
    top = 80
    if spec.get("subtitle"):
        st = spec["subtitle"]
        d.text(
            ((W - text_w(d, st, f_lab)) / 2, 66),
            st,
            font=f_lab,
            fill=(150, 150, 150) if not dark else (170, 170, 170),
        )
        top = 110
    kind = spec["type"]
    unit = spec.get("unit", "")
    series = spec["series"]  # list of (name, values)
    cats = spec.get("categories", [])

    if kind == "pie":
        name, vals = series[0]
        total = sum(vals)
        cx, cy, r = 400, (top + H) / 2 + 10, min(280, (H - top - 60) / 2)
        ang = -90.0
        for i, v in enumerate(vals):
            sweep = 360.0 * v / total
            d.pieslice(
                [cx - r, cy - r, cx + r, cy + r],
                ang,
                ang + sweep,
                fill=pal[i % len(pal)],
                outline=bg,
                width=3,
            )
            mid = math.radians(ang + sweep / 2)
            pct = f"{100 * v / total:.0f}%"
            if sweep > 18:
                tx, ty = cx + 0.66 * r * math.cos(mid), cy + 0.66 * r * math.sin(mid)
                d.text(
                    (tx - text_w(d, pct, f_val) / 2, ty - 10), pct, font=f_val, fill=(255, 255, 255)
                )
            else:
                tx, ty = cx + 1.12 * r * math.cos(mid), cy + 1.12 * r * math.sin(mid)
                d.text((tx - text_w(d, pct, f_val) / 2, ty - 10), pct, font=f_val, fill=fg)
            ang += sweep
        lx, ly = 760, cy - len(vals) * 22
        for i, (c, v) in enumerate(zip(cats, vals, strict=False)):
            d.rectangle([lx, ly + 4, lx + 22, ly + 26], fill=pal[i % len(pal)])
            d.text((lx + 34, ly + 2), f"{c} ({fmt(v, unit)})", font=f_lab, fill=fg)
            ly += 44
        if spec.get("note"):
            d.text((40, H - 40), spec["note"], font=font("DejaVuSans", 17), fill=(140, 140, 140))
        return img

    horizontal = kind == "hbar"
    left = spec.get("left", 230 if horizontal else 110)
    right, bottom = W - 50, H - 95
    legend = len(series) > 1
    if legend:
        top += 40
    x0, y0, x1, y1 = left, top + 10, right, bottom
    allv = [v for _, vals in series for v in vals]
    if kind == "stacked":
        allv = [sum(s[1][i] for s in series) for i in range(len(cats))]
    vmax, step = nice_max(max(allv))
    if spec.get("ymax"):
        vmax, step = spec["ymax"], spec["ystep"]
    # axis labels
    xl, yl = spec.get("xlabel", ""), spec.get("ylabel", "")
    if horizontal:
        for k in range(int(round(vmax / step)) + 1):
            v = k * step
            x = x0 + (x1 - x0) * v / vmax
            d.line([x, y0, x, y1], fill=grid, width=1)
            s = fmt(round(v, 6))
            d.text((x - text_w(d, s, f_tick) / 2, y1 + 8), s, font=f_tick, fill=fg)
        n = len(cats)
        slot = (y1 - y0) / n
        bh = slot * 0.62
        for i, c in enumerate(cats):
            v = series[0][1][i]
            y = y0 + i * slot + (slot - bh) / 2
            d.rectangle(
                [x0, y, x0 + (x1 - x0) * v / vmax, y + bh],
                fill=pal[(i if spec.get("multicolor") else 0) % len(pal)],
            )
            d.text((x0 - 12 - text_w(d, c, f_tick), y + bh / 2 - 11), c, font=f_tick, fill=fg)
            vs = fmt(v, unit)
            d.text((x0 + (x1 - x0) * v / vmax + 8, y + bh / 2 - 10), vs, font=f_val, fill=fg)
        d.line([x0, y0, x0, y1], fill=fg, width=2)
        if xl:
            d.text(((x0 + x1) / 2 - text_w(d, xl, f_lab) / 2, y1 + 42), xl, font=f_lab, fill=fg)
    else:
        for k in range(int(round(vmax / step)) + 1):
            v = k * step
            y = y1 - (y1 - y0) * v / vmax
            d.line([x0, y, x1, y], fill=grid, width=1)
            s = fmt(round(v, 6))
            d.text((x0 - 10 - text_w(d, s, f_tick), y - 11), s, font=f_tick, fill=fg)
        d.line([x0, y1, x1, y1], fill=fg, width=2)
        d.line([x0, y0, x0, y1], fill=fg, width=2)
        n = len(cats)
        slot = (x1 - x0) / n
        show_vals = spec.get("values", True)
        if kind in ("bar", "stacked"):
            ns = len(series) if kind == "bar" else 1
            bw = slot * 0.7 / ns
            base = [0.0] * n
            for si, (_name, vals) in enumerate(series):
                for i, v in enumerate(vals):
                    if kind == "bar":
                        bx = x0 + i * slot + slot * 0.15 + si * bw
                        yb, yt = y1, y1 - (y1 - y0) * v / vmax
                    else:
                        bx = x0 + i * slot + slot * 0.15
                        yb = y1 - (y1 - y0) * base[i] / vmax
                        yt = y1 - (y1 - y0) * (base[i] + v) / vmax
                        base[i] += v
                    col = pal[(i if (spec.get("multicolor") and ns == 1) else si) % len(pal)]
                    d.rectangle([bx, yt, bx + bw - 2, yb], fill=col)
                    if show_vals and (kind == "bar"):
                        vs = fmt(v, unit)
                        fv = f_val if ns <= 2 else font("DejaVuSans-Bold", 15)
                        d.text((bx + bw / 2 - text_w(d, vs, fv) / 2, yt - 24), vs, font=fv, fill=fg)
            if kind == "stacked" and show_vals:
                for i in range(n):
                    vs = fmt(base[i], unit)
                    d.text(
                        (
                            x0 + i * slot + slot / 2 - text_w(d, vs, f_val) / 2,
                            y1 - (y1 - y0) * base[i] / vmax - 24,
                        ),
                        vs,
                        font=f_val,
                        fill=fg,
                    )
        else:  # line
            for si, (_name, vals) in enumerate(series):
                pts = [
                    (x0 + i * slot + slot / 2, y1 - (y1 - y0) * v / vmax)
                    for i, v in enumerate(vals)
                ]
                d.line(pts, fill=pal[si % len(pal)], width=4, joint="curve")
                for px, py in pts:
                    d.ellipse([px - 6, py - 6, px + 6, py + 6], fill=pal[si % len(pal)])
                if show_vals:
                    for j, ((px, py), v) in enumerate(zip(pts, vals, strict=False)):
                        if (
                            spec.get("label_every", 1)
                            and j % spec.get("label_every", 1) == 0
                            or j == len(vals) - 1
                        ):
                            vs = fmt(v, unit)
                            d.text(
                                (px - text_w(d, vs, font("DejaVuSans", 16)) / 2, py - 30),
                                vs,
                                font=font("DejaVuSans", 16),
                                fill=fg,
                            )
        every = max(1, math.ceil(n / 14))
        for i, c in enumerate(cats):
            if i % every:
                continue
            cx = x0 + i * slot + slot / 2
            d.text((cx - text_w(d, c, f_tick) / 2, y1 + 10), c, font=f_tick, fill=fg)
        if xl:
            d.text(((x0 + x1) / 2 - text_w(d, xl, f_lab) / 2, y1 + 46), xl, font=f_lab, fill=fg)
        if yl:
            tmp = Image.new("RGBA", (int(text_w(d, yl, f_lab)) + 10, 32), (0, 0, 0, 0))
            ImageDraw.Draw(tmp).text((5, 2), yl, font=f_lab, fill=fg)
            tmp = tmp.rotate(90, expand=True)
            img.paste(tmp, (14, int((y0 + y1) / 2 - tmp.height / 2)), tmp)
    if legend:
        lx = x0
        ly = top - 30
        for si, (sname, _) in enumerate(series):
            d.rectangle([lx, ly + 3, lx + 20, ly + 23], fill=pal[si % len(pal)])
            d.text((lx + 28, ly), sname, font=f_lab, fill=fg)
            lx += 28 + text_w(d, sname, f_lab) + 36
    if spec.get("note"):
        d.text((x0, H - 34), spec["note"], font=font("DejaVuSans", 17), fill=(140, 140, 140))
    return img


# --------------------------------------------------------------------------- query edits
def edit_resize(img, rng):
    return img.resize((int(img.width * 0.6), int(img.height * 0.6)), Image.Resampling.LANCZOS), 85


def edit_jpeg35(img, rng):
    return img, 35


def edit_crop(img, rng):
    dx, dy = int(img.width * 0.12), int(img.height * 0.12)
    ox, oy = rng.randint(0, dx), rng.randint(0, dy)
    return img.crop((ox, oy, img.width - (dx - ox), img.height - (dy - oy))), 85


def edit_border(img, rng):
    col = rng.choice([(220, 38, 38), (37, 99, 235), (22, 163, 74), (234, 179, 8), (0, 0, 0)])
    return ImageOps.expand(img, border=24, fill=col), 85


def edit_bright(img, rng):
    return ImageEnhance.Brightness(img).enhance(1.3), 85


def edit_grey(img, rng):
    return ImageOps.grayscale(img).convert("RGB"), 85


def edit_screenshot(img, rng):
    """A screenshot of a chat / viewer window showing the image, scaled down, with UI around it."""
    W, H = 1600, 1000
    canvas = Image.new("RGB", (W, H), (49, 51, 56))
    d = ImageDraw.Draw(canvas)
    d.rectangle([0, 0, 240, H], fill=(43, 45, 49))
    f = font("DejaVuSans", 18)
    for i, ch in enumerate(("# general", "# design", "# incidents", "# random", "# eng-help")):
        d.text((24, 70 + i * 38), ch, font=f, fill=(148, 155, 164))
    d.rectangle([0, 0, W, 48], fill=(30, 31, 34))
    d.text((262, 13), "# eng-help", font=font("DejaVuSans-Bold", 19), fill=(242, 243, 245))
    d.ellipse([270, 80, 318, 128], fill=(88, 101, 242))
    d.text((332, 82), "sam.k", font=font("DejaVuSans-Bold", 18), fill=(242, 243, 245))
    d.text((332, 108), "anyone seen this before?", font=f, fill=(219, 222, 225))
    scale = min(1040 / img.width, 700 / img.height)
    small = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
    canvas.paste(small, (332, 148))
    d.rounded_rectangle([262, H - 70, W - 24, H - 22], radius=8, fill=(56, 58, 64))
    d.text((284, H - 58), "Message #eng-help", font=f, fill=(128, 132, 142))
    return canvas, 80


EDITS = [
    ("resize", edit_resize),
    ("jpeg35", edit_jpeg35),
    ("crop", edit_crop),
    ("border", edit_border),
    ("bright", edit_bright),
    ("grey", edit_grey),
    ("screenshot", edit_screenshot),
]


# --------------------------------------------------------------------------- build
def main() -> None:
    rng = random.Random(SEED)
    for folder in (IMAGES, QUERIES):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

    items = []  # (kind, spec)
    items += [("slide", s) for s in SLIDES]
    items += [("terminal", s) for s in TERMINALS]
    items += [("chart", s) for s in CHARTS]
    # neutral file names, in shuffled order, so a name says nothing about the content
    order = list(range(len(items)))
    rng.shuffle(order)
    names = {}
    for n, i in enumerate(order, 1):
        names[i] = f"img_{n:03d}.png"

    manifest, questions, extra_q = [], [], []
    counters = {"slide": 0, "terminal": 0, "chart": 0}
    for i, (kind, spec) in enumerate(items):
        local = counters[kind]
        counters[kind] += 1
        r = random.Random(f"{SEED}-{kind}-{local}")
        if kind == "slide":
            img = render_slide(spec, local, r)
        elif kind == "terminal":
            img = render_terminal(spec, local, r)
        else:
            img = render_chart(spec, local, r)
        name = names[i]
        save_png(img, IMAGES / name, colors=spec.get("colors", 64 if kind != "chart" else 48))
        title = spec.get("title") or spec.get("window")
        manifest.append({"file": name, "kind": kind, "title": title})
        for q in spec.get("q", []):
            questions.append({"kind": kind, "query": q, "target": name})
        for q in spec.get("xq", []):
            extra_q.append({"kind": kind, "query": q, "target": name})

    # dev/test split: alternate within each kind, so both halves hold all three kinds
    def split(qs: list[dict]) -> list[dict]:
        out, seen = [], {"slide": 0, "terminal": 0, "chart": 0}
        for q in qs:
            sp = "dev" if seen[q["kind"]] % 2 == 0 else "test"
            seen[q["kind"]] += 1
            out.append({"query": q["query"], "target": q["target"], "split": sp, "kind": q["kind"]})
        return out

    out, extra = split(questions), split(extra_q)

    # reverse-image queries: ~30 images, each with one edit, edits cycled
    picks = sorted(range(len(items)), key=lambda i: names[i])
    prng = random.Random(SEED + 1)
    chosen = sorted(prng.sample(picks, 30), key=lambda i: names[i])
    img_q = []
    for j, i in enumerate(chosen):
        ename, fn = EDITS[j % len(EDITS)]
        src = Image.open(IMAGES / names[i]).convert("RGB")
        edited, q = fn(src, prng)
        qname = f"q{j + 1:02d}_{ename}.jpg"
        edited.save(QUERIES / qname, format="JPEG", quality=q, optimize=True)
        img_q.append(
            {
                "query_image": f"queries/{qname}",
                "target": names[i],
                "edit": ename,
                "split": "dev" if j % 2 == 0 else "test",
            }
        )

    manifest.sort(key=lambda m: m["file"])
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    (HERE / "eval.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    (HERE / "eval_extra.json").write_text(json.dumps(extra, indent=1, ensure_ascii=False) + "\n")
    (HERE / "eval_images.json").write_text(json.dumps(img_q, indent=1) + "\n")
    size = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(
        f"images: {len(items)} {dict(counters)}; questions: {len(out)} "
        f"(dev {sum(q['split'] == 'dev' for q in out)}, "
        f"test {sum(q['split'] == 'test' for q in out)}); extra questions: {len(extra)}; "
        f"image queries: {len(img_q)}; eval/ size {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
