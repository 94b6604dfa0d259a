"""RapidReader on rendered text: real OCR models (bundled in the rapidocr wheel), no network."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.media import ocr
from core.media.ocr import RapidReader
from core.protocols import TextReader

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MONO = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _render(lines: list[tuple[tuple[int, int], str]], size=(800, 240), *, bg="white", fg="black",
            font: Path = FONT, px: int = 28) -> Image.Image:
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    for xy, text in lines:
        draw.text(xy, text, font=_font(font, px), fill=fg)
    return image


@pytest.fixture(scope="module")
def reader() -> RapidReader:
    return RapidReader()


def test_is_a_text_reader_and_lazy() -> None:
    reader = RapidReader()
    assert isinstance(reader, TextReader)
    assert reader._engine is None  # nothing loaded until the first image with content


def test_reads_rendered_text_in_reading_order(reader: RapidReader) -> None:
    # Second line is drawn right part first: output must still go left to right.
    image = _render([((20, 20), "Invoice INV-20931 due March 7"),
                     ((480, 120), "Paid"), ((20, 120), "Status column")])
    text = reader.read(image)
    assert text.splitlines() == ["Invoice INV-20931 due March 7", "Status column Paid"]


def test_reads_terminal_screenshot(reader: RapidReader) -> None:
    lines = ["$ curl http://localhost:8080/api",
             "curl: (7) Failed: ERR_CONNECTION_REFUSED",
             "$ echo 0x80070005"]
    image = _render([((12, 14 + 32 * i), line) for i, line in enumerate(lines)], (860, 130),
                    bg=(12, 12, 12), fg=(230, 230, 230), font=MONO, px=20)
    text = reader.read(image)
    assert "ERR_CONNECTION_REFUSED" in text
    assert "0x80070005" in text
    assert "localhost:8080" in text
    assert len(text.splitlines()) == 3


def test_blank_and_tiny_images_are_empty_and_fast(reader: RapidReader) -> None:
    start = time.perf_counter()
    assert reader.read(Image.new("RGB", (1200, 900), "white")) == ""
    assert reader.read(Image.new("L", (640, 480), 30)) == ""
    assert reader.read(Image.new("RGB", (12, 300), "black")) == ""
    assert time.perf_counter() - start < 0.5


def test_transparent_tightly_cropped_png(reader: RapidReader) -> None:
    # Black text on a transparent background: naive RGB conversion makes it black on black.
    # Tightly cropped (text near the edges): without a margin the detector split "logo"
    # into "I t".
    image = Image.new("RGBA", (600, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((40, 30), "Transparent logo text", font=_font(FONT, 28),
                               fill=(0, 0, 0, 255))
    assert reader.read(image) == "Transparent logo text"


def test_large_image_is_read_within_bounded_time(reader: RapidReader) -> None:
    image = _render([((200, 300), "ANNUAL REPORT 2025")], (4800, 3000), px=150)
    start = time.perf_counter()
    text = reader.read(image)
    elapsed = time.perf_counter() - start
    assert text.lower() == "annual report 2025"
    assert elapsed < 30  # downscaled to 2000 px first; generous for a shared 2-core box


def test_concurrent_reads_are_serialised_safely(reader: RapidReader) -> None:
    image = _render([((20, 80), "Thread safe OCR")], (600, 200))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(reader.read(image)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == ["Thread safe OCR", "Thread safe OCR"]


def test_engine_uses_bundled_models_and_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.utils import download_file

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("RapidOCR tried to download a model")

    monkeypatch.setattr(download_file.DownloadFile, "run", no_download)
    reader = RapidReader()
    assert reader.read(_render([((20, 80), "Offline models")], (600, 200))) == "Offline models"
    cfg = reader._engine.cfg
    for section in (cfg.Det, cfg.Rec):
        assert Path(section.model_path).is_file()
        assert "rapidocr" in Path(section.model_path).parts
    assert reader.gate_detector == Path(cfg.Det.model_path)
    # With int8, the gate's detector is the 8-bit one shipped inside PixRAG.
    int8 = RapidReader(int8=True)
    assert int8.read(_render([((20, 80), "Offline models")], (600, 200))) == "Offline models"
    assert int8.gate_detector == ocr.SHIPPED_MODELS / ocr.DET_INT8
    assert int8.gate_detector.is_file()


def test_onnxruntime_threads_sleep_between_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spinning threads would take a core from CLIP between OCR runs (see _quiet_threads)."""
    import onnxruntime

    made: list[onnxruntime.SessionOptions] = []
    real = onnxruntime.InferenceSession

    def session(path: str, options: onnxruntime.SessionOptions, **kw: object) -> object:
        made.append(options)
        return real(path, options, **kw)

    reader = RapidReader()
    assert reader.read(_render([((20, 80), "Quiet threads")], (600, 200))) == "Quiet threads"
    engine = reader._engine
    for model in (engine.text_det, engine.text_rec):
        options = model.session.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    int8 = RapidReader(int8=True)
    assert int8.has_text(_render([((20, 80), "Quiet threads")], (600, 200)))
    assert [o.get_session_config_entry("session.intra_op.allow_spinning") for o in made] == ["0"]


