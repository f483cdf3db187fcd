"""captioner-serve: the HTTP API in process (every endpoint and error), its batching, and the real server
in a subprocess hit by concurrent HTTP clients, each getting the caption the CLI gives its image."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time

import httpx2
import pytest
from conftest import cli, served
from fastapi.testclient import TestClient
from PIL import Image
from test_bad_inputs import png_claiming

from captioner import Captioner
from captioner.decode_options import DecodeOptions
from captioner.serve import app
from captioner.serve.batcher import Batcher


@pytest.fixture(scope="module")
def captioner(tiny_checkpoint):
    return Captioner.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(captioner):
    with TestClient(app(captioner, batch_size=8, max_wait_ms=5, max_upload_mb=1, max_images=4)) as client:
        yield client


@pytest.fixture(scope="module")
def images(tiny_records) -> list[bytes]:
    return [open(record.path, "rb").read() for record in tiny_records[:8]]


def post_image(client, body: bytes, query: str = "", content_type: str = "image/png"):
    return client.post(f"/caption{query}", content=body, headers={"Content-Type": content_type})


def test_health_says_what_the_server_does(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["attention"] is False and health["batch_size"] == 8


def test_an_image_as_the_body_gets_the_captions_the_python_api_gives(client, captioner, tiny_records, images):
    answer = post_image(client, images[0], "?beam_size=3&num_captions=2").json()
    expected = captioner.caption_candidates(tiny_records[0].path, beam_size=3, num_captions=2)[0]
    assert answer["caption"] == expected[0][0] and answer["log_prob"] == pytest.approx(expected[0][1], abs=1e-4)
    assert [c[0] for c in answer["candidates"]] == [c[0] for c in expected] and set(answer) == {
        "caption", "log_prob", "candidates"}


def test_several_images_as_a_form_come_back_in_order_with_the_bad_one_named(client, captioner, tiny_records, images):
    files = [("files", ("a.png", images[0], "image/png")), ("files", ("notes.txt", b"hello", "text/plain")),
             ("files", ("b.png", images[1], "image/png"))]
    answers = client.post("/caption", files=files).json()
    assert [a["file"] for a in answers] == ["a.png", "notes.txt", "b.png"]
    assert answers[1] == {"file": "notes.txt", "error": "notes.txt: not an image Pillow can read"}
    assert [answers[0]["caption"], answers[2]["caption"]] == captioner.caption([r.path for r in tiny_records[:2]])


@pytest.mark.parametrize("body, query, content_type, status, message", [
    (b"not an image at all", "", "image/png", 422, "upload: not an image Pillow can read"),
    ("truncated", "", "image/png", 422, "upload: cannot decode image"),
    ("bomb", "", "image/png", 422, "upload: refused: too many pixels"),
    (b"", "", "image/png", 400, "the request has no image: its body is empty"),
    ("image", "", "text/plain", 415, "send one image as the body (Content-Type: image/...) or several"),
    ("image", "", "", 415, "got Content-Type 'none'"),
    ("image", "?beam=3", "image/png", 400, "unknown option 'beam'; the options are attention, beam_size, num_captions"),
    ("image", "?beam_size=wide", "image/png", 400, "beam_size must be an integer, got 'wide'"),
    ("image", "?beam_size=0", "image/png", 400, "beam_size must be >= 1, got 0"),
    ("image", "?beam_size=100", "image/png", 400, "beam_size must be <= 16, got 100"),
    ("image", "?num_captions=3", "image/png", 400, "num_captions (3) cannot exceed decode.beam_size (1)"),
    ("image", "?attention=maybe", "image/png", 400, "attention must be true or false, got 'maybe'"),
    ("image", "?attention=true", "image/png", 400, "this model has no attention"),
    ("large", "", "image/png", 413, "the upload is larger than 1 MB (max_upload_mb)"),
])
def test_a_bad_request_is_a_4xx_with_one_line_naming_the_reason(client, images, body, query, content_type, status,
                                                               message):
    body = {"truncated": images[0][: len(images[0]) // 2], "bomb": png_claiming(30000, 30000), "image": images[0],
            "large": images[0] + bytes(2**20)}.get(body, body)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(f"/caption{query}", content=body, headers=headers)
    assert response.status_code == status and message in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert post_image(client, images[1]).status_code == 200  # and the server goes on


def test_too_many_images_in_one_form_is_refused(client, images):
    files = [("files", (f"{n}.png", images[0], "image/png")) for n in range(5)]
    response = client.post("/caption", files=files)
    assert response.status_code == 400 and "too many images" in response.json()["error"]
    assert "at most 4" in response.json()["error"]


def test_the_attention_strip_comes_as_a_png_data_url(attention_checkpoint, tiny_records):
    with TestClient(app(Captioner.load(attention_checkpoint))) as client:
        assert client.get("/health").json()["attention"] is True
        answer = post_image(client, open(tiny_records[0].path, "rb").read(), "?attention=true").json()
    prefix = "data:image/png;base64,"
    assert answer["attention"].startswith(prefix)
    strip = Image.open(io.BytesIO(base64.b64decode(answer["attention"][len(prefix):])))
    assert strip.format == "PNG" and strip.width > strip.height  # the image, then a panel per word


def test_the_upload_page_needs_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<form" in page.text and "http://" not in page.text and "https://" not in page.text
    assert "innerHTML" not in page.text  # captions and names are shown as text


def concurrently(application, bodies: list[bytes], queries: list[str]) -> list[httpx2.Response]:
    async def all_at_once():
        transport = httpx2.ASGITransport(app=application)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post(f"/caption{query}", content=body,
                                                      headers={"Content-Type": "image/png"})
                                          for body, query in zip(bodies, queries)))
    return asyncio.run(all_at_once())


def test_concurrent_requests_are_decoded_together_by_kind_and_answered_each_its_own(captioner, tiny_records, images):
    calls = []
    real = captioner.caption_results

    def recording(pixels, batch_size, **options):
        calls.append((len(pixels), options["beam_size"]))
        return real(pixels, batch_size, **options)

    captioner.caption_results = recording
    try:
        application = app(captioner, batch_size=8, max_wait_ms=200)
        queries = ["", "?beam_size=3"] * 8
        responses = concurrently(application, images * 2, queries)
    finally:
        del captioner.caption_results
    paths = [r.path for r in tiny_records[:8]]
    greedy, beam = captioner.caption(paths), captioner.caption(paths, beam_size=3)
    expected = [(greedy if q == "" else beam)[n % 8] for n, q in enumerate(queries)]
    assert [r.json()["caption"] for r in responses] == expected
    assert sum(size for size, _ in calls) == 16 and max(size for size, _ in calls) > 1  # batched
    assert sorted({beam_size for _, beam_size in calls}) == [1, 3]  # each batch one kind


def test_a_request_whose_client_left_is_not_decoded_and_health_answers_meanwhile(captioner, images):
    release = threading.Event()
    real = captioner.caption_results

    def held(pixels, batch_size, **options):
        release.wait(30)
        return real(pixels, batch_size, **options)

    captioner.caption_results = held
    batcher = Batcher(captioner, batch_size=1, max_wait_ms=0)
    try:
        pixels = captioner.transform(Image.open(io.BytesIO(images[0])).convert("RGB"))[None]

        async def scenario():
            first = asyncio.ensure_future(batcher.submit(pixels, DecodeOptions()))
            second = asyncio.ensure_future(batcher.submit(pixels, DecodeOptions()))
            await asyncio.sleep(0.2)  # the first is being decoded (held), the second waits its turn
            second.cancel()
            release.set()
            return await first

        assert asyncio.run(scenario()).candidates
        deadline = time.monotonic() + 10
        while batcher.abandoned == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.abandoned == 1 and sum(batcher.batch_sizes.values()) == 1
    finally:
        release.set()
        batcher.close()
        del captioner.caption_results


def test_a_batch_with_one_request_for_attention_is_encoded_once_and_only_that_request_gets_maps(
        attention_checkpoint, images):
    attending = Captioner.load(attention_checkpoint)
    release, real, encoded = threading.Event(), attending.caption_results, []

    def held(*args, **options):  # the first batch waits, so that the next two queue behind it
        release.wait(30)
        return real(*args, **options)

    attending.caption_results = held
    attending.model.encoder.body.register_forward_hook(lambda *_: encoded.append(1))
    batcher = Batcher(attending, batch_size=8, max_wait_ms=0)
    pixels = [attending.transform(Image.open(io.BytesIO(image)).convert("RGB"))[None] for image in images[:3]]
    try:
        async def scenario():
            first = asyncio.ensure_future(batcher.submit(pixels[0], DecodeOptions()))
            await asyncio.sleep(0.2)
            together = [asyncio.ensure_future(batcher.submit(pixels[1], DecodeOptions(), attention=True)),
                        asyncio.ensure_future(batcher.submit(pixels[2], DecodeOptions()))]
            await asyncio.sleep(0.2)
            release.set()
            return await asyncio.gather(first, *together)

        _, with_maps, without = asyncio.run(scenario())
    finally:
        release.set()
        batcher.close()
    assert batcher.batch_sizes == {1: 1, 2: 1} and len(encoded) == 2
    assert without.attention is None
    expected = attending.attention_maps(pixels[1], [with_maps.candidates[0][0].caption])
    assert len(with_maps.attention) == 1 and abs(with_maps.attention[0] - expected[0]).max() < 1e-6


def test_a_lone_request_is_not_held_for_the_batch_wait(captioner, images):
    pixels = captioner.transform(Image.open(io.BytesIO(images[0])).convert("RGB"))[None]
    for coming, held in ((lambda: 0, False), (lambda: 1, True)):  # nothing on its way / another being read
        batcher = Batcher(captioner, batch_size=8, max_wait_ms=3000, coming=coming)
        started = time.monotonic()

        async def one():
            return await batcher.submit(pixels, DecodeOptions())

        try:
            assert asyncio.run(one()).candidates
        finally:
            batcher.close()
        assert (time.monotonic() - started >= 3.0) == held


@pytest.mark.slow
def test_the_server_answers_concurrent_clients_with_the_captions_of_the_cli(trained, tmp_path):
    model = trained / "run" / "model.pt"
    paths = sorted((trained / "data" / "images").rglob("*.png"))[:16]
    listed = cli("caption", f"checkpoint={model}", f"input={trained / 'data' / 'images'}", "decode.beam_size=3")
    by_cli = dict(line.split("\t") for line in listed.stdout.splitlines())

    async def clients(url):
        async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/caption?beam_size=3", content=path.read_bytes(),
                                                      headers={"Content-Type": "image/png"}) for path in paths))

    with served(model, "batch_size=8", "max_wait_ms=50") as url:
        _clients_leave(url, paths[0].read_bytes())
        responses = asyncio.run(clients(url))
        health = httpx2.get(f"{url}/health").json()
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["caption"] for r in responses] == [by_cli[str(p)] for p in paths]
    assert max(map(int, health["batches"])) > 1


def _clients_leave(url: str, image: bytes) -> None:
    """A client that sends half its body and hangs up, then one that hangs up before its answer."""
    host, port = url.removeprefix("http://").split(":")
    for body in (image[: len(image) // 2], image):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(image) + body)
