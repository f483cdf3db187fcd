"""What a request asks for: its decoding options from the query, its images from the body, each checked
with a one-line reason a client can act on (:class:`RequestError` and its HTTP status)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from captioner.decode_options import DecodeOptions
from captioner.errors import CaptionerError

MAX_BEAM_SIZE = 16  # a request cannot ask for a search that would hold up everyone else's batches
OPTIONS = {"beam_size": int, "num_captions": int, "attention": bool}
RAW_TYPES = ("image/", "application/octet-stream")
CLIENT_CLOSED = 499  # nginx's status for a request whose client left: logged, never seen by anyone


class RequestError(Exception):
    """A request that cannot be served as sent: the HTTP status and why, in one line."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclasses.dataclass
class Upload:
    name: str  # the form's file name; "upload" for an image sent as the body
    data: bytes


def request_options(query: Mapping[str, str], defaults: DecodeOptions) -> tuple[DecodeOptions, bool]:
    """The decoding options (``defaults`` with the query's ``beam_size`` and ``num_captions``) and
    whether the attention strip is asked for."""
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise RequestError(400, f"unknown option {unknown[0]!r}; the options are {', '.join(sorted(OPTIONS))}")
    values = {name: _parse(name, OPTIONS[name], text) for name, text in query.items()}
    if values.get("beam_size", 1) > MAX_BEAM_SIZE:
        raise RequestError(400, f"beam_size must be <= {MAX_BEAM_SIZE}, got {values['beam_size']}")
    attention = values.pop("attention", False)
    try:
        return dataclasses.replace(defaults, **values), attention
    except CaptionerError as error:
        raise RequestError(400, str(error).removeprefix("decode.")) from None


def _parse(name: str, kind: type, text: str) -> int | bool:
    if kind is bool:
        if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise RequestError(400, f"{name} must be true or false, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    try:
        return int(text)
    except ValueError:
        raise RequestError(400, f"{name} must be an integer, got {text!r}") from None


async def read_uploads(request: Request, max_bytes: int, max_images: int) -> tuple[list[Upload], bool]:
    """The images of a request, and whether they came as a form (several) rather than as the body (one).

    The body is read up to ``max_bytes`` (refused as soon as it is over: a declared length at once)."""
    content_type = request.headers.get("content-type", "").lower()
    is_form = content_type.startswith("multipart/form-data")
    if not is_form and not content_type.startswith(RAW_TYPES):
        raise RequestError(415, "send one image as the body (Content-Type: image/...) or several as "
                                f"multipart/form-data; got Content-Type {content_type or 'none'!r}")
    body = await _body(request, max_bytes)
    if not is_form:
        if not body:
            raise RequestError(400, "the request has no image: its body is empty")
        return [Upload("upload", body)], False
    uploads = await _form_files(request, body, max_images)
    if not uploads:
        raise RequestError(400, "the form holds no image file")
    if len(uploads) > max_images:
        raise RequestError(400, f"too many images: {len(uploads)} in one request, at most {max_images}")
    return uploads, True


async def _body(request: Request, max_bytes: int) -> bytes:
    too_large = RequestError(413, f"the upload is larger than {max_bytes / 2**20:g} MB (max_upload_mb)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise too_large
    except ClientDisconnect:
        raise RequestError(CLIENT_CLOSED, "the client left before sending its whole body") from None
    return bytes(body)


async def _form_files(request: Request, body: bytes, max_images: int) -> list[Upload]:
    """The files of a multipart body already read (parsed by Starlette, from the bytes in hand)."""
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=max_images + 1)
    except MultiPartException as error:
        if "files" in str(error).lower():
            raise RequestError(400, f"too many images in one request, at most {max_images}") from None
        raise RequestError(400, f"the form cannot be read ({error})") from None
    return [Upload(value.filename or "upload", await value.read())
            for _, value in form.multi_items() if isinstance(value, UploadFile)]
