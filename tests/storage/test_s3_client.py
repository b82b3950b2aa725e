"""The S3 connection under every object store: storage URLs, checksums, the translation of a
store that cannot serve into 503 `storage_unavailable` (with Retry-After), bounded waits on an
endpoint that refuses or never answers, and HeadObject of a live SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from app.core.errors import StorageUnavailable
from app.storage.s3 import S3ObjectStore
from app.storage.s3_client import S3Connection, checksum, is_missing, parse_storage_url
from tests.processes import free_port


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def test_checksums_are_the_base64_sha256_of_the_bytes() -> None:
    assert checksum(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert checksum(b"abc") == checksum(sha256_hex=hashlib.sha256(b"abc").hexdigest())
    assert checksum(b"abc") != checksum(b"abd")


def test_a_missing_key_is_not_a_missing_bucket() -> None:
    assert is_missing(_client_error(404, "NoSuchKey")) and is_missing(_client_error(404, "404"))
    assert not is_missing(_client_error(404, "NoSuchBucket"))
    assert not is_missing(_client_error(403, "AccessDenied"))


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "InternalError"),
        (503, "SlowDown"),
        (403, "AccessDenied"),
        (401, "x"),
        (429, "x"),
        (400, "BadDigest"),
    ],
)
def test_a_store_that_cannot_serve_is_storage_unavailable(status: int, code: str) -> None:
    connection = S3Connection(bucket="b", prefix="/p/", retry_after=9)
    assert connection.full_key("k") == "p/k"
    with pytest.raises(StorageUnavailable) as failed, connection.guard("read", "k"):
        raise _client_error(status, code)
    assert failed.value.status == 503 and failed.value.headers["Retry-After"] == "9"


def test_other_client_errors_and_timeouts_are_told_apart() -> None:
    connection = S3Connection(bucket="b")
    with pytest.raises(ClientError), connection.guard("read", "k"):
        raise _client_error(412, "PreconditionFailed")  # the caller's business (a lost race)
    with pytest.raises(StorageUnavailable), connection.guard("read", "k"):
        raise TimeoutError("read timeout")
    with pytest.raises(RuntimeError, match="not started"):
        _ = connection.client


async def test_head_of_a_live_store_answers_or_says_missing(s3_server: dict[str, Any]) -> None:
    async with S3ObjectStore(**s3_server, prefix=f"test-{uuid.uuid4().hex}") as store:
        assert await store.head("nothing-here") is None
        await store.create("here", b"12345")
        answer = await store.head("here")
        assert answer is not None and answer["ContentLength"] == 5


async def test_an_unreachable_endpoint_is_storage_unavailable_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: connections are refused
    upload = tmp_path / "upload"
    upload.write_bytes(b"bytes")
    async with S3ObjectStore(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="k",
        secret_access_key="s",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=2,
        retry_after=7,
    ) as store:
        calls: list[Callable[[], Awaitable[Any]]] = [
            store.check,
            lambda: store.create("k", b"x"),
            lambda: store.replace("k", b"x", '"e"'),
            lambda: store.read("k"),
            lambda: store.stat("k"),
            lambda: store.open("k", 1, 2),
            lambda: store.delete("k"),
            lambda: store.delete_prefix("images/x/"),
            lambda: store.put_file("k", upload, sha256=hashlib.sha256(b"bytes").hexdigest()),
        ]
        for call in calls:
            # Bounded by the timeouts and attempts above, far below botocore's defaults (minutes).
            with anyio.fail_after(30), pytest.raises(StorageUnavailable) as failed:
                await call()
            assert failed.value.status == 503 and failed.value.code == "storage_unavailable"
            assert failed.value.headers["Retry-After"] == "7"
        with anyio.fail_after(30), pytest.raises(StorageUnavailable):
            [o async for o in store.list("")]


async def test_a_server_that_never_answers_is_storage_unavailable_after_the_read_timeout(
    tmp_path: Path,
) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accepts the request and never answers

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with S3ObjectStore(
            bucket="b",
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key_id="k",
            secret_access_key="s",
            read_timeout=0.5,
            max_attempts=1,
        ) as store:
            with anyio.fail_after(30), pytest.raises(StorageUnavailable):
                await store.read("k")
            # Writes too: no `Expect: 100-continue` wait, which aiohttp would never time out.
            with anyio.fail_after(30), pytest.raises(StorageUnavailable):
                await store.create("k", b"x")
            upload = tmp_path / "upload"
            upload.write_bytes(b"bytes")
            with anyio.fail_after(30), pytest.raises(StorageUnavailable):
                await store.put_file("k", upload, sha256=hashlib.sha256(b"bytes").hexdigest())
    finally:
        server.close()


def test_storage_urls_name_a_bucket_and_a_prefix() -> None:
    assert parse_storage_url("s3://bucket") == ("bucket", "")
    assert parse_storage_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("bucket/prefix", "s3:///prefix", "http://bucket/prefix"):
        with pytest.raises(ValueError):
            parse_storage_url(bad)
    assert S3ObjectStore.from_url("s3://bucket/a/b/").prefix == "a/b/"
