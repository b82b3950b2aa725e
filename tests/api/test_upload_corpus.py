"""A corpus of bad (and borderline) uploads through HTTP, against real files in a tmp data dir.

Every refusal must be problem+json with the documented status and `code`, and must leave
`data/` exactly as it was (no temp file, no half-published image). Accepted borderline
uploads must publish exactly `images/{id}.{ext}` + `images/{id}.json`.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from starlette.requests import ClientDisconnect

from app.core.config import Settings
from app.storage.atomic import TEMP_PREFIX
from tests.conftest import files_under, http_scope, serve
from tests.factories import encode, jpeg_bytes, jpeg_of_exact_size, photo_jpeg, photo_png, png_bytes

UPLOAD = "/api/v1/upload"
PROBLEM = "application/problem+json"
BOUNDARY = b"corpus-boundary-7MA4YWxkTrZu0gW"
SMALL_LIMIT = 200_000
SMALL_TRAILER_ALLOWANCE = 100_000  # what a declared phone-photo trailer may add to an upload
DEFAULT_LIMIT = 5 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def multipart_body(parts: list[tuple[bytes, bytes]], boundary: bytes = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body built by hand: each part is (raw header lines, payload)."""
    out = b""
    for headers, payload in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + payload + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return out


def file_part(
    payload: bytes,
    *,
    name: bytes = b"file",
    filename: bytes | None = b"photo.jpg",
    content_type: bytes | None = b"image/jpeg",
) -> tuple[bytes, bytes]:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    headers = disposition
    if content_type is not None:
        headers += b"\r\nContent-Type: " + content_type
    return headers, payload


