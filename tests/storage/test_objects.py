"""app.storage.objects: the object key layout and ObjectStream (a range read of a real file here);
`publish` and the S3 store's contract are tested in tests/storage/test_s3.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.storage.objects import (
    ObjectInfo,
    ObjectStream,
    image_key,
    image_prefix,
    job_key,
    result_key,
)


def test_every_object_of_an_image_is_under_its_prefix() -> None:
    image_id = str(uuid.uuid4())
    prefix = image_prefix(image_id)
    assert prefix == f"images/{image_id}/"
    assert image_key(image_id, "jpg") == f"{prefix}original.jpg"
    assert result_key(image_id, "face.json") == f"{prefix}results/face.json"
    assert image_key(image_id, "jpg").startswith(prefix) and result_key(image_id, "x").startswith(prefix)
    other = image_prefix(str(uuid.uuid4()))
    assert not image_key(image_id, "jpg").startswith(other)
    assert job_key("inputs", "abc") == "jobs/inputs/abc"
    assert job_key("results", "abc") == "jobs/results/abc"


def file_stream(path: Path, first: int, last: int, closed: list[bool], chunk: int = 4) -> ObjectStream:
    """A range read of a real file, in `chunk`-byte pieces."""
    handle = path.open("rb")
    handle.seek(first)

    async def chunks() -> AsyncIterator[bytes]:
        left = last - first + 1
        while left > 0:
            piece = handle.read(min(chunk, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    async def close() -> None:
        handle.close()
        closed.append(True)

    info = ObjectInfo(key="k", size=path.stat().st_size, etag='"e"', modified=path.stat().st_mtime)
    return ObjectStream(info, first, last, chunks(), close)


async def test_a_stream_serves_its_inclusive_range_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(bytes(range(20)))
    closed: list[bool] = []
    async with file_stream(path, 3, 12, closed) as stream:
        assert stream.length == 10
        assert await stream.read() == bytes(range(3, 13))
    assert closed == [True]


async def test_a_stream_is_iterated_in_chunks_once(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b"abcdefghij")
    closed: list[bool] = []
    stream = file_stream(path, 0, 9, closed, chunk=3)
    assert [piece async for piece in stream] == [b"abc", b"def", b"ghi", b"j"]
    assert await stream.read() == b""  # consumed
    await stream.aclose()
    assert closed == [True]


async def test_a_stream_closes_when_its_reader_fails(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b"x" * 10)
    closed: list[bool] = []
    with pytest.raises(RuntimeError):
        async with file_stream(path, 0, 9, closed):
            raise RuntimeError("the client went away")
    assert closed == [True]
