"""The app with `STORAGE_URL=s3://...` against a real SeaweedFS, through HTTP.

Two apps with separate data dirs share one database and one bucket (as replicas do): an
image uploaded through one is served, analyzed and deleted through the other, byte for byte.
An S3 endpoint that stops answering (a TCP relay in front of the real server, closed and
opened again) is 503 `storage_unavailable` with `Retry-After` and a failing readiness check,
leaves nothing behind, and is recovered from without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.analyzers.registry import AnalyzerRegistry
from app.core.config import Settings
from app.storage.objects import image_prefix, result_key
from app.storage.s3 import S3ObjectStore
from tests.api.test_heic_renditions import analyze, heic, jpeg, upload
from tests.conftest import files_under, serve, shared_registry
from tests.factories import CountingSkin, jpeg_bytes, photo_jpeg
from tests.relay import Relay


@pytest.fixture
def prefix() -> str:
    return f"app-{uuid.uuid4().hex}"


@pytest.fixture
async def bucket(s3_server: dict[str, Any], prefix: str) -> AsyncIterator[S3ObjectStore]:
    """A client of the test's prefix in the shared bucket, to look at what the app stored."""
    async with S3ObjectStore(**s3_server, prefix=prefix) as store:
        yield store
        with contextlib.suppress(ValueError):
            await store.delete_prefix("images/")