def text_part(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="' + name + b'"', value


def multipart_headers(boundary: bytes = BOUNDARY) -> dict[str, str]:
    return {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM, response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def new_files(before: list[str], after: list[str]) -> list[str]:
    assert set(before) <= set(after), f"files disappeared: {sorted(set(before) - set(after))}"
    return sorted(set(after) - set(before))


def assert_published(data_dir: Path, before: list[str], body: dict[str, Any], extension: str) -> None:
    """Exactly the image's bytes appeared, under the returned UUID (its metadata is a catalog row)."""
    image_id = body["image_id"]
    assert [f for f in new_files(before, files_under(data_dir)) if not f.startswith("service.db")] == [
        f"images/{image_id}.{extension}"
    ]


async def chunked(
    data: bytes, size: int = 64 * 1024, pulled: list[int] | None = None
) -> AsyncIterator[bytes]:
    """An async body (httpx sends it chunked, without Content-Length); counts pulled chunks."""
    for start in range(0, len(data), size):
        if pulled is not None:
            pulled.append(start)
        yield data[start : start + size]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> bytes:
    """A valid PNG of `width` x `height` zero pixels: tiny on disk, huge in pixels."""
    bits_per_pixel = bit_depth * {0: 1, 3: 1}[color_type]
    row = b"\x00" * (1 + (width * bits_per_pixel + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr)
    if color_type == 3:
        chunks += png_chunk(b"PLTE", b"\x00\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header claims `width` x `height` pixels."""
    data = bytearray(jpeg_bytes((16, 16)))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    # SOF0: marker(2) length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def png_with_bad_idat_crc() -> bytes:
    data = bytearray(png_bytes((64, 48)))
    idat = data.find(b"IDAT")
    assert idat > 0
    length = int.from_bytes(data[idat - 4 : idat], "big")
    assert length > 4
    data[idat + 4 + length // 2] ^= 0xFF  # a byte in the middle of the compressed data
    return bytes(data)


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("photo.jpg", jpeg_bytes())
        zf.writestr("readme.txt", "not an image")
    return buf.getvalue()


def gif_bytes() -> bytes:
    return encode(Image.new("RGB", (64, 48), (200, 120, 80)), "GIF")


def bmp_bytes() -> bytes:
    return encode(Image.new("RGB", (64, 48), (200, 120, 80)), "BMP")


def tiff_bytes() -> bytes:
    return encode(Image.new("RGB", (64, 48), (200, 120, 80)), "TIFF")


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
    b'<rect width="64" height="48" fill="red"/><script>alert(1)</script></svg>\n'
)
HTML = b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)></body></html>\n"
TEXT = b"this is a plain text file pretending to be a JPEG\n" * 4


@pytest.fixture
def small_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(max_upload_bytes=SMALL_LIMIT, max_declared_trailer_bytes=SMALL_TRAILER_ALLOWANCE)


@pytest.fixture
async def small_client(small_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(small_settings) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# Bad file contents
# ---------------------------------------------------------------------------------------------

CONTENT_CASES = [
    pytest.param(b"", "image/jpeg", "empty_file", id="empty"),
    pytest.param(b"\xff", "image/jpeg", "unsupported_media_type", id="one-byte"),
    pytest.param(b"\xff\xd8\xff", "image/jpeg", "undecodable_image", id="jpeg-magic-only"),
    pytest.param(
        photo_jpeg()[: len(photo_jpeg()) // 2], "image/jpeg", "undecodable_image", id="truncated-jpeg"
    ),
    pytest.param(
        b"\xff\xd8\xff\xe0" + b"\x00" * 2000, "image/jpeg", "undecodable_image", id="jpeg-header-then-zeros"
    ),
    pytest.param(png_with_bad_idat_crc(), "image/png", "undecodable_image", id="png-bad-idat-crc"),
    pytest.param(photo_png()[: len(photo_png()) // 2], "image/png", "undecodable_image", id="truncated-png"),
    pytest.param(TEXT, "image/jpeg", "unsupported_media_type", id="text-as-jpeg"),
    pytest.param(HTML, "image/jpeg", "unsupported_media_type", id="html"),
    pytest.param(HTML, "application/octet-stream", "unsupported_media_type", id="html-octet-stream"),
    pytest.param(zip_bytes(), "image/jpeg", "unsupported_media_type", id="zip"),
    pytest.param(SVG, "image/png", "unsupported_media_type", id="svg"),
    pytest.param(gif_bytes(), "image/png", "unsupported_media_type", id="gif"),
    pytest.param(bmp_bytes(), "application/octet-stream", "unsupported_media_type", id="bmp"),
    pytest.param(tiff_bytes(), "image/jpeg", "unsupported_media_type", id="tiff"),
    pytest.param(bomb_png(10_000, 10_000), "image/png", "image_too_large", id="png-bomb-1bit-100MP"),
    pytest.param(bomb_png(7_200, 7_200, 8, 3), "image/png", "image_too_large", id="png-bomb-palette-52MP"),
    pytest.param(bomb_png(30_000, 30_000), "image/png", "image_too_large", id="png-bomb-1bit-900MP"),
    pytest.param(jpeg_claiming_size(65_000, 65_000), "image/jpeg", "image_too_large", id="jpeg-bomb-header"),
]


# Pillow warns (it does not raise) between its own limit (~89 MP) and twice that; the app's
# limit (50.3 MP, 8192 x 6144) is what must refuse these.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("payload", "declared", "code"), CONTENT_CASES)
async def test_bad_file_is_refused_and_leaves_no_file(
    client: httpx.AsyncClient, data_dir: Path, payload: bytes, declared: str, code: str
) -> None:
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": ("upload.jpg", payload, declared)})
    assert_problem(response, 400, code)
    assert files_under(data_dir) == before
    if code == "image_too_large":  # the service's limit, not Pillow's own
        assert "the limit is 50331648" in response.json()["detail"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bombs_are_small_on_disk() -> None:
    # The corpus exercises the pixel limit, not the byte limit.
    assert len(bomb_png(10_000, 10_000)) < 100_000
    assert len(bomb_png(30_000, 30_000)) < 1_000_000
    with Image.open(io.BytesIO(bomb_png(10_000, 10_000))) as im:
        assert im.size == (10_000, 10_000)


@pytest.mark.parametrize(
    ("filename", "declared"),
    [
        pytest.param("photo.jpg", "text/plain", id="text-plain"),
        pytest.param("photo.jpg", "text/html", id="text-html"),
        pytest.param("photo.jpg", "image/gif", id="image-gif"),
        pytest.param("photo.svg", "image/svg+xml", id="image-svg"),
        pytest.param("photo.jpg", "application/zip", id="application-zip"),
    ],
)
async def test_valid_jpeg_with_wrong_declared_type_is_refused(
    client: httpx.AsyncClient, data_dir: Path, filename: str, declared: str
) -> None:
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": (filename, photo_jpeg(), declared)})
    assert_problem(response, 400, "unsupported_media_type")
    assert files_under(data_dir) == before


@pytest.mark.parametrize(
    ("payload", "mime", "extension"),
    [
        pytest.param(photo_jpeg(), "image/jpeg", "jpg", id="jpeg"),
        pytest.param(photo_png(), "image/png", "png", id="png"),
    ],
)
async def test_octet_stream_is_sniffed(
    client: httpx.AsyncClient, data_dir: Path, payload: bytes, mime: str, extension: str
) -> None:
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": ("blob.bin", payload, "application/octet-stream")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content_type"] == mime
    assert body["size_bytes"] == len(payload)
    assert_published(data_dir, before, body, extension)
    assert (data_dir / "images" / f"{body['image_id']}.{extension}").read_bytes() == payload


# ---------------------------------------------------------------------------------------------
# Size limits
# ---------------------------------------------------------------------------------------------


async def test_file_of_exactly_the_limit_is_accepted(small_client: httpx.AsyncClient, data_dir: Path) -> None:
    payload = jpeg_of_exact_size(SMALL_LIMIT)
    before = files_under(data_dir)
    response = await small_client.post(UPLOAD, files={"file": ("limit.jpg", payload, "image/jpeg")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["size_bytes"] == SMALL_LIMIT
    assert_published(data_dir, before, body, "jpg")


async def test_file_one_byte_over_the_limit_is_refused(
    small_client: httpx.AsyncClient, data_dir: Path
) -> None:
    payload = jpeg_of_exact_size(SMALL_LIMIT + 1)
    before = files_under(data_dir)
    response = await small_client.post(UPLOAD, files={"file": ("over.jpg", payload, "image/jpeg")})
    assert_problem(response, 413, "payload_too_large")
    assert files_under(data_dir) == before


async def test_default_limit_exactly_is_accepted(client: httpx.AsyncClient, data_dir: Path) -> None:
    payload = jpeg_of_exact_size(DEFAULT_LIMIT)
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": ("five-mib.jpg", payload, "image/jpeg")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["size_bytes"] == 5_242_880
    assert_published(data_dir, before, body, "jpg")


async def test_default_limit_plus_one_is_refused(client: httpx.AsyncClient, data_dir: Path) -> None:
    payload = jpeg_of_exact_size(DEFAULT_LIMIT + 1)
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": ("too-big.jpg", payload, "image/jpeg")})
    assert_problem(response, 413, "payload_too_large")
    assert files_under(data_dir) == before


async def test_chunked_body_over_the_limit_is_cut_off(
    small_client: httpx.AsyncClient, data_dir: Path
) -> None:
    payload = jpeg_of_exact_size(1_000_000)
    body = multipart_body([file_part(payload)])
    pulled: list[int] = []
    before = files_under(data_dir)
    response = await small_client.post(
        UPLOAD, content=chunked(body, pulled=pulled), headers=multipart_headers()
    )
    assert_problem(response, 413, "payload_too_large")
    assert files_under(data_dir) == before
    total_chunks = -(-len(body) // (64 * 1024))
    # Refused while streaming: the app stopped reading soon after the limit (with the room a
    # declared trailer may take).
    assert len(pulled) < total_chunks, (len(pulled), total_chunks)
    assert len(pulled) * 64 * 1024 <= SMALL_LIMIT + SMALL_TRAILER_ALLOWANCE + 2 * 64 * 1024


async def test_chunked_body_under_the_limit_is_accepted(
    small_client: httpx.AsyncClient, data_dir: Path
) -> None:
    # The control for the test above: the chunked transfer itself is fine.
    payload = jpeg_of_exact_size(150_000)
    before = files_under(data_dir)
    response = await small_client.post(
        UPLOAD, content=chunked(multipart_body([file_part(payload)]), size=7_000), headers=multipart_headers()
    )
    assert response.status_code == 201, response.text
    assert_published(data_dir, before, response.json(), "jpg")


@pytest.mark.parametrize(
    "declared_length", [10 * 1024**3, Settings(_env_file=None).max_request_body_bytes + 1]
)
async def test_declared_content_length_over_the_limit_is_refused_before_reading(
    client: httpx.AsyncClient, data_dir: Path, declared_length: int
) -> None:
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        head = multipart_body([file_part(photo_jpeg())], close=False)
        pulled.append(0)
        yield head
        for i in range(1, 200):
            pulled.append(i)
            yield b"\x00" * 64 * 1024

    before = files_under(data_dir)
    headers = {**multipart_headers(), "Content-Length": str(declared_length)}
    response = await client.post(UPLOAD, content=body(), headers=headers)
    assert_problem(response, 413, "payload_too_large")
    assert len(pulled) == 0, f"the app read {len(pulled)} body chunk(s) before refusing"
    assert files_under(data_dir) == before


# ---------------------------------------------------------------------------------------------
# Form structure
# ---------------------------------------------------------------------------------------------


async def test_form_without_file_part(client: httpx.AsyncClient, data_dir: Path) -> None:
    before = files_under(data_dir)
    body = multipart_body([text_part(b"comment", b"where is the file?")])
    response = await client.post(UPLOAD, content=body, headers=multipart_headers())
    assert_problem(response, 400, "missing_file")
    assert files_under(data_dir) == before


async def test_form_with_no_parts(client: httpx.AsyncClient, data_dir: Path) -> None:
    before = files_under(data_dir)
    response = await client.post(UPLOAD, content=b"--" + BOUNDARY + b"--\r\n", headers=multipart_headers())
    assert_problem(response, 400, "missing_file")
    assert files_under(data_dir) == before


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param(
            [file_part(jpeg_bytes()), file_part(png_bytes(), filename=b"b.png")], id="two-file-parts"
        ),
        pytest.param(
            [file_part(photo_jpeg()), file_part(photo_jpeg(), filename=b"again.jpg")], id="two-big-file-parts"
        ),
        pytest.param(
            [file_part(png_bytes(), name=b"other", filename=b"o.png"), file_part(jpeg_bytes())],
            id="other-field-then-file",
        ),
        pytest.param(
            [file_part(jpeg_bytes()), file_part(png_bytes(), name=b"other", filename=b"o.png")],
            id="file-then-other-field",
        ),
    ],
)
async def test_more_than_one_file_is_refused(
    client: httpx.AsyncClient, data_dir: Path, parts: list[tuple[bytes, bytes]]
) -> None:
    before = files_under(data_dir)
    response = await client.post(UPLOAD, content=multipart_body(parts), headers=multipart_headers())
    assert_problem(response, 400, "too_many_files")
    assert files_under(data_dir) == before


async def test_two_files_through_httpx(client: httpx.AsyncClient, data_dir: Path) -> None:
    before = files_under(data_dir)
    files = [("file", ("a.jpg", jpeg_bytes(), "image/jpeg")), ("file", ("b.jpg", jpeg_bytes(), "image/jpeg"))]
    response = await client.post(UPLOAD, files=files)
    assert_problem(response, 400, "too_many_files")
    assert files_under(data_dir) == before


# ---------------------------------------------------------------------------------------------
# Hostile file names
# ---------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    pytest.param(b"../../etc/passwd.jpg", id="dotdot-slash"),
    pytest.param(b"/etc/passwd.jpg", id="absolute"),
    pytest.param(b"..\\\\..\\\\windows\\\\system32\\\\evil.jpg", id="backslashes"),
    pytest.param(b"C:\\\\evil\\\\x.jpg", id="windows-drive"),
    pytest.param(b"a\x00b.jpg", id="raw-nul"),
    pytest.param(b"a\x00/../../x.jpg", id="nul-then-traversal"),
    pytest.param(b"a\nb.jpg", id="raw-lf"),
    pytest.param(b"a\tb\x1b[31mred\x7f.jpg", id="control-chars"),
    pytest.param(b"a%0D%0ASet-Cookie: x=1.jpg", id="percent-crlf"),
    pytest.param(b"..", id="dotdot-only"),
    pytest.param(b".", id="dot-only"),
    pytest.param(b"", id="empty"),
    pytest.param(b"x" * 3000 + b".jpg", id="very-long"),
    pytest.param("ж".encode() * 1500 + b".jpg", id="very-long-utf8"),
    pytest.param(b"../" * 300 + b"deep.jpg", id="very-deep"),
    pytest.param(b'a\\"; name=\\"other.jpg', id="quote-injection"),
]


def _assert_safe_upload(response: httpx.Response, raw_name: bytes) -> dict[str, Any]:
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    name = body["filename"]
    if name is not None:
        for bad in ("/", "\\", "\x00", "\r", "\n"):
            assert bad not in name, (bad, name)
        assert all(ch.isprintable() for ch in name), name
        assert len(name) <= 255
    raw_text = raw_name.decode("latin-1")
    for header, value in response.headers.items():
        assert "\r" not in value and "\n" not in value, (header, value)
        if len(raw_text) > 3:
            assert raw_text not in value, (header, value)
    return body


@pytest.mark.parametrize("raw_name", HOSTILE_NAMES)
async def test_hostile_filename_is_reduced_to_safe_metadata(
    client: httpx.AsyncClient, data_dir: Path, tmp_path: Path, raw_name: bytes
) -> None:
    before = files_under(data_dir)
    outside_before = files_under(tmp_path)
    body_bytes = multipart_body([file_part(photo_jpeg(), filename=raw_name)])
    response = await client.post(UPLOAD, content=body_bytes, headers=multipart_headers())
    body = _assert_safe_upload(response, raw_name)
    image_id = body["image_id"]
    assert_published(data_dir, before, body, "jpg")
    # Nothing was written anywhere else under tmp (e.g. a traversal outside data/).
    assert new_files(outside_before, files_under(tmp_path)) == [f"data/images/{image_id}.jpg"]
    assert response.headers["location"] == f"/api/v1/images/{image_id}"
    meta = await client.get(f"/api/v1/images/{image_id}")
    assert meta.status_code == 200
    assert meta.json()["filename"] == body["filename"]


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.jpg", "a\x00b.jpg", "a\r\nSet-Cookie: x=1.jpg", "..\\..\\evil.jpg", "é" * 400]
)
async def test_hostile_filename_through_httpx(client: httpx.AsyncClient, data_dir: Path, name: str) -> None:
    # httpx escapes names its own way (percent-encoding control characters); still safe.
    before = files_under(data_dir)
    response = await client.post(UPLOAD, files={"file": (name, photo_jpeg(), "image/jpeg")})
    body = _assert_safe_upload(response, name.encode())
    assert_published(data_dir, before, body, "jpg")


@pytest.mark.parametrize(
    ("raw_name", "expected"),
    [
        pytest.param("café.jpg".encode(), "café.jpg", id="latin1-range"),
        pytest.param("фото.jpg".encode(), "фото.jpg", id="cyrillic"),
        pytest.param("照片.png".encode(), "照片.png", id="cjk"),
        pytest.param("😀.jpg".encode(), "😀.jpg", id="emoji"),
    ],
)
async def test_utf8_filename_is_kept(
    client: httpx.AsyncClient, data_dir: Path, raw_name: bytes, expected: str
) -> None:
    # RFC 7578 §4.2 / HTML: browsers send the file name as raw UTF-8 in the quoted string.
    before = files_under(data_dir)
    body_bytes = multipart_body([file_part(photo_jpeg(), filename=raw_name)])
    response = await client.post(UPLOAD, content=body_bytes, headers=multipart_headers())
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["filename"] == expected
    assert_published(data_dir, before, body, "jpg")


# ---------------------------------------------------------------------------------------------
# Not multipart, or broken multipart
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"file": "aGVsbG8="}', "application/json", id="json"),
        pytest.param(photo_jpeg(), "image/jpeg", id="raw-jpeg"),
        pytest.param(photo_jpeg(), "application/octet-stream", id="raw-octet-stream"),
        pytest.param(b"file=hello&name=x.jpg", "application/x-www-form-urlencoded", id="form-urlencoded"),
        pytest.param(b"hello", "text/plain", id="text-plain"),
        pytest.param(
            multipart_body([file_part(photo_jpeg())]),
            "multipart/mixed; boundary=" + BOUNDARY.decode(),
            id="multipart-mixed",
        ),
        pytest.param(multipart_body([file_part(photo_jpeg())]), None, id="no-content-type"),
    ],
)
async def test_non_multipart_body_is_refused(
    client: httpx.AsyncClient, data_dir: Path, content: bytes, content_type: str | None
) -> None:
    before = files_under(data_dir)
    headers = {"Content-Type": content_type} if content_type is not None else {}
    response = await client.post(UPLOAD, content=content, headers=headers)
    assert_problem(response, 400, "malformed_multipart")
    assert files_under(data_dir) == before


VALID_BODY = multipart_body([file_part(photo_jpeg())])


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(
            VALID_BODY, "multipart/form-data; boundary=not-the-one-in-the-body", id="boundary-mismatch"
        ),
        pytest.param(
            multipart_body([file_part(photo_jpeg())], close=False), None, id="missing-closing-boundary"
        ),
        pytest.param(VALID_BODY[: len(VALID_BODY) // 2], None, id="truncated-mid-file"),
        pytest.param(VALID_BODY[:60], None, id="truncated-in-headers"),
        pytest.param(VALID_BODY[:-8], None, id="truncated-in-closing-boundary"),
        pytest.param(b"", None, id="empty-body"),
        pytest.param(b"garbage without any boundary" * 10, None, id="garbage"),
        pytest.param(VALID_BODY, "multipart/form-data", id="missing-boundary-parameter"),
        pytest.param(VALID_BODY, "multipart/form-data; boundary=", id="empty-boundary"),
        pytest.param(VALID_BODY, "multipart/form-data; charset=utf-8", id="other-parameter-only"),
        pytest.param(VALID_BODY, "multipart/form-data; boundary=" + "b" * 71, id="boundary-too-long"),
        pytest.param(
            multipart_body([(b"Content-Type: image/jpeg", photo_jpeg())]), None, id="part-without-disposition"
        ),
        pytest.param(
            # A header line over python-multipart's cap (about 4 KiB): refused, not buffered.
            multipart_body([file_part(photo_jpeg(), filename=b"x" * 20_000 + b".jpg")]),
            None,
            id="header-line-too-long",
        ),
        pytest.param(
            multipart_body([(b'Content-Disposition: attachment; name="file"', photo_jpeg())]),
            None,
            id="part-not-form-data",
        ),
    ],
)
async def test_broken_multipart_is_refused(
    client: httpx.AsyncClient, data_dir: Path, content: bytes, content_type: str | None
) -> None:
    before = files_under(data_dir)
    headers = {"Content-Type": content_type} if content_type is not None else multipart_headers()
    response = await client.post(UPLOAD, content=content, headers=headers)
    assert_problem(response, 400, "malformed_multipart")
    assert files_under(data_dir) == before


async def test_too_many_parts_is_refused(client: httpx.AsyncClient, data_dir: Path) -> None:
    before = files_under(data_dir)
    parts = [text_part(f"f{i}".encode(), b"x") for i in range(20)] + [file_part(jpeg_bytes())]
    response = await client.post(UPLOAD, content=multipart_body(parts), headers=multipart_headers())
    assert_problem(response, 400, "malformed_multipart")
    assert files_under(data_dir) == before


async def test_broken_multipart_after_file_part_leaves_no_file(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    # The file part completes (a temp file is fully written), then the body breaks.
    before = files_under(data_dir)
    body = (
        multipart_body([file_part(photo_jpeg())], close=False)
        + b"--"
        + BOUNDARY
        + b"\r\nno-colon-here\r\n\r\n"
    )
    response = await client.post(UPLOAD, content=body, headers=multipart_headers())
    assert_problem(response, 400, "malformed_multipart")
    assert files_under(data_dir) == before


# ---------------------------------------------------------------------------------------------
# Client hang-up mid-body (ASGI driven directly)
# ---------------------------------------------------------------------------------------------


async def test_client_disconnect_mid_body_leaves_no_file(app: FastAPI, data_dir: Path) -> None:
    body = multipart_body([file_part(photo_jpeg())])
    chunks = [body[:30_000], body[30_000:50_000]]
    assert len(body) > 50_000
    before = files_under(data_dir)
    temp_seen: list[list[str]] = []
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls <= len(chunks):
            return {"type": "http.request", "body": chunks[calls - 1], "more_body": True}
        # Both chunks were handed over: the upload is mid-file, its temp file on disk.
        temp_seen.append([p for p in files_under(data_dir) if Path(p).name.startswith(TEMP_PREFIX)])
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "POST",
        UPLOAD,
        [
            (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    try:
        await app(scope, receive, send)
    except ClientDisconnect:
        pass  # the hang-up may surface as an exception; what matters is the disk
    assert temp_seen, "the app never asked for more body after the first chunks"
    assert temp_seen[0], "no temp file existed mid-body: the test did not exercise cleanup"
    assert files_under(data_dir) == before
    assert not any(m.get("status") == 201 for m in sent)


async def test_client_disconnect_mid_json_body_is_client_disconnected(app: FastAPI) -> None:
    messages = iter([{"type": "http.request", "body": b'{"image_id": "', "more_body": True}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope("POST", "/api/v1/frontal/crop/submit", [(b"content-type", b"application/json")])
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["code"] == "client_disconnected"  # not a validation error