def test_8bit_gate_reads_the_same_words() -> None:
    """The gate on the shipped int8 detector against the wheel's fp32 one: same text on a
    slide, a terminal and a sign in a photo, and no text on photos. (What it saves is CPU:
    measured by benchmarks/ocr_gate.py, not here.)"""
    int8, fp32 = RapidReader(int8=True), RapidReader()
    lines = ["$ kubectl get pods -n payments", "api-7d9f  0/1  CrashLoopBackOff  12  40m"]
    terminal = _render([((12, 14 + 32 * i), line) for i, line in enumerate(lines)], (860, 100),
                       bg=(12, 12, 12), fg=(230, 230, 230), font=MONO, px=20)
    sign = _photo(5, (1280, 960))
    ImageDraw.Draw(sign).rectangle((300, 400, 900, 480), fill=(20, 60, 140))
    ImageDraw.Draw(sign).text((320, 415), "Platform 4 Geneva", font=_font(FONT, 40),
                              fill="white")
    for image in (_slide(), terminal, sign):
        # The same words (3+ letters or digits: a stray "f" after "CrashLoopBack0ff" that one
        # of them reads is not a word).
        assert _words(int8.read(image)) == _words(fp32.read(image)) != []
    assert "Platform 4 Geneva" in int8.read(sign)
    assert "CrashLoopBack" in int8.read(terminal)
    photos = [_photo(seed) for seed in (6, 7)]
    assert [int8.has_text(p) for p in photos] == [False, False]
    assert int8.gate_detector == ocr.SHIPPED_MODELS / ocr.DET_INT8
    assert int8._gate_session is not None and fp32._gate_session is None


def _words(text: str) -> list[str]:
    return sorted(w for w in text.split() if sum(c.isalnum() for c in w) >= 3)


def test_missing_8bit_detector_falls_back_to_fp32(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ocr, "SHIPPED_MODELS", tmp_path)
    reader = RapidReader(int8=True)
    assert reader.read(_render([((20, 80), "Still reads")], (600, 200))) == "Still reads"
    assert reader.gate_detector is not None and reader.gate_detector.name == ocr._DET
    assert "is missing" in caplog.text


