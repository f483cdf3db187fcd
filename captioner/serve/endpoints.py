"""The HTTP API: ``POST /caption``, ``GET /health`` and an upload page at ``/``, on FastAPI.

FastAPI (on Starlette, served by uvicorn) rather than a serving framework that batches by itself
(LitServe): the most used ASGI stack, a test client that runs the app in process, and no process
model or request format of its own; the batching it would bring is :mod:`captioner.serve.batcher`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from captioner.api import Captioner
from captioner.data.images import load_image
from captioner.decode_options import DecodeOptions
from captioner.errors import ImageError
from captioner.pictures.attention import attention_strip
from captioner.serve.batcher import Batcher, Decoded
from captioner.serve.uploads import CLIENT_CLOSED, RequestError, Upload, read_uploads, request_options


def app(captioner: Captioner, batch_size: int = 16, max_wait_ms: float = 10.0, max_upload_mb: float = 20.0,
        max_images: int = 16, decode: DecodeOptions | None = None) -> FastAPI:
    """A FastAPI app that captions uploaded images with ``captioner``, concurrent requests in batches of
    up to ``batch_size`` images gathered for at most ``max_wait_ms``; mount it in an app of your own or
    serve it with uvicorn (``captioner-serve``)."""
    service = CaptionService(captioner, batch_size, max_wait_ms, decode or DecodeOptions(),
                             round(max_upload_mb * 2**20), max_images)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await run_in_threadpool(service.batcher.close)

    api = FastAPI(title="captioner", lifespan=lifespan, docs_url="/docs", redoc_url=None)

    @api.exception_handler(RequestError)
    async def refused(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @api.get("/health")
    async def health() -> dict:
        batcher = service.batcher
        return {"status": "ok", "attention": service.has_attention, "batch_size": batch_size,
                "max_wait_ms": max_wait_ms, "abandoned": batcher.abandoned,
                "batches": {str(size): count for size, count in sorted(batcher.batch_sizes.items())}}

    @api.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("captioner.serve").joinpath("page.html").read_text(encoding="utf-8")

    api.post("/caption")(service.caption)
    return api


class CaptionService:
    """``POST /caption``: a request's options and images checked, decoded with whatever else is queued."""

    def __init__(self, captioner: Captioner, batch_size: int, max_wait_ms: float, defaults: DecodeOptions,
                 max_bytes: int, max_images: int):
        self.captioner, self.defaults = captioner, defaults
        self.max_bytes, self.max_images = max_bytes, max_images
        self.has_attention = captioner.model.decoder.attention is not None
        self.coming = 0  # requests being read, not yet queued (on the event loop's thread only)
        self.batcher = Batcher(captioner, batch_size, max_wait_ms, coming=lambda: self.coming)

    async def caption(self, request: Request):
        self.coming += 1
        try:
            asked = await self._read(request)
            decoding = self.batcher.submit(asked.pixels, asked.options, asked.attention)
        finally:
            self.coming -= 1  # queued (or refused): no longer worth a batch's wait
        decoded = await _unless_client_leaves(request, decoding)
        if decoded is None:
            return Response(status_code=CLIENT_CLOSED)
        answers = iter(await run_in_threadpool(_answers, asked.readable, decoded))
        results = [{"file": upload.name, "error": error} if error else {"file": upload.name, **next(answers)}
                   for upload, error in zip(asked.uploads, asked.errors)]
        if not asked.is_form:
            del results[0]["file"]
            return results[0]
        return results

    async def _read(self, request: Request) -> Asked:
        """The request's checked options and its images, preprocessed; RequestError for what cannot be served."""
        options, attention = request_options(request.query_params, self.defaults)
        if attention and not self.has_attention:
            raise RequestError(400, "this model has no attention (trained with model.decoder.attention_dim=0)")
        uploads, is_form = await read_uploads(request, self.max_bytes, self.max_images)
        images, errors = await run_in_threadpool(_images, uploads)
        if not is_form and errors[0]:
            raise RequestError(422, errors[0])
        readable = [image for image in images if image is not None]
        if not readable:
            raise RequestError(422, "no image could be read: " + "; ".join(errors))
        pixels = await run_in_threadpool(lambda: torch.stack([self.captioner.transform(image) for image in readable]))
        return Asked(options, attention, uploads, is_form, readable, errors, pixels)


@dataclasses.dataclass
class Asked:
    """A request read: its options, its uploads (each an image or the reason it is not), their pixels."""

    options: DecodeOptions
    attention: bool
    uploads: list[Upload]
    is_form: bool
    readable: list  # the uploads that are images, as PIL images
    errors: list[str | None]  # per upload: why it is not an image, or None
    pixels: torch.Tensor  # (readable images, 3, S, S)


def _images(uploads: list[Upload]) -> tuple[list, list[str | None]]:
    """Each upload as an RGB image or the one-line reason it is not one (naming it)."""
    images, errors = [], []
    for upload in uploads:
        try:
            images.append(load_image(upload.data, name=upload.name))
            errors.append(None)
        except ImageError as error:
            images.append(None)
            errors.append(str(error))
    return images, errors


def _answers(images: list, decoded: Decoded) -> list[dict]:
    answers = []
    for n, (image, candidates) in enumerate(zip(images, decoded.candidates)):
        best = candidates[0]
        answer = {"caption": best.caption, "log_prob": best.log_prob,
                  "candidates": [[text, log_prob] for text, log_prob in candidates]}
        if decoded.attention is not None:
            answer["attention"] = _png_data_url(attention_strip(image, best.caption.split(), decoded.attention[n]))
        answers.append(answer)
    return answers


def _png_data_url(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def _unless_client_leaves(request: Request, work: asyncio.Future):
    """``work``'s result, or None once the client has closed the connection (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    left = asyncio.ensure_future(_client_left(request))
    done, _ = await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        left.cancel()
        return task.result()
    task.cancel()
    return None


async def _client_left(request: Request) -> None:
    """Returns when the server reports the client gone (the body has been read: nothing else comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
