"""The S3 connection under `S3ObjectStore`: client configuration, lifecycle, and the
translation of a store that cannot serve into `StorageUnavailable`.

Failures: a refused or timed-out connection, a 5xx, throttling, a checksum the server
refuses, or credentials/a bucket it rejects become `StorageUnavailable` (503
`storage_unavailable`, `Retry-After`). Connecting is bounded by `connect_timeout`, every
read by `read_timeout`, and a call by `max_attempts` tries (botocore's "standard" retries),
so an unreachable store fails in seconds instead of holding a request for minutes. A
missing object is the caller's business (None); other 4xx are bugs and propagate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from app.core.errors import StorageUnavailable
from app.storage.objects import ObjectInfo

logger = logging.getLogger("app.storage")

# Error codes that mean "this store cannot serve us now", whatever their HTTP status: the
# bucket or credentials are wrong, it throttles, or the bytes arrived damaged (retry).
UNAVAILABLE_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "SlowDown",
        "BadDigest",
        "XAmzContentSHA256Mismatch",
    }
)


def parse_storage_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; ValueError for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def status_of(exc: ClientError) -> int:
    """The HTTP status of a client error."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def code_of(exc: ClientError) -> str:
    """The S3 error code of a client error (`NoSuchKey`, `PreconditionFailed`...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    """A 404 about the key (a missing bucket is a configuration fault, not a missing key)."""
    return status_of(exc) == 404 and code_of(exc) != "NoSuchBucket"


def checksum(data: bytes | None = None, *, sha256_hex: str | None = None) -> str:
    """The `x-amz-checksum-sha256` value (base64) of `data`, or of a known hex digest."""
    digest = bytes.fromhex(sha256_hex) if sha256_hex is not None else hashlib.sha256(data or b"").digest()
    return base64.b64encode(digest).decode()


def object_info(key: str, answer: dict[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject answer."""
    return ObjectInfo(key, int(answer["ContentLength"]), answer["ETag"], answer["LastModified"].timestamp())


def no_expect_continue(request: Any, **_: Any) -> None:
    """Send bodies at once: botocore asks for `100 Continue` first, and aiohttp waits for it
    without any timeout, so a server that accepts and then hangs would hold a put forever.
    Without it, `read_timeout` bounds the wait for the answer."""
    if "Expect" in request.headers:
        del request.headers["Expect"]


class S3Connection:
    """One bucket and prefix, a client with bounded timeouts, and its failure translation.

    Use as `async with store:` or `await store.start()` ... `await store.close()`.
    Credentials: the given pair, else botocore's standard chain (`AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`, profiles, instance roles).
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        max_connections: int = 32,
        retry_after: int = 5,
        chunk_size: int = 64 * 1024,
        page_size: int = 1000,
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.retry_after = retry_after
        self.chunk_size = chunk_size
        self.page_size = page_size
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": AioConfig(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                max_pool_connections=max_connections,
                # Path-style for self-hosted endpoints (no wildcard DNS). The payload is not
                # hashed again for the signature: every write carries its SHA-256 checksum.
                s3={
                    "addressing_style": "path" if endpoint_url else "auto",
                    "payload_signing_enabled": False,
                },
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self._client_args["region_name"] = self._client_args["region_name"] or "us-east-1"
        self._stack: contextlib.AsyncExitStack | None = None
        self._s3: Any = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store for `s3://bucket/prefix` (other options as for the constructor)."""
        bucket, prefix = parse_storage_url(url)
        return cls(bucket=bucket, prefix=prefix, **options)

    async def start(self) -> None:
        """Create the client (connections are opened on demand)."""
        if self._s3 is not None:
            return
        stack = contextlib.AsyncExitStack()
        self._s3 = await stack.enter_async_context(get_session().create_client("s3", **self._client_args))
        self._s3.meta.events.register("before-sign.s3", no_expect_continue)
        self._stack = stack

    async def close(self) -> None:
        """Close the client and its connection pool."""
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def client(self) -> Any:
        """The started aiobotocore S3 client."""
        if self._s3 is None:
            raise RuntimeError(f"{type(self).__name__} is not started (await start() or use `async with`)")
        return self._s3

    def full_key(self, key: str) -> str:
        """The bucket key of a store key."""
        return self.prefix + key

    def pages(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """ListObjectsV2 pages (`page_size` keys each) under a store prefix."""
        pages: AsyncIterator[dict[str, Any]] = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.full_key(prefix), PaginationConfig={"PageSize": self.page_size}
        )
        return pages

    async def head(self, key: str) -> dict[str, Any] | None:
        """The HeadObject answer of a store key, or None."""
        try:
            answer: dict[str, Any] = await self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return answer

    def unavailable(self, action: str, key: str, reason: str) -> StorageUnavailable:
        """The error for a store that cannot serve `action` on `key` (logged with `reason`)."""
        where = self.endpoint_url or "AWS"
        logger.warning(
            "object storage unavailable: %s %s/%s%s at %s: %s",
            action,
            self.bucket,
            self.prefix,
            key,
            where,
            reason,
        )
        return StorageUnavailable(headers={"Retry-After": str(self.retry_after)})

    @contextlib.contextmanager
    def guard(self, action: str, key: str) -> Iterator[None]:
        """Turn the failures of a store that cannot serve now into StorageUnavailable."""
        try:
            yield
        except ClientError as exc:
            status = status_of(exc)
            if status >= 500 or status in (401, 403, 429) or code_of(exc) in UNAVAILABLE_CODES:
                raise self.unavailable(action, key, f"{status} {code_of(exc)}") from exc
            raise
        except ParamValidationError:
            raise
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise self.unavailable(action, key, f"{type(exc).__name__}: {exc}") from exc