# The gate: a cheap text-presence test before the full read ---------------------------------
def _photo(seed: int, size=(960, 720)) -> Image.Image:
    """A natural-photo-like picture without text: 1/f texture (clouds, grass), a horizon,
    soft-edged objects, sensor grain, JPEG round trip."""
    rng = np.random.default_rng(seed)
    w, h = size

    def pink(exponent: float) -> np.ndarray:
        sh, sw = h // 8, w // 8
        f = np.sqrt(np.fft.rfftfreq(sw)[None, :] ** 2 + np.fft.fftfreq(sh)[:, None] ** 2)
        f[0, 0] = 1.0
        spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** exponent
        spec[0, 0] = 0
        field = np.fft.irfft2(spec, s=(sh, sw))
        field = ((field / (np.abs(field).max() + 1e-9) + 1) * 127.5).astype(np.uint8)
        return np.asarray(Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC),
                          dtype=np.float32) / 127.5 - 1

    y = np.arange(h, dtype=np.float32)[:, None, None]
    sky = np.array([90, 140, 210], np.float32) * (1 - y / h) + np.array([200, 220, 240]) * y / h
    base = np.where(y < h // 2, sky, np.array([60, 120, 50], np.float32))
    base = base + pink(1.8)[..., None] * 40 + np.stack([pink(2.2) * 12 for _ in range(3)], -1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
        r = int(rng.integers(30, 120))
        colour = tuple(int(v) for v in rng.integers(20, 230, 3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    pixels = np.asarray(img, np.float32) + rng.normal(0, 3.0, (h, w, 1))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=88)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _slide() -> Image.Image:
    image = Image.new("RGB", (1280, 720), (248, 248, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1280, 100), fill=(30, 60, 120))
    draw.text((50, 25), "Incident Postmortem", font=_font(FONT, 44), fill="white")
    for i, line in enumerate(["Database failover took 41 minutes",
                              "Root cause: expired TLS certificate on replica",
                              "Action: automate certificate renewal"]):
        draw.text((70, 170 + 80 * i), line, font=_font(FONT, 28), fill=(20, 20, 20))
    return image


class _Counted:
    """Counts the engine's full passes (detector at full size + recogniser) on the real
    engine object, without changing what they do."""

    def __init__(self, reader: RapidReader, monkeypatch: pytest.MonkeyPatch) -> None:
        reader.read(_render([((20, 80), "warm up")], (400, 200)))  # engine loaded
        engine = reader._engine
        self.full = 0
        self.recognised = 0
        steps, recognise = engine.run_ocr_steps, engine.recognize_txt

        def run_ocr_steps(*args: object) -> object:
            self.full += 1
            return steps(*args)

        def recognize_txt(*args: object) -> object:
            self.recognised += 1
            return recognise(*args)

        monkeypatch.setattr(engine, "run_ocr_steps", run_ocr_steps)
        monkeypatch.setattr(engine, "recognize_txt", recognize_txt)


def test_photo_without_text_skips_the_full_read(monkeypatch: pytest.MonkeyPatch) -> None:
    gated, plain = RapidReader(), RapidReader(gate=False)
    counted, counted_plain = _Counted(gated, monkeypatch), _Counted(plain, monkeypatch)
    photos = [_photo(seed) for seed in (1, 2, 3)]
    for photo in photos:
        assert gated.has_text(photo) is False
        assert gated.read(photo) == ""
        plain.read(photo)
    assert counted.full == 0 and counted.recognised == 0
    # Without the gate the same photos do go through the detector at full size.
    assert counted_plain.full == len(photos)


def test_slides_and_screenshots_read_the_same_with_the_gate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gated, plain = RapidReader(), RapidReader(gate=False)
    counted = _Counted(gated, monkeypatch)
    lines = ["$ curl http://localhost:8080/api", "curl: (7) Failed: ERR_CONNECTION_REFUSED"]
    terminal = _render([((12, 14 + 32 * i), line) for i, line in enumerate(lines)], (860, 100),
                       bg=(12, 12, 12), fg=(230, 230, 230), font=MONO, px=20)
    sign = _photo(4, (1280, 960))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((200, 500, 720, 580), fill=(20, 90, 40))
    draw.text((220, 515), "Lyon Part-Dieu 3 km", font=_font(FONT, 40), fill="white")
    for image in (_slide(), terminal, sign):
        assert gated.has_text(image) is True
        text = gated.read(image)
        assert text and text == plain.read(image)
    # Large text: the lines the gate found are read directly, no full-size detector pass.
    assert counted.full == 0 and counted.recognised == 3
    assert "Lyon Part-Dieu 3 km" in gated.read(sign)
    assert RapidReader(reuse_px=0).read(terminal) == plain.read(terminal)


def test_small_text_the_gate_half_sees_is_read_in_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 9-11 px text on a full-HD screenshot: at the gate's half size lines come out partial, cut
    # short or merged into one block and read badly, so the full pass runs and nothing is lost.
    # Both gates: the 8-bit one merges, cuts and splits such lines differently.
    gated, int8, plain = RapidReader(), RapidReader(int8=True), RapidReader(gate=False)
    counted, counted8 = _Counted(gated, monkeypatch), _Counted(int8, monkeypatch)
    for px in (9, 10, 11):  # merged into one block, partial lines, lines cut short
        lines = [((40, 40 + 2 * px * i), f"line {i}: deploy api-{i} failed with exit code {i}")
                 for i in range(6)]
        screen = _render(lines, (1920, 1080), px=px)
        full = plain.read(screen)
        assert "deploy api-0 failed" in full  # real text, read by the full pass
        assert gated.read(screen) == full
        assert int8.read(screen) == full
        if px < 11:  # 11 px: the fp32 gate's regions read right; the full pass may not run
            assert (counted.full, counted8.full) == (px - 8, px - 8)


def test_a_sign_the_full_pass_misses_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # A busy 3 MP photo with a sign: the gate reads the sign, a texture blob next to it reads
    # as junk (doubtful: the full pass runs), and the full pass finds nothing at all there.
    photo = _photo(51, (2048, 1536))
    draw = ImageDraw.Draw(photo)
    font, text, (x, y), px = _font(FONT, 69), "Lyon Part-Dieu 3 km", (409, 768), 69
    draw.rectangle((x - px // 2, y - px // 3, x + draw.textlength(text, font=font) + px // 2,
                    y + px * 1.4), fill=(20, 90, 40))
    draw.text((x, y), text, font=font, fill="white")
    assert "Lyon" not in RapidReader(gate=False).read(photo)
    reader = RapidReader()
    counted = _Counted(reader, monkeypatch)
    assert "Lyon Part-Dieu 3 km" in reader.read(photo)
    assert counted.full == 1


def test_has_text_on_blank_and_tiny_images_loads_nothing() -> None:
    reader = RapidReader()
    assert reader.has_text(Image.new("RGB", (800, 600), "white")) is False
    assert reader.has_text(Image.new("RGB", (10, 400), "black")) is False
    assert reader._engine is None


def test_cuda_start_failure_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # The GPU is the edge: pretend onnxruntime-gpu and a device are present, and the CUDA
    # engine fails to start (driver/cuDNN mismatch): OCR still works, on the CPU.

    started: list[bool] = []
    real = ocr._start_engine

    def start(params: dict, *, cuda: bool) -> object:
        started.append(cuda)
        if cuda:
            raise RuntimeError("CUDA driver version is insufficient")
        return real(params, cuda=cuda)

    monkeypatch.setattr(ocr, "_cuda_available", lambda: True)
    monkeypatch.setattr(ocr, "_start_engine", start)
    reader = RapidReader(int8=True)
    assert reader.read(_render([((20, 80), "Falls back")], (600, 200))) == "Falls back"
    assert started == [True, False]
    assert not reader._engine.cfg.EngineConfig.onnxruntime.use_cuda
    # On the CPU it fell back to, the gate runs the 8-bit detector.
    assert reader.gate_detector is not None and reader.gate_detector.name == ocr.DET_INT8


def test_gate_on_cuda_uses_the_fp32_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    # 8-bit (QDQ) models are a CPU speed-up: on a GPU the gate shares the engine's fp32 one.
    real = ocr._start_engine
    monkeypatch.setattr(ocr, "_cuda_available", lambda: True)
    monkeypatch.setattr(ocr, "_start_engine", lambda params, *, cuda: real(params, cuda=False))
    reader = RapidReader(int8=True)
    assert reader.read(_render([((20, 80), "On the GPU")], (600, 200))) == "On the GPU"
    assert reader.gate_detector is not None and reader.gate_detector.name == ocr._DET


def test_cuda_is_not_used_without_onnxruntime_gpu() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    assert ocr._cuda_available() is False


async def test_service_reader_follows_the_ocr_gate_setting(settings) -> None:
    from core.app import open_service
    from core.config import Secrets

    for gate, workers in ((True, 1), (False, 1), (True, 2)):
        s = settings.model_copy(update={"index": settings.index.model_copy(
            update={"ocr_gate": gate, "ocr_int8": not gate, "ocr_workers": workers})})
        async with open_service(s, Secrets({})) as service:
            reader = await service.c.reader()  # loaded on first use
            if isinstance(reader, ocr.ReaderPool):  # its engines start on demand
                reader = reader._take()
            assert reader is not None and reader.gate is gate and reader.int8 is not gate


def test_reader_pool_reads_in_parallel_on_engines_started_on_demand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[RapidReader] = []

    def make() -> RapidReader:
        made.append(RapidReader(threads=1))
        return made[-1]

    pool = ocr.ReaderPool(make, 2)
    assert isinstance(pool, TextReader) and made == []  # nothing loaded up front
    images = [_render([((20, 80), f"Invoice {n} paid")], (600, 200)) for n in range(6)]
    assert pool.read(images[0]) == "Invoice 0 paid" and len(made) == 1  # one query, one engine
    results: dict[int, str] = {}
    busy = threading.Barrier(2, timeout=60)
    real = RapidReader.read

    def read(self: RapidReader, image: Image.Image) -> str:
        if image is images[1] or image is images[2]:
            busy.wait()  # both reads inside an engine at once: they ran in parallel
        return real(self, image)

    monkeypatch.setattr(RapidReader, "read", read)
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, pool.read(images[n])))
               for n in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {n: f"Invoice {n} paid" for n in range(1, 6)}
    assert len(made) == 2 and len(pool.readers) == 2  # never more engines than asked for
    engine = made[0]._engine
    assert engine.cfg.EngineConfig.onnxruntime.intra_op_num_threads == 1


async def test_service_runs_as_many_ocr_engines_as_configured(settings, tmp_path: Path) -> None:
    from core.app import open_service
    from core.config import Secrets
    from core.types import Scope

    folder = tmp_path / "slides"
    folder.mkdir()
    for n in range(4):
        _render([((20, 80), f"Quarterly review {n}")], (600, 200)).save(folder / f"s{n}.png")
    s = settings.model_copy(update={"index": settings.index.model_copy(
        update={"ocr_workers": 2})})
    async with open_service(s, Secrets({})) as service:
        report = await service.index_paths([folder], "local")
        assert len(report.indexed) == 4 and not report.failed
        reader = await service.c.reader()
        assert isinstance(reader, ocr.ReaderPool) and reader.size == 2
        assert service.c.pools.ocr._max_workers == 2
        hits = await service.search("Quarterly review 3", Scope("local", admin=True))
        assert hits and "Quarterly review 3" in hits[0].text
