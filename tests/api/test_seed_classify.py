"""Classification through HTTP: the two-step flow, seed 000 `/v1/classify`, seed 003 `/forward`."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image
from skimage import data

from tests.conftest import files_under, http_scope, serve
from tests.factories import encode

ESPRESSO = 967
CATS = range(281, 286)


def coffee_jpeg() -> bytes:
    return encode(Image.fromarray(data.coffee()), "JPEG", quality=92)


def chelsea_png() -> bytes:
    return encode(Image.fromarray(data.chelsea()), "PNG")


async def upload(client: httpx.AsyncClient, body: bytes, name: str = "coffee.jpg") -> str:
    resp = await client.post("/api/v1/upload", files={"file": (name, body, "application/octet-stream")})
    assert resp.status_code == 201, resp.text
    return resp.json()["image_id"]


async def test_two_step_classify_is_cached_per_params(client: httpx.AsyncClient, data_dir) -> None:
    image_id = await upload(client, coffee_jpeg())
    first = await client.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"})
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "MISS"
    body = first.json()
    assert body["analyzer"] == "classify" and body["params"] == {"top_k": 5}
    assert [p["class_id"] for p in body["predictions"]][0] == ESPRESSO
    assert body["predictions"][0]["probability"] > 0.5
    assert (data_dir / "analysis" / image_id / "classify.json").read_bytes() == first.content

    again = await client.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"})
    assert (again.headers["x-cache"], again.content) == ("HIT", first.content)
    top2 = await client.post(
        "/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify", "params": {"top_k": 2}}
    )
    assert top2.headers["x-cache"] == "MISS"
    assert len(top2.json()["predictions"]) == 2
    assert len(list((data_dir / "analysis" / image_id).glob("classify.*.json"))) == 1
    bad = await client.post(
        "/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify", "params": {"top_k": 0}}
    )
    assert bad.status_code == 400 and bad.json()["fields"] == ["params.top_k"]


async def test_analyzers_are_listed(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/analyzers")
    assert resp.status_code == 200
    rows = {row["name"]: row for row in resp.json()}
    assert {"skin", "classify"} <= set(rows)
    assert rows["classify"]["available"] is True
    assert rows["classify"]["params"]["properties"]["top_k"]["default"] == 5


async def test_missing_model_is_reported_not_fatal(make_settings, tmp_path) -> None:
    from app.main import create_app

    app = create_app(make_settings(model_dir=tmp_path / "no-models"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert "classify" in json.dumps(ready.json())
            image_id = await upload(c, coffee_jpeg())
            assert (await c.post("/analyze", json={"image_id": image_id})).status_code == 200
            resp = await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"})
            assert resp.status_code == 503
            assert resp.json()["code"] == "analyzer_unavailable"


async def test_seed_000_classify_file(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/classify", files={"file": ("cat.png", chelsea_png(), "image/png")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["predictions"][0]["class_id"] in CATS
    assert (await client.get(f"/api/v1/images/{body['image_id']}")).status_code == 200
    top1 = await client.post("/v1/classify?top_k=1", files={"file": ("cat.png", chelsea_png(), "image/png")})
    assert len(top1.json()["predictions"]) == 1


@pytest.fixture
def image_server() -> Iterator[str]:
    """A local HTTP server with one image and a redirect to a private address."""
    image = coffee_jpeg()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/coffee.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            elif self.path == "/page.html":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html>not an image</html>")
            elif self.path == "/to-private":
                self.send_response(302)
                self.send_header("Location", "http://10.0.0.1/coffee.jpg")
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


async def test_seed_000_classify_url(make_settings, image_server: str, data_dir) -> None:
    async with serve(make_settings(url_fetch_allow_loopback=True)) as c:
        resp = await c.post("/v1/classify", json={"url": f"{image_server}/coffee.jpg", "top_k": 3})
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"][0]["class_id"] == ESPRESSO
        meta = (await c.get(f"/api/v1/images/{resp.json()['image_id']}")).json()
        assert meta["filename"] == "coffee.jpg"
        before = sorted(p.name for p in (data_dir / "images").iterdir())
        for url, code in [
            (f"{image_server}/to-private", "url_not_allowed"),
            (f"{image_server}/missing.jpg", "url_fetch_failed"),
            (f"{image_server}/page.html", "unsupported_media_type"),
            ("file:///etc/passwd", "url_not_allowed"),
            ("http://169.254.169.254/latest/meta-data/", "url_not_allowed"),
            ("http://[fe80::1%25\u00e9]/", "url_not_allowed"),
        ]:
            bad = await c.post("/v1/classify", json={"url": url})
            assert bad.status_code == 400, (url, bad.text)
            assert bad.json()["code"] == code
        assert sorted(p.name for p in (data_dir / "images").iterdir()) == before


async def test_seed_000_url_to_loopback_refused_by_default(
    client: httpx.AsyncClient, image_server: str
) -> None:
    resp = await client.post("/v1/classify", json={"url": f"{image_server}/coffee.jpg"})
    assert resp.status_code == 400
    assert resp.json()["code"] == "url_not_allowed"


async def test_seed_003_forward_image(client: httpx.AsyncClient, data_dir) -> None:
    resp = await client.post("/forward", files={"image": ("coffee.jpg", coffee_jpeg(), "image/jpeg")})
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert set(result) == {"predictions", "top_class", "top_probability"}
    assert result["top_class"] == result["predictions"][0]["class"] == "espresso"
    assert set(result["predictions"][0]) == {"class", "probability"}
    assert result["top_probability"] > 0.5
    assert not list((data_dir / "images").iterdir())  # nothing stored


async def test_seed_003_forward_data(client: httpx.AsyncClient) -> None:
    resp = await client.post("/forward", files={"data": (None, '{"text": "sample data", "value": 123}')})
    assert resp.status_code == 200
    assert resp.json() == {
        "result": {"message": "JSON data processed", "received_data": {"text": "sample data", "value": 123}}
    }


@pytest.mark.parametrize(
    ("kwargs", "status", "detail"),
    [
        ({"files": {"data": (None, "{not json")}}, 400, "bad request"),
        ({"files": {"data": (None, '{"a": NaN}')}}, 400, "bad request"),
        ({"files": {"data": (None, "[" * 5000 + "]" * 5000)}}, 400, "bad request"),
        ({"files": {"data": (None, '"\\ud800"')}}, 400, "bad request"),
        ({"files": {"other": (None, "x")}}, 400, "bad request"),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "bad request"),
        (
            {"files": {"image": ("a.jpg", b"not an image at all", "image/jpeg")}},
            403,
            "модель не смогла обработать данные",
        ),
        (
            {"files": {"image": ("a.jpg", coffee_jpeg()[:5000], "image/jpeg")}},
            403,
            "модель не смогла обработать данные",
        ),
        (
            {"files": {"image": ("a.gif", encode(Image.new("RGB", (8, 8)), "GIF"), "image/gif")}},
            403,
            "модель не смогла обработать данные",
        ),
    ],
)
async def test_seed_003_forward_errors(client: httpx.AsyncClient, data_dir, kwargs, status, detail) -> None:
    resp = await client.post("/forward", **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.json()["detail"] == detail
    assert not list((data_dir / "images").iterdir())


@pytest.mark.parametrize("data", ["[]", "[1, 2]", '"text"', "123", "null", "true"])
@pytest.mark.parametrize("with_image", [True, False], ids=["with-image", "data-only"])
async def test_seed_003_forward_data_must_be_a_json_object(
    client: httpx.AsyncClient, data_dir, data: str, with_image: bool
) -> None:
    """A malformed field is a 400 whatever else the form holds: `data` must be a JSON object."""
    files: dict = {"data": (None, data)}
    if with_image:
        files["image"] = ("coffee.jpg", coffee_jpeg(), "image/jpeg")
    resp = await client.post("/forward", files=files)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["detail"] == "bad request" and resp.json()["code"] == "bad_request"
    assert not files_under(data_dir / "images")


async def test_seed_003_forward_image_with_a_valid_data_object_is_classified(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(
        "/forward",
        files={"image": ("coffee.jpg", coffee_jpeg(), "image/jpeg"), "data": (None, '{"note": "hi"}')},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"]["top_class"] == "espresso"


def test_exif_rotated_upload_decodes_upright(tmp_path) -> None:
    from app.analyzers.imaging import load_rgb

    upright = Image.fromarray(data.coffee())
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_270).save(buf, "JPEG", exif=exif)
    assert load_rgb(buf.getvalue()).size == upright.size


async def test_two_step_face(client: httpx.AsyncClient, data_dir) -> None:
    face_id = await upload(client, encode(Image.fromarray(data.astronaut()), "JPEG"), "face.jpg")
    resp = await client.post("/api/v1/analyze", json={"image_id": face_id, "analyzer": "face"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["landmarks"]) == 68
    assert {"face_oval", "left_eye", "right_eye", "nose", "outer_lips", "inner_lips"} <= set(body["regions"])
    assert body["svg"].startswith("<svg")
    assert (data_dir / "analysis" / face_id / "face.json").read_bytes() == resp.content
    again = await client.post("/api/v1/analyze", json={"image_id": face_id, "analyzer": "face"})
    assert (again.headers["x-cache"], again.content) == ("HIT", resp.content)

    coffee_id = await upload(client, coffee_jpeg())
    none = await client.post("/api/v1/analyze", json={"image_id": coffee_id, "analyzer": "face"})
    assert none.status_code == 422
    assert none.json()["code"] == "no_face_detected"
    assert not (data_dir / "analysis" / coffee_id / "face.json").exists()


async def test_model_analyzers_can_be_turned_off(make_settings) -> None:
    from app.analyzers.registry import build_registry
    from app.analyzers.settings import AnalyzerSettings

    registry = build_registry(AnalyzerSettings.from_settings(make_settings(analyzers=["skin"])))
    assert registry.names() == ["skin"] and not registry.unavailable
    with pytest.raises(ValueError):
        make_settings(analyzers=["tarot"])


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/classify", "application/json"), ("/api/v1/frontal/crop/submit", "application/json")],
)
async def test_a_declared_oversized_json_body_is_413_before_it_is_read(
    app, path: str, content_type: str
) -> None:
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.Event().wait()  # the client sends nothing: only the headers said 50 MB
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = http_scope(
        "POST", path, [(b"content-type", content_type.encode()), (b"content-length", b"52428800")]
    )
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 413


def jpeg_with_bogus_huffman_table() -> bytes:
    """Whole in structure (it passes the upload check) but no decoder can read its scan."""
    body = bytearray(coffee_jpeg())
    dht = body.find(b"\xff\xc4")
    body[dht + 5 : dht + 21] = b"\xff" * 16  # the 16 code-length counts
    return bytes(body)


async def test_v1_classify_that_fails_leaves_no_image(client: httpx.AsyncClient, data_dir) -> None:
    """The client never learns the id of an image whose classification failed: it is removed."""
    before = files_under(data_dir / "images")
    resp = await client.post(
        "/v1/classify", files={"file": ("bad.jpg", jpeg_with_bogus_huffman_table(), "image/jpeg")}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "undecodable_image"
    assert files_under(data_dir / "images") == before
    listing = await client.get("/api/v1/images")
    assert listing.json()["total"] == 0
