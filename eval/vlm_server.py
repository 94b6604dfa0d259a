"""A stand-in vision model for measuring captions offline: an OpenAI-compatible server that
answers each caption request with the hand-written caption of the eval image it was sent.

Real vision models cannot run here, but what they would say about each image can be written
down (``captions.json``: for a slide its title and point, for an error screenshot what went
wrong and why, for a chart what it shows). The server recognises an image by a small
signature (a 16x16 grey thumbnail, normalised), so the re-encoded, downscaled JPEG that
PixRAG sends still matches; an image it does not know gets a plain generic caption.

    python eval/vlm_server.py --port 8765
    PIXRAG_INDEX__CAPTIONS=true PIXRAG_ANSWER__PROVIDER=openai-compatible \\
    PIXRAG_ANSWER__BASE_URL=http://127.0.0.1:8765/v1 pixrag index eval/images

It serves ``POST /v1/chat/completions`` (plain and streamed) and ``GET /stats`` (requests per
image, to check that each image is captioned once).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

HERE = Path(__file__).resolve().parent
SIDE = 16
MIN_CORRELATION = 0.9  # below it, an image is not one of the set
UNKNOWN = "An image that is not part of the evaluation set."

log = logging.getLogger(__name__)


def signature(image: Image.Image) -> np.ndarray:
    """A unit vector that survives JPEG re-encoding, resizing and small crops."""
    grey = np.asarray(image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX),
                      dtype=np.float32).ravel()
    grey -= grey.mean()
    norm = float(np.linalg.norm(grey))
    return grey / norm if norm > 0 else grey


class CaptionBook:
    """Captions by image, looked up by signature."""

    def __init__(self, images: Path, captions: dict[str, str]) -> None:
        self.names = sorted(n for n in captions if (images / n).is_file())
        self.captions = captions
        with_aspect = []
        for name in self.names:
            with Image.open(images / name) as im:
                with_aspect.append((signature(im), im.width / im.height))
        self.table = np.stack([s for s, _ in with_aspect]) if with_aspect else np.zeros((0, 1))
        self.aspects = np.array([a for _, a in with_aspect])

    @classmethod
    def load(cls, images: Path = HERE / "images", captions: Path = HERE / "captions.json"
             ) -> CaptionBook:
        return cls(images, json.loads(captions.read_text(encoding="utf-8")))

    def match(self, image: Image.Image) -> str | None:
        if not self.names:
            return None
        sims = self.table @ signature(image)
        # Aspect ratio breaks ties between look-alike templates of different shapes.
        aspect = image.width / image.height
        sims = sims - 0.5 * np.abs(np.log(self.aspects / aspect))
        best = int(np.argmax(sims))
        return self.names[best] if sims[best] >= MIN_CORRELATION else None


def _images(body: dict[str, Any]) -> list[bytes]:
    out = []
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:") and "," in url:
                try:
                    out.append(base64.b64decode(url.split(",", 1)[1]))
                except (binascii.Error, ValueError):
                    continue
    return out


class VisionServer:
    """The aiohttp app; ``requests`` counts caption requests per matched image name."""

    def __init__(self, book: CaptionBook) -> None:
        self.book = book
        self.requests: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, port: int = 0) -> VisionServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> VisionServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def caption_for(self, data: bytes) -> str:
        try:
            with Image.open(io.BytesIO(data)) as im:
                name = self.book.match(im)
        except OSError:
            name = None
        self.requests[name or "?"] += 1
        return self.book.captions[name] if name else UNKNOWN

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.requests))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        images = _images(body)
        text = " ".join(self.caption_for(d) for d in images) if images else UNKNOWN
        model = body.get("model", "fake-vlm")
        usage = {"prompt_tokens": 800, "completion_tokens": len(text.split()),
                 "total_tokens": 800 + len(text.split())}
        base = {"id": "chatcmpl-vlm", "created": 1, "model": model}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "usage": usage,
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant",
                                                               "content": text}}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in ({"role": "assistant", "content": text}, {}):
            data = {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": chunk,
                                 "finish_reason": None if chunk else "stop"}]}
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


async def _serve(port: int) -> None:
    server = await VisionServer(CaptionBook.load()).start(port)
    print(f"captions for {len(server.book.names)} images at {server.base_url}",  # noqa: T201
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
