"""Upload (seed 001 and 002 routes), image metadata, content and delete, through HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import files_under, serve
from tests.factories import photo_jpeg, photo_png, png_bytes

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    name: str = "photo.jpg",
    path: str = "/upload",
    mime: str = "image/jpeg",
    **kwargs: object,
) -> httpx.Response:
    return await client.post(path, files={"file": (name, content, mime)}, **kwargs)  # type: ignore[arg-type]


async def test_seed_001_upload_returns_201_and_uuid4(client: httpx.AsyncClient, data_dir: Path) -> None:
    body = photo_jpeg()
    resp = await upload(client, body)
    assert resp.status_code == 201
    image_id = resp.json()["image_id"]
    assert UUID4.match(image_id)
    assert resp.headers["location"] == f"/api/v1/images/{image_id}"
    stored = data_dir / "images" / f"{image_id}.jpg"
    assert stored.read_bytes() == body
    assert files_under(data_dir / "images") == [f"{image_id}.jpg"]  # metadata: a catalog row


async def test_seed_002_upload_reports_metadata(client: httpx.AsyncClient) -> None:
    body = photo_png()
    resp = await upload(
        client,
        body,
        "coffee.png",
        "/api/v1/upload",
        "image/png",
        headers={"X-API-KEY": "interview-test-key-123"},
    )
    assert resp.status_code == 201
    meta = resp.json()
    assert meta["content_type"] == "image/png"
    assert meta["filename"] == "coffee.png"
    assert meta["size_bytes"] == len(body)
    assert re.fullmatch(r"\d+\.\d\d KB", meta["size"])
    assert (meta["width"], meta["height"]) == (600, 400)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest()
    assert meta["created_at"].endswith("Z")


async def test_reported_type_comes_from_bytes(client: httpx.AsyncClient) -> None:
    resp = await upload(client, photo_jpeg(), "blob.bin", mime="application/octet-stream")
    assert resp.status_code == 201
    assert resp.json()["content_type"] == "image/jpeg"
    # A PNG declared as JPEG is stored and reported as the PNG it is.
    resp = await upload(client, png_bytes(), "fake.jpg", mime="image/jpeg")
    assert resp.status_code == 201
    assert resp.json()["content_type"] == "image/png"


async def test_each_upload_gets_a_fresh_id(client: httpx.AsyncClient) -> None:
    ids = {(await upload(client, photo_jpeg())).json()["image_id"] for _ in range(3)}
    assert len(ids) == 3


async def test_metadata_content_and_delete(client: httpx.AsyncClient, data_dir: Path) -> None:
    body = photo_jpeg()
    image_id = (await upload(client, body)).json()["image_id"]

    meta = await client.get(f"/api/v1/images/{image_id}")
    assert meta.status_code == 200
    assert meta.json()["image_id"] == image_id

    content = await client.get(f"/api/v1/images/{image_id}/content")
    assert content.status_code == 200
    assert content.content == body
    assert content.headers["content-type"] == "image/jpeg"
    etag = content.headers["etag"]
    assert etag == f'"{hashlib.sha256(body).hexdigest()}"'
    again = await client.get(f"/api/v1/images/{image_id}/content", headers={"If-None-Match": etag})
    assert again.status_code == 304

    assert (await client.post("/analyze", json={"image_id": image_id})).status_code == 200
    assert (data_dir / "analysis" / f"{image_id}.json").exists()

    deleted = await client.delete(f"/api/v1/images/{image_id}")
    assert deleted.status_code == 204
    assert files_under(data_dir / "images") == files_under(data_dir / "analysis") == []
    for path in (f"/api/v1/images/{image_id}", f"/api/v1/images/{image_id}/content"):
        gone = await client.get(path)
        assert gone.status_code == 404
        assert gone.json()["code"] == "image_not_found"
    assert (await client.delete(f"/api/v1/images/{image_id}")).status_code == 404
    assert (await client.post("/analyze", json={"image_id": image_id})).status_code == 404


async def test_content_is_cached_privately_but_revalidated_so_a_delete_is_seen(
    client: httpx.AsyncClient,
) -> None:
    """A cache may keep the bytes but must ask again (ETag, 304) before each use: after a
    DELETE, the next use gets the 404 (a year's `immutable` would serve the deleted image)."""
    image_id = (await upload(client, photo_jpeg())).json()["image_id"]
    path = f"/api/v1/images/{image_id}/content"
    first = await client.get(path)
    assert first.headers["cache-control"] == "private, no-cache"
    revalidated = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert revalidated.headers["cache-control"] == "private, no-cache"
    assert revalidated.headers["etag"] == first.headers["etag"]
    assert (await client.delete(f"/api/v1/images/{image_id}")).status_code == 204
    gone = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert gone.status_code == 404 and gone.headers["cache-control"] == "no-store"


async def test_ranges_of_the_content(client: httpx.AsyncClient) -> None:
    body = photo_jpeg()
    path = f"/api/v1/images/{(await upload(client, body)).json()['image_id']}/content"
    part = await client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == body[10:20]
    for invalid in ("bytes=50-10", "bytes=abc", "items=0-1", "nonsense"):
        whole = await client.get(path, headers={"Range": invalid})  # ignored (RFC 9110 14.2)
        assert whole.status_code == 200 and whole.content == body, invalid
    past = await client.get(path, headers={"Range": f"bytes={len(body)}-"})
    assert past.status_code == 416 and past.json()["code"] == "range_not_satisfiable"
    assert past.headers["content-range"] == f"bytes */{len(body)}"


async def test_head_on_every_get_route(client: httpx.AsyncClient) -> None:
    image_id = (await upload(client, photo_jpeg())).json()["image_id"]
    for path in (
        f"/api/v1/images/{image_id}/content",
        f"/api/v1/images/{image_id}",
        "/api/v1/images",
        "/api/v1/analyzers",
        "/docs",
        "/health",
    ):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == str(len(got.content)), path
        assert head.headers["content-type"] == got.headers["content-type"], path
    missing = await client.head(f"/api/v1/images/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.content == b""
    wrong = await client.put("/api/v1/images")
    assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    resp = await client.get(f"/api/v1/images/{unknown}")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    for bad in ("not-a-uuid", str(uuid.uuid1()), unknown.replace("-", ""), "..%2F..%2Fetc"):
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"/api/v1/images/{bad}")
            assert resp.status_code in (400, 404), (bad, resp.status_code)
            if resp.status_code == 400:
                assert resp.json()["code"] == "validation_error"
    assert (await client.get(f"/api/v1/images/{uuid.uuid1()}")).status_code == 400


async def test_idempotency_key_replays_and_rejects_other_body(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    headers = {"Idempotency-Key": "upload-123"}
    first = await upload(client, photo_jpeg(), headers=headers)
    assert first.status_code == 201
    retry = await upload(client, photo_jpeg(), headers=headers)
    assert retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    images = [f for f in files_under(data_dir) if f.startswith("images/")]
    assert len(images) == 1  # one image (its metadata is a catalog row)

    other = await upload(client, png_bytes(), "x.png", mime="image/png", headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert [f for f in files_under(data_dir) if f.startswith("images/")] == images


async def test_idempotency_key_in_flight_is_409(client: httpx.AsyncClient) -> None:
    import anyio

    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    release = anyio.Event()

    async def slow_body():
        yield head + photo_jpeg()[:100]
        await release.wait()
        yield photo_jpeg()[100:] + tail

    headers = {"Idempotency-Key": "busy", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    results: dict[str, httpx.Response] = {}

    async def first() -> None:
        results["first"] = await client.post("/upload", content=slow_body(), headers=headers)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.sleep(0.2)
        second = await upload(client, photo_jpeg(), headers={"Idempotency-Key": "busy"})
        assert second.status_code == 409
        assert second.json()["code"] == "idempotency_key_in_use"
        release.set()
    assert results["first"].status_code == 201


async def test_idempotency_survives_restart(make_settings, data_dir: Path) -> None:
    async def once() -> httpx.Response:
        async with serve(make_settings()) as c:
            return await upload(c, photo_jpeg(), headers={"Idempotency-Key": "k-restart"})

    first, second = await once(), await once()
    assert first.status_code == second.status_code == 201
    assert json.loads(second.content)["image_id"] == json.loads(first.content)["image_id"]


async def test_idempotency_key_must_be_sane(client: httpx.AsyncClient) -> None:
    resp = await upload(client, photo_jpeg(), headers={"Idempotency-Key": "x" * 300})
    assert resp.status_code == 400


async def test_errors_never_reveal_server_paths(client: httpx.AsyncClient, data_dir: Path) -> None:
    fake = b"\xff\xd8\xff\xe0" + b"\x00" * 5000
    resp = await upload(client, fake)
    assert resp.status_code == 400
    assert resp.json()["code"] == "undecodable_image"
    assert str(data_dir) not in resp.text and ".tmp-" not in resp.text


async def test_metadata_files_of_an_earlier_version_are_imported(make_settings, data_dir: Path) -> None:
    whole, damaged = str(uuid.uuid4()), str(uuid.uuid4())
    images = data_dir / "images"
    images.mkdir(parents=True)
    (images / f"{whole}.jpg").write_bytes(photo_jpeg())
    legacy = {
        "image_id": whole,
        "filename": "old.jpg",
        "content_type": "image/jpeg",
        "format": "jpeg",
        "size_bytes": len(photo_jpeg()),
        "size": "66.46 KB",
        "width": 512,
        "height": 512,
        "sha256": hashlib.sha256(photo_jpeg()).hexdigest(),
        "created_at": "2026-11-01T10:00:00.000000Z",
    }
    (images / f"{whole}.json").write_text(json.dumps(legacy))
    (images / f"{damaged}.png").write_bytes(photo_png())
    (images / f"{damaged}.json").write_bytes(b'{"image_id": "trunc')
    async with serve(make_settings()) as c:
        assert (await c.get(f"/api/v1/images/{whole}")).json()["filename"] == "old.jpg"
        rebuilt = (await c.get(f"/api/v1/images/{damaged}")).json()
        assert rebuilt["filename"] is None  # the one thing the bytes cannot tell
        assert rebuilt["sha256"] == hashlib.sha256(photo_png()).hexdigest()
        assert (await c.post("/analyze", json={"image_id": damaged})).status_code == 200
    assert files_under(images) == sorted([f"{whole}.jpg", f"{damaged}.png"])


async def test_bytes_without_a_catalog_row_are_never_published(make_settings, data_dir: Path) -> None:
    # A crash between the rename of the bytes and the commit of the row: the client never got
    # a 201, nobody may see the image, and start-up removes it once it is old enough that no
    # live sibling worker can still be committing it.
    stale, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    images = data_dir / "images"
    images.mkdir(parents=True)
    for image_id in (stale, fresh):
        (images / f"{image_id}.png").write_bytes(photo_png())
    old = time.time() - 3600
    os.utime(images / f"{stale}.png", (old, old))
    async with serve(make_settings()) as c:
        for image_id in (stale, fresh):
            assert (await c.get(f"/api/v1/images/{image_id}")).status_code == 404
            assert (await c.post("/analyze", json={"image_id": image_id})).status_code == 404
    assert files_under(images) == [f"{fresh}.png"]


async def test_missing_bytes_are_404_not_500(client: httpx.AsyncClient, data_dir: Path) -> None:
    image_id = (await upload(client, photo_jpeg())).json()["image_id"]
    (data_dir / "images" / f"{image_id}.jpg").unlink()
    resp = await client.get(f"/api/v1/images/{image_id}/content")
    assert resp.status_code == 404
    assert resp.json()["code"] == "image_not_found"


async def test_overlapping_uploads_leave_no_temp_file(client: httpx.AsyncClient, data_dir: Path) -> None:
    """Good and refused uploads at once (the temp-file stock is in use): afterwards only the
    published images are on disk."""
    good, bad = photo_jpeg(), b"\xff\xd8\xff\xe0 not really a jpeg"
    answers = await asyncio.gather(*(upload(client, good if i % 2 else bad) for i in range(24)))
    assert sorted(r.status_code for r in answers) == [201] * 12 + [400] * 12
    ids = {r.json()["image_id"] for r in answers if r.status_code == 201}
    assert len(ids) == 12
    stored = {Path(p).name for p in files_under(data_dir / "images")}
    assert stored == {f"{image_id}.jpg" for image_id in ids}


async def test_parallel_deletes_of_one_image_delete_it_once(client: httpx.AsyncClient) -> None:
    """Exactly one DELETE succeeds; the others find no image (404), even with the metadata cached."""
    for _ in range(3):
        image_id = (await upload(client, photo_jpeg())).json()["image_id"]
        assert (await client.get(f"/api/v1/images/{image_id}")).status_code == 200  # cached
        answers = await asyncio.gather(*(client.delete(f"/api/v1/images/{image_id}") for _ in range(6)))
        assert sorted(r.status_code for r in answers) == [204] + [404] * 5
