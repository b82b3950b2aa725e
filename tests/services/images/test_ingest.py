"""IngestService: streamed uploads, Idempotency-Key replays, URL-less file ingest, clean failures."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.composition import ServiceContainer
from app.core.errors import (
    EmptyFile,
    IdempotencyConflict,
    IdempotencyMismatch,
    MissingFile,
    PayloadTooLarge,
    TooManyFiles,
    UndecodableImage,
    UnsupportedMediaType,
)
from app.services.accounts.principals import Principal
from app.services.images.ingest import UploadOutcome
from tests.conftest import files_under
from tests.factories import CountingSkin, jpeg_bytes, png_bytes
from tests.services.conftest import publish, running

TESTER = Principal(id="key:tester", kind="api_key")

BOUNDARY = "test-boundary-1234"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(data: bytes, field: str = "file", filename: str = "a.jpg", part_type: str = "image/jpeg") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {part_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def chunks_of(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def upload(services: ServiceContainer, body: bytes, key: str | None = None) -> UploadOutcome:
    return await services.ingest.upload(
        content_type=CONTENT_TYPE,
        content_length=len(body),
        chunks=chunks_of(body),
        idempotency_key=key,
        owner=TESTER,
    )


async def test_upload_publishes_bytes_and_typed_metadata(settings, data_dir: Path) -> None:
    data = png_bytes((30, 20))
    async with running(settings, CountingSkin()) as services:
        outcome = await upload(
            services, form(data, filename="../../x.png", part_type="application/octet-stream")
        )
        stored = await services.images.get(outcome.image_id, TESTER)
    meta = outcome.metadata
    assert (meta.format, meta.content_type, meta.width, meta.height) == ("png", "image/png", 30, 20)
    assert meta.size_bytes == len(data) and meta.sha256 == hashlib.sha256(data).hexdigest()
    assert meta.filename == "x.png" and not outcome.replayed
    assert stored.metadata == meta and stored.path.read_bytes() == data
    assert files_under(data_dir / "images") == [f"{meta.image_id}.png"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (form(b""), EmptyFile),
        (form(b"GIF89a" + b"\0" * 100), UnsupportedMediaType),
        (form(jpeg_bytes()[:-200]), UndecodableImage),
        (form(jpeg_bytes(), field="other"), TooManyFiles),
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'.encode()
            + f"--{BOUNDARY}--\r\n".encode(),
            MissingFile,
        ),
        (form(jpeg_bytes(), part_type="text/html"), UnsupportedMediaType),
    ],
)
async def test_refused_uploads_leave_nothing(settings, data_dir: Path, body: bytes, error: type) -> None:
    async with running(settings, CountingSkin()) as services:
        with pytest.raises(error):
            await upload(services, body)
    assert files_under(data_dir / "images") == []


async def test_size_limit_is_enforced_while_streaming(make_settings, data_dir: Path) -> None:
    async with running(make_settings(max_upload_bytes=1000), CountingSkin()) as services:
        with pytest.raises(PayloadTooLarge):
            await services.ingest.upload(
                owner=TESTER,
                content_type=CONTENT_TYPE,
                content_length=None,
                chunks=chunks_of(form(b"\xff\xd8\xff" + b"\0" * 5000)),
            )
    assert files_under(data_dir / "images") == []


async def test_idempotency_key_replays_then_refuses_another_file(settings) -> None:
    async with running(settings, CountingSkin()) as services:
        first = await upload(services, form(jpeg_bytes()), key="k1")
        again = await upload(services, form(jpeg_bytes()), key="k1")
        with pytest.raises(IdempotencyMismatch):
            await upload(services, form(png_bytes()), key="k1")
    assert again.replayed and again.metadata == first.metadata


async def test_idempotency_key_in_flight_is_a_conflict(settings, data_dir: Path) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        body = form(jpeg_bytes())
        yield body[:10]
        started.set()
        await release.wait()
        yield body[10:]

    async with running(settings, CountingSkin()) as services:
        first = asyncio.ensure_future(
            services.ingest.upload(
                owner=TESTER,
                content_type=CONTENT_TYPE,
                content_length=None,
                chunks=slow(),
                idempotency_key="k",
            )
        )
        await started.wait()
        with pytest.raises(IdempotencyConflict):
            await services.ingest.upload(
                owner=TESTER,
                content_type=CONTENT_TYPE,
                content_length=None,
                chunks=chunks_of(form(jpeg_bytes())),
                idempotency_key="k",
            )
        release.set()
        assert not (await first).replayed


async def test_a_retry_after_delete_uploads_afresh(settings) -> None:
    async with running(settings, CountingSkin()) as services:
        first = await upload(services, form(jpeg_bytes()), key="k2")
        await services.images.delete(first.image_id, TESTER)
        retry = await upload(services, form(jpeg_bytes()), key="k2")
        assert not retry.replayed and retry.image_id != first.image_id
        assert (await services.images.metadata(retry.image_id, TESTER)) == retry.metadata


class HangUp(Exception):
    """What the body stream raises when the client goes away (Starlette's ClientDisconnect)."""


async def test_a_client_hang_up_leaves_nothing(settings, data_dir: Path) -> None:
    async def hang_up() -> AsyncIterator[bytes]:
        yield form(jpeg_bytes())[:50]
        raise HangUp()

    async with running(settings, CountingSkin()) as services:
        with pytest.raises(HangUp):
            await services.ingest.upload(
                owner=TESTER, content_type=CONTENT_TYPE, content_length=None, chunks=hang_up()
            )
    assert files_under(data_dir / "images") == []


def run_sql(database: Path, sql: str) -> None:
    """One statement on the database, from outside the service (its own connection)."""
    with sqlite3.connect(database) as db:
        db.execute(sql)


async def test_an_upload_whose_catalog_row_is_refused_leaves_no_bytes(settings, data_dir: Path) -> None:
    """On SQLite the row is committed from the upload's worker thread, after the rename: when
    the database refuses it, the bytes already in place go, and the error reaches the caller."""
    refuse = "CREATE TRIGGER refuse BEFORE INSERT ON images BEGIN SELECT RAISE(ABORT, 'refused'); END"
    database = data_dir / "service.db"
    async with running(settings, CountingSkin()) as services:
        # From a thread: the service's own transactions go on while this one waits for its lock.
        await asyncio.to_thread(run_sql, database, refuse)
        with pytest.raises(sqlite3.IntegrityError):
            await upload(services, form(jpeg_bytes()))
        assert files_under(data_dir / "images") == []
        await asyncio.to_thread(run_sql, database, "DROP TRIGGER refuse")
        outcome = await upload(services, form(jpeg_bytes()))
        stored = await services.images.get(outcome.image_id, TESTER)
    assert stored.metadata == outcome.metadata
    assert files_under(data_dir / "images") == [f"{outcome.image_id}.jpg"]


async def test_ingest_file_publishes_or_removes_the_file(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        outcome = await publish(services, jpeg_bytes(), "x.jpg")
        with pytest.raises(UnsupportedMediaType):
            await publish(services, b"not an image at all", "y.jpg")
    assert outcome.metadata.filename == "x.jpg"
    assert files_under(data_dir / "images") == [f"{outcome.image_id}.jpg"]
