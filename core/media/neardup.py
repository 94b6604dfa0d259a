"""Near-duplicate (edited copy) detection with perceptual hashes, independent of CLIP.

An image is reduced to a small greyscale copy and its flat borders (padding, letterboxing,
slide margins) are trimmed. Ten views of the trimmed image are hashed (the whole, a centre
crop and crops anchored at each corner and side, so a copy cropped by ~10-15% on any side
lines up with one of them), plus the untrimmed whole. Each view gets a pHash (low DCT
frequencies vs their median: robust to resizing, recompression, brightness and contrast) and
two dHashes (horizontal and vertical gradients). One view pair's distance is the sum of the
three Hamming distances; two images' distance is the minimum over the view pairs in
``_PAIRS``. Summing hashes per view keeps unrelated images apart; the minimum over views buys
crop robustness.

Calibrated on 40 synthetic images (shapes, gradients, noise, photo-like, look-alike text
slides) and 11 edits each (tests/core/test_neardup.py, checked on three seeds): >= 99% of the
edited copies find their original as top-1 and ~98% are within ``DEFAULT_MAX_DISTANCE``,
while < 0.5% of unrelated pairs are (mostly text slides with the same layout). Hashing costs
~15 ms per image; ``distances`` is a vectorised popcount over the table.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.media.imageio import to_rgb

#: Views of the trimmed image that are hashed, as (left, top, right, bottom) fractions: the
#: whole, a centre crop, and crops anchored at each corner and side, so that a copy cropped
#: on any side lines up with one of them. View 0 (the whole image) must stay first.
_C = 0.88  # kept fraction of a crop view
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    ((1 - _C) / 2, (1 - _C) / 2, (1 + _C) / 2, (1 + _C) / 2),
    (0.0, 0.0, _C, _C), (1 - _C, 0.0, 1.0, _C), (0.0, 1 - _C, _C, 1.0), (1 - _C, 1 - _C, 1.0, 1.0),
    (0.0, 0.0, _C, 1.0), (1 - _C, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, _C), (0.0, 1 - _C, 1.0, 1.0),
)
#: Hash kinds per view: pHash, horizontal dHash, vertical dHash.
KINDS = 3
#: One more view: the whole image untrimmed, for images whose "border" is unstable.
HASHES: int = (len(VIEWS) + 1) * KINDS
# View pairs compared: the whole query against every view of the indexed image (the query
# is a crop of it) and every view of the query against the whole indexed image (the reverse).
_PAIRS = np.array([(0, j) for j in range(len(VIEWS))] + [(i, 0) for i in range(1, len(VIEWS))]
                  + [(len(VIEWS), len(VIEWS))])
#: Combined distance (bits, of 64 * KINDS per view pair) at or below which two images are
#: copies. Calibrated in tests/core/test_neardup.py.
DEFAULT_MAX_DISTANCE: int = 32

_WORK_SIDE = 256  # everything is computed on a small copy: hashes only see low frequencies
# The untrimmed view rescues images whose trim is unstable (a near-flat photo with a few
# blobs), but untrimmed slides (text on lots of white) all look alike: it only wins when it
# is clearly better than the trimmed views.
_RAW_PENALTY = 12
_CHUNK = 16_384
_BITS = np.uint64(1) << np.arange(64, dtype=np.uint64)


def _prepare(image: Image.Image) -> np.ndarray:
    """Small greyscale float copy (16-bit and alpha images handled like the decoder does)."""
    img = image if image.mode in ("L", "RGB") else to_rgb(image)
    if max(img.size) > _WORK_SIDE:
        img = img.copy()  # shrink first: converting a 4k image to grey costs more
        img.thumbnail((_WORK_SIDE, _WORK_SIDE), Image.Resampling.BOX)
    return np.asarray(img.convert("L"), dtype=np.float32)


def _flat_run(lines: np.ndarray, tolerance: float) -> tuple[int, float]:
    """How many leading ``lines`` (rows) are a flat border, and its colour.

    A border counts only if it ends at a clear edge (content much darker or brighter than
    it): a smooth gradient or a near-flat photo must not be nibbled away.
    """
    colour = float(np.median(lines[0]))
    dev = np.abs(lines - colour)
    bad = np.flatnonzero((dev > tolerance).mean(axis=1) > 0.02)
    if not bad.size:
        return len(lines), colour
    n = int(bad[0])
    if n and ((dev[n : n + 4] > 4 * tolerance).mean(axis=1) < 0.01).all():
        return 0, colour
    return n, colour


def _trim(a: np.ndarray, tolerance: float = 10.0, rounds: int = 4) -> np.ndarray:
    """Remove flat borders (padding, letterbox, slide margins) side by side.

    Each side is cut while its lines stay the colour of its outermost line. Another round
    peels a nested border (a black frame around a white margin) only where the next colour
    is clearly different: otherwise a smooth gradient would be eaten band after band.
    """
    last: list[float | None] = [None, None, None, None]
    for _ in range(rounds):
        h, w = a.shape
        if h < 8 or w < 8:
            break
        views = (a, a[::-1], a.T, a.T[::-1])  # top, bottom, left, right
        cuts = []
        for side, view in enumerate(views):
            n, colour = _flat_run(view, tolerance)
            prev = last[side]
            if n and prev is not None and abs(colour - prev) <= 3 * tolerance:
                n = 0  # the same border continuing as a gradient: stop here
            if n:
                last[side] = colour
            cuts.append(n)
        top, bottom, left, right = cuts
        if top + bottom >= 0.9 * h or left + right >= 0.9 * w:
            break  # (nearly) blank image, or a speck on a blank page: keep it whole
        if not any(cuts):
            break
        a = a[top : h - bottom, left : w - right]
    return a


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32))
    return np.asarray(img.resize(size, Image.Resampling.BOX), dtype=np.float64)


def _pack(bits: np.ndarray) -> np.uint64:
    return np.uint64(np.bitwise_or.reduce(_BITS[bits.ravel()[:64]]))


def _view_hashes(a: np.ndarray) -> list[np.uint64]:
    small = _resize(a, (32, 32))
    from scipy.fft import dctn  # here, not at import: 0.7 s that a text search never needs

    low = dctn(small, type=2, norm="ortho")[:8, :8].ravel()
    phash = _pack(low > np.median(low[1:]))
    dh = _resize(a, (9, 8))
    dhash = _pack(dh[:, 1:] > dh[:, :-1])
    dv = _resize(a, (8, 9))
    vhash = _pack(dv[1:, :] > dv[:-1, :])
    return [phash, dhash, vhash]


def hash_image(image: Image.Image) -> np.ndarray:
    """``HASHES`` 64-bit perceptual hashes of ``image`` (``uint64``, shape ``(HASHES,)``)."""
    raw = _prepare(image)
    a = _trim(raw)
    h, w = a.shape
    out: list[np.uint64] = []
    for fx0, fy0, fx1, fy1 in VIEWS:
        x0, y0 = round(w * fx0), round(h * fy0)
        x1, y1 = max(x0 + 1, round(w * fx1)), max(y0 + 1, round(h * fy1))
        out.extend(_view_hashes(a[y0:y1, x0:x1]))
    out.extend(_view_hashes(raw))
    return np.array(out, dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    as_bytes = x.view(np.uint8).reshape(*x.shape, 8)  # pragma: no cover - numpy 1.x
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)


def distances(query: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Distance of ``query`` to each row of ``table`` (``(n, HASHES)``): lower is closer."""
    table = np.asarray(table, dtype=np.uint64).reshape(-1, len(VIEWS) + 1, KINDS)
    q = np.asarray(query, dtype=np.uint64).reshape(len(VIEWS) + 1, KINDS)
    qp = q[_PAIRS[:, 0]][None, :, :]
    out = np.empty(len(table), dtype=np.int64)
    # In chunks so a 1M-row table does not need gigabytes of temporaries.
    for start in range(0, len(table), _CHUNK):
        rows = table[start : start + _CHUNK]
        # (rows, pairs, kinds) -> bits differing summed over kinds -> best view pair per row.
        per_pair = _popcount(qp ^ rows[:, _PAIRS[:, 1], :]).sum(axis=-1)
        per_pair[:, -1] += _RAW_PENALTY
        out[start : start + len(rows)] = per_pair.min(axis=1)
    return out


def to_text(h: np.ndarray) -> str:
    """Hex form for metadata (16 hex digits per hash)."""
    return "".join(f"{int(v):016x}" for v in np.asarray(h, dtype=np.uint64))


def from_text(s: str) -> np.ndarray:
    if len(s) != 16 * HASHES:
        raise ValueError(f"near-duplicate hash must be {16 * HASHES} hex digits, got {len(s)}")
    return np.array([int(s[i : i + 16], 16) for i in range(0, len(s), 16)], dtype=np.uint64)
