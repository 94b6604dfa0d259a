"""Make the 8-bit text detector that PixRAG ships (``core/media/models/``).

    .venv/bin/python scripts/quantize_ocr.py [--out core/media/models]

Static int8 quantization (QDQ, per-channel weights) of the PP-OCRv6 small detector that the
rapidocr wheel bundles, calibrated on the inputs the detector really receives: the gate's
half-size pass and the full pass over synthetic slides, terminals, a document page, a phone
and a desktop screenshot, photos of 1 to 12 MP with a sign and without text
(``benchmarks/synthetic.py``; never the evaluation images, which measure the result).

Only the detector is quantized, and PixRAG runs it only as the gate (the text-presence pass
before a read; the whole OCR cost of a photo without text), when ``[index] ocr_int8 = true``:
there it reads the same words on slides and screenshots in 8 bits but finds fewer signs in
busy photos. As the full pass it found fewer signs still, and the recogniser in 8 bits
misread about one word in a hundred more (``docs/BENCHMARKS.md``, "OCR in 8 bits").
Needs ``onnx`` (a dev dependency); the result is deterministic for a given rapidocr and
onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import synthetic  # noqa: E402

from core.media import ocr  # noqa: E402

#: At most this many calibration inputs (about 36 are captured).
CALIBRATION = 80


def _captured_inputs() -> list[np.ndarray]:
    """The detector's inputs while the shipped fp32 reader reads the calibration images."""
    images = [synthetic.slide(100 + i) for i in range(5)] + [
        synthetic.terminal(), synthetic.document_page(), synthetic.phone_screenshot(),
        synthetic.desktop_screenshot(px=15), synthetic.as_jpeg(synthetic.photo_with_sign(7)),
    ] + [synthetic.as_jpeg(synthetic.photo(500 + i)) for i in range(4)]
    # Photos of every size, with and without a sign: calibrated on slides and screenshots
    # alone, the 8-bit gate missed more signs in large photos.
    images += [synthetic.as_jpeg(synthetic.photo_with_sign(20 + i, size)) for i, size in
               enumerate([(1280, 960), (2048, 1536), (4032, 3024), (1600, 1200)])]
    images += [synthetic.as_jpeg(synthetic.photo(520 + i, size)) for i, size in
               enumerate(synthetic.PHOTO_SIZES)]
    gated, full = ocr.RapidReader(int8=False), ocr.RapidReader(gate=False, int8=False)
    captured: list[np.ndarray] = []
    for reader in (gated, full):
        engine = reader._load()  # single-threaded here: no lock needed
        det = engine._load_det_model()
        session = det.session
        det.session = _Recording(session, captured)
        try:
            # The full pass on the slides and screenshots only (large photos: slow, and the
            # gate's inputs already cover them).
            for image in images if reader is gated else images[:10]:
                reader.read(image)
        finally:
            det.session = session
    random.Random(0).shuffle(captured)  # noqa: S311 - a fixed order, not a secret
    return captured[:CALIBRATION]


class _Recording:
    """The detector's session, keeping a copy of every input it is given."""

    def __init__(self, session: Any, into: list[np.ndarray]) -> None:
        self._session = session
        self._into = into

    def __call__(self, x: np.ndarray) -> Any:
        self._into.append(np.array(x))
        return self._session(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ocr.SHIPPED_MODELS)
    args = ap.parse_args()
    import onnx
    import onnxruntime
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = ocr._bundled_models() / ocr._DET
    inputs = _captured_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        if model.opset_import[0].version < 13:  # per-channel QDQ needs DequantizeLinear(axis)
            onnx.save(version_converter.convert_version(model, 13), str(pre))
        name = onnxruntime.InferenceSession(
            str(pre), providers=["CPUExecutionProvider"]).get_inputs()[0].name

        class Calibration(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter([{name: x} for x in inputs])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._it, None)

        args.out.mkdir(parents=True, exist_ok=True)
        target = args.out / ocr.DET_INT8
        quantize_static(str(pre), str(target), Calibration(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    print(f"{target}: {target.stat().st_size / 1e6:.1f} MB from {source.name},"
          f" {len(inputs)} calibration inputs")


if __name__ == "__main__":
    main()