@pytest.fixture
def s3_settings(
    tmp_path: Path, s3_server: dict[str, Any], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings of one replica: its own data dir, the shared database and bucket prefix."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret_access_key"])
    shared_db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"

    def _make(name: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / name,
            "environment": "test",
            "api_keys": [],
            "database_url": shared_db,
            "storage_url": f"s3://{s3_server['bucket']}/{prefix}",
            "s3_endpoint_url": s3_server["endpoint_url"],
            "s3_region": s3_server["region"],
            "rate_limits_enabled": False,
            "scale_out_checks": False,  # replicas in one process, on one host: SQLite, no Redis
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return _make


async def keys(store: S3ObjectStore, under: str) -> list[str]:
    return sorted([info.key async for info in store.list(under)])


async def test_two_replicas_share_bytes_results_and_deletes(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore, tmp_path: Path, empty_database_url: str
) -> None:
    """On one SQLite file and on one PostgreSQL database (with TEST_POSTGRES_URL)."""
    photo = photo_jpeg()
    shared = {"database_url": empty_database_url}
    async with serve(s3_settings("a", **shared)) as a, serve(s3_settings("b", **shared)) as b:
        up = await a.post("/api/v1/upload", files={"file": ("p.jpg", photo, "image/jpeg")})
        assert up.status_code == 201, up.text
        meta = up.json()
        image_id = meta["image_id"]
        assert await keys(bucket, image_prefix(image_id)) == [f"images/{image_id}/original.jpg"]
        assert files_under(tmp_path / "a" / "images") == []  # the temp file is gone, nothing kept

        assert (await b.get(f"/api/v1/images/{image_id}")).json() == meta
        content = await b.get(f"/api/v1/images/{image_id}/content")
        assert content.status_code == 200 and content.content == photo
        etag = content.headers["etag"]
        assert etag == f'"{meta["sha256"]}"' and content.headers["content-type"] == "image/jpeg"
        cached = await a.get(f"/api/v1/images/{image_id}/content", headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        part = await a.get(f"/api/v1/images/{image_id}/content", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == photo[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(photo)}"
        tail = await b.get(f"/api/v1/images/{image_id}/content", headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == photo[-5:]
        past = await b.get(f"/api/v1/images/{image_id}/content", headers={"Range": f"bytes={len(photo)}-"})
        assert past.status_code == 416 and past.json()["code"] == "range_not_satisfiable"

        for request in ({"image_id": image_id}, {"image_id": image_id, "analyzer": "classify"}):
            first = await a.post("/api/v1/analyze", json=request)
            assert first.status_code == 200, first.text
            for replica in (b, a, b):
                again = await replica.post("/api/v1/analyze", json=request)
                assert again.status_code == 200 and again.content == first.content
        stored = await keys(bucket, image_prefix(image_id))
        assert stored == [
            f"images/{image_id}/original.jpg",
            result_key(image_id, "classify.json"),
            result_key(image_id, "default.json"),
        ]
        assert files_under(tmp_path / "a" / "analysis") == files_under(tmp_path / "b" / "analysis") == []

        assert (await b.delete(f"/api/v1/images/{image_id}")).status_code == 204
        assert await keys(bucket, image_prefix(image_id)) == []
        for path in ("", "/content"):
            assert (await a.get(f"/api/v1/images/{image_id}{path}")).status_code == 404
        assert (await a.post("/api/v1/analyze", json={"image_id": image_id})).status_code == 404


async def test_a_corrupt_result_object_is_recomputed_and_replaced(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore
) -> None:
    async with serve(s3_settings("a")) as a:
        image_id = (await a.post("/upload", files={"file": ("a.jpg", jpeg_bytes())})).json()["image_id"]
        good = (await a.post("/api/v1/analyze", json={"image_id": image_id})).content
        key = result_key(image_id, "default.json")
        stored = await bucket.read(key)
        assert stored is not None and stored.data == good
        assert await bucket.replace(key, b'{"truncated', stored.etag) is not None

    async with serve(s3_settings("b")) as b:  # a fresh replica: no copy in memory
        again = await b.post("/api/v1/analyze", json={"image_id": image_id})
        assert again.status_code == 200 and again.content == good
        assert (await bucket.read(key)).data == good  # type: ignore[union-attr]


async def test_concurrent_first_analyses_over_two_replicas_get_one_result(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore
) -> None:
    skins = [CountingSkin(delay=0.2), CountingSkin(delay=0.2)]
    async with (
        serve(s3_settings("a"), AnalyzerRegistry([skins[0]])) as a,
        serve(s3_settings("b"), AnalyzerRegistry([skins[1]])) as b,
    ):
        image_id = (await a.post("/upload", files={"file": ("a.jpg", jpeg_bytes())})).json()["image_id"]
        answers = await asyncio.gather(
            *(replica.post("/api/v1/analyze", json={"image_id": image_id}) for replica in (a, b) * 10)
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        stored = await bucket.read(result_key(image_id, "default.json"))
        assert stored is not None and stored.data == answers[0].content
        # Single-flight within each replica; across replicas the first writer wins.
        assert 1 <= skins[0].calls + skins[1].calls <= 2


async def test_account_erasure_removes_every_object_of_the_account(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore
) -> None:
    async with serve(s3_settings("a")) as a:
        body = {"username": "alice", "password": "correct horse battery staple"}
        assert (await a.post("/api/v1/auth/register", json=body)).status_code == 201
        token = (await a.post("/api/v1/auth/login", json=body)).json()["access_token"]
        alice = {"Authorization": f"Bearer {token}"}
        ids = []
        for color in ((1, 2, 3), (4, 5, 6)):
            up = await a.post("/upload", files={"file": ("a.jpg", jpeg_bytes(color=color))}, headers=alice)
            ids.append(up.json()["image_id"])
            analyzed = await a.post("/api/v1/analyze", json={"image_id": ids[-1]}, headers=alice)
            assert analyzed.status_code == 200
        other = (await a.post("/upload", files={"file": ("b.jpg", jpeg_bytes())})).json()["image_id"]
        assert len(await keys(bucket, "images/")) == 5

        assert (await a.delete("/api/v1/auth/me", headers=alice)).status_code == 204
        assert await keys(bucket, "images/") == [f"images/{other}/original.jpg"]


async def test_start_up_removes_objects_no_row_names_once_they_are_old_enough(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore
) -> None:
    async with serve(s3_settings("a")) as a:
        kept = (await a.post("/upload", files={"file": ("a.jpg", jpeg_bytes())})).json()["image_id"]
    orphan = str(uuid.uuid4())  # bytes put by an upload that died before its commit, and a result
    await bucket.create(f"images/{orphan}/original.jpg", jpeg_bytes(color=(9, 9, 9)))
    await bucket.create(result_key(orphan, "default.json"), b"{}")

    async with serve(s3_settings("b")):  # within the grace period: an upload may still commit
        assert len(await keys(bucket, image_prefix(orphan))) == 2
    async with serve(s3_settings("c", storage_orphan_grace_seconds=0)) as c:
        assert await keys(bucket, image_prefix(orphan)) == []
        assert (await c.get(f"/api/v1/images/{kept}/content")).status_code == 200


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll until `check` holds (an upper bound only: it ends as soon as it holds)."""
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.1)


async def test_unreachable_storage_is_503_not_ready_and_recovers_without_restart(
    s3_settings: Callable[..., Settings], s3_server: dict[str, Any], bucket: S3ObjectStore, tmp_path: Path
) -> None:
    relay = Relay(s3_server["endpoint_url"])
    await relay.open()
    settings = s3_settings(
        "a", s3_endpoint_url=relay.url, s3_connect_timeout_seconds=0.5, s3_read_timeout_seconds=2.0
    )
    settings = settings.model_copy(update={"s3_max_attempts": 1, "s3_retry_after_seconds": 7})
    try:
        async with serve(settings) as api:
            before = await api.post("/upload", files={"file": ("a.jpg", jpeg_bytes())})
            assert before.status_code == 201
            image_id = before.json()["image_id"]
            assert (await api.get("/readyz")).status_code == 200

            await relay.close()
            upload = await api.post("/upload", files={"file": ("b.jpg", jpeg_bytes(color=(1, 2, 3)))})
            assert upload.status_code == 503, upload.text
            assert upload.json()["code"] == "storage_unavailable" and upload.headers["retry-after"] == "7"
            for response in (
                await api.get(f"/api/v1/images/{image_id}/content"),
                await api.post("/api/v1/analyze", json={"image_id": image_id}),
                await api.delete(f"/api/v1/images/{image_id}"),
            ):
                assert response.status_code == 503 and response.json()["code"] == "storage_unavailable"
                assert response.headers["retry-after"] == "7"
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert {c["name"]: c["ok"] for c in ready.json()["checks"]}["storage"] is False
            assert files_under(tmp_path / "a" / "images") == []  # no temp file left behind
            assert (await api.get("/api/v1/images")).json()["total"] == 1  # no row for the failed one

            await relay.open()

            async def ready_again() -> bool:
                return (await api.get("/readyz")).status_code == 200

            await wait_for(ready_again)
            after = await api.post("/upload", files={"file": ("b.jpg", jpeg_bytes(color=(1, 2, 3)))})
            assert after.status_code == 201
            analyzed = await api.post("/api/v1/analyze", json={"image_id": image_id})
            assert analyzed.status_code == 200
            assert (await api.delete(f"/api/v1/images/{image_id}")).status_code == 204
            assert await keys(bucket, image_prefix(image_id)) == []
    finally:
        await relay.close()


async def test_a_users_concurrent_first_analysis_over_two_replicas_is_charged_once(
    s3_settings: Callable[..., Settings],
) -> None:
    """Both replicas may compute the same first analysis (single-flight is per process); the
    credit is charged once per subject (a unique index), whichever replica charges first."""
    async with (
        serve(s3_settings("a", initial_credits=5, user_cache_seconds=0), shared_registry()) as a,
        serve(s3_settings("b", initial_credits=5, user_cache_seconds=0), shared_registry()) as b,
    ):
        body = {"username": "carol", "password": "correct horse battery staple"}
        assert (await a.post("/api/v1/auth/register", json=body)).status_code == 201
        token = (await a.post("/api/v1/auth/login", json=body)).json()["access_token"]
        carol = {"Authorization": f"Bearer {token}"}
        up = await a.post("/upload", files={"file": ("p.jpg", photo_jpeg())}, headers=carol)
        image_id = up.json()["image_id"]
        request = {"image_id": image_id, "analyzer": "classify"}
        answers = await asyncio.gather(
            *(r.post("/api/v1/analyze", json=request, headers=carol) for r in (a, b) * 5)
        )
        assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
        assert len({r.content for r in answers}) == 1
        for replica in (a, b):
            assert (await replica.get("/v1/me", headers=carol)).json()["credits"] == 4


async def test_a_cache_hit_asks_the_catalog_not_the_store(
    s3_settings: Callable[..., Settings], s3_server: dict[str, Any], tmp_path: Path, empty_database_url: str
) -> None:
    """A result this replica served before is served again without an S3 request (so a store
    that stops answering does not fail it), and a delete through another replica makes it a
    404 at once: the catalog row is what a hit checks. The store's outage still shows in
    readiness, and a result this replica has not served is still a 503."""
    relay = Relay(s3_server["endpoint_url"])
    await relay.open()
    shared = {"database_url": empty_database_url}
    behind_relay = s3_settings(
        "a", s3_endpoint_url=relay.url, s3_connect_timeout_seconds=0.5, s3_read_timeout_seconds=2.0, **shared
    ).model_copy(update={"s3_max_attempts": 1})
    try:
        async with serve(behind_relay) as a, serve(s3_settings("b", **shared)) as b:
            ids = [
                (await b.post("/upload", files={"file": (f"{n}.jpg", jpeg_bytes(color=(n, 2, 3)))})).json()[
                    "image_id"
                ]
                for n in (1, 2)
            ]
            first = await b.post("/api/v1/analyze", json={"image_id": ids[0]})
            served = await a.post("/api/v1/analyze", json={"image_id": ids[0]})  # read from S3
            assert served.status_code == 200 and served.content == first.content

            await relay.close()
            again = await a.post("/api/v1/analyze", json={"image_id": ids[0]})
            assert again.status_code == 200, again.text
            assert again.content == first.content and again.headers["x-cache"] == "HIT"
            unseen = await a.post("/api/v1/analyze", json={"image_id": ids[1]})
            assert unseen.status_code == 503 and unseen.json()["code"] == "storage_unavailable"
            assert (await a.get("/readyz")).status_code == 503

            assert (await b.delete(f"/api/v1/images/{ids[0]}")).status_code == 204
            gone = await a.post("/api/v1/analyze", json={"image_id": ids[0]})
            assert gone.status_code == 404 and gone.json()["code"] == "image_not_found"
    finally:
        await relay.close()


RENDITION = "rendition-q90-v1.jpg"


@contextlib.asynccontextmanager
async def logged(name: str) -> AsyncIterator[list[logging.LogRecord]]:
    """The records one logger emits meanwhile (its own handler: the app's loggers may not
    propagate to pytest's)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


async def test_a_heic_on_object_storage_is_decoded_once_into_a_rendition_object(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore, tmp_path: Path
) -> None:
    """The first model-backed reader on any replica makes the rendition object; `face` on it
    matches the same picture sent as a JPEG; the other replica's analyses and previews read it
    (never made again); a delete removes it, and no replica keeps a file of the image."""
    options = {"rendition_at_upload": False, "perceptual_reuse_distance": 0}
    async with (
        serve(s3_settings("a", **options)) as a,
        serve(s3_settings("b", **options)) as b,
        logged("app.previews") as records,
    ):
        heic_id = await upload(a, heic())
        jpeg_id = await upload(a, jpeg(), "image/jpeg")
        key = result_key(heic_id, RENDITION)
        assert await keys(bucket, image_prefix(heic_id)) == [f"images/{heic_id}/original.heic"]

        faces = {name: await analyze(b, i, "face") for name, i in (("heic", heic_id), ("jpeg", jpeg_id))}
        for side in ("x", "y", "width", "height"):
            assert abs(faces["heic"]["face_box"][side] - faces["jpeg"]["face_box"][side]) <= 8, faces
        stored = await bucket.read(key)
        assert stored is not None
        with Image.open(io.BytesIO(stored.data)) as im:
            assert (im.format, im.size) == ("JPEG", (1280, 960))
        assert await keys(bucket, image_prefix(jpeg_id)) == [
            f"images/{jpeg_id}/original.jpg",
            result_key(jpeg_id, "face.json"),
        ]  # a JPEG decodes reduced: no rendition

        labels = [(await analyze(a, i, "classify"))["predictions"][0]["label"] for i in (heic_id, jpeg_id)]
        assert labels[0] == labels[1]
        preview = await a.get(f"/api/v1/images/{heic_id}/preview?width=128")
        assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (128, 96)
        made = [r for r in records if f"rendition image_id={heic_id} stored" in r.getMessage()]
        assert len(made) == 1  # replica a read b's rendition: the HEIC was decoded once
        assert (await bucket.read(key)).etag == stored.etag  # type: ignore[union-attr]

        assert (await a.delete(f"/api/v1/images/{heic_id}")).status_code == 204
        assert await keys(bucket, image_prefix(heic_id)) == []
        for replica in ("a", "b"):
            assert [name for name in files_under(tmp_path / replica) if heic_id in name] == []
            assert files_under(tmp_path / replica / "images") == []  # no private copy left


async def test_a_heic_upload_on_object_storage_stores_its_rendition_in_the_background(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore, tmp_path: Path
) -> None:
    async with serve(s3_settings("a")) as a:
        image_id = await upload(a, heic())

        async def stored() -> bool:
            return result_key(image_id, RENDITION) in await keys(bucket, image_prefix(image_id))

        await wait_for(stored, 120.0)
        whole = await bucket.read(result_key(image_id, RENDITION))
        assert whole is not None and whole.data.endswith(b"\xff\xd9")
        half = whole.data[: len(whole.data) // 2]  # a damaged object: made again by its reader
        assert await bucket.replace(result_key(image_id, RENDITION), half, whole.etag) is not None
        assert "face_box" in await analyze(a, image_id, "face")
        again = await bucket.read(result_key(image_id, RENDITION))
        assert again is not None and again.data.endswith(b"\xff\xd9")
        assert abs(len(again.data) - len(whole.data)) < len(whole.data) // 100
        assert (await a.delete(f"/api/v1/images/{image_id}")).status_code == 204
        assert await keys(bucket, image_prefix(image_id)) == []
        assert files_under(tmp_path / "a" / "images") == []
        assert [name for name in files_under(tmp_path / "a") if image_id in name] == []


async def test_a_heic_analysis_while_storage_is_down_is_503_and_leaves_nothing(
    s3_settings: Callable[..., Settings], s3_server: dict[str, Any], bucket: S3ObjectStore, tmp_path: Path
) -> None:
    relay = Relay(s3_server["endpoint_url"])
    await relay.open()
    settings = s3_settings(
        "a", s3_endpoint_url=relay.url, s3_connect_timeout_seconds=0.5, s3_read_timeout_seconds=2.0
    ).model_copy(update={"s3_max_attempts": 1, "rendition_at_upload": False})
    try:
        async with serve(settings) as api:
            image_id = await upload(api, heic())
            await relay.close()
            for response in (
                await api.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "face"}),
                await api.get(f"/api/v1/images/{image_id}/preview?width=128"),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "storage_unavailable" and response.headers["retry-after"]
            assert files_under(tmp_path / "a" / "images") == []
            await relay.open()
            assert "face_box" in await analyze(api, image_id, "face")
            assert result_key(image_id, RENDITION) in await keys(bucket, image_prefix(image_id))
            assert files_under(tmp_path / "a" / "images") == []
    finally:
        await relay.close()


async def test_a_heic_near_duplicate_on_object_storage_is_hashed_from_its_rendition(
    s3_settings: Callable[..., Settings], bucket: S3ObjectStore
) -> None:
    async with serve(s3_settings("a", rendition_at_upload=False)) as a:
        first, second = await upload(a, heic()), await upload(a, heic())
        assert "reused_from" not in await analyze(a, first, "face")
        reused = await analyze(a, second, "face")
        assert reused["reused_from"]["image_id"] == first
        # the second image's hash was taken from its rendition, stored for it (one decode, kept)
        assert await keys(bucket, image_prefix(second)) == [
            f"images/{second}/original.heic",
            result_key(second, RENDITION),
        ]
