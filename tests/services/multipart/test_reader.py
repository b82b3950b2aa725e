"""The streaming multipart reader: file part to disk (hashed, sniffed), small fields, limits."""

from __future__ import annotations

import errno
import hashlib
import resource
import tracemalloc
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import MalformedMultipart, PayloadTooLarge, TooManyFiles, UnsupportedMediaType
from app.services.multipart.reader import (
    FormLimits,
    _FileSink,
    receive_form,
    sanitize_filename,
)
from app.storage.atomic import temp_path_for
from tests.factories import jpeg_bytes, photo_jpeg

B = "xyz-boundary"
CT = f"multipart/form-data; boundary={B}"
LIMITS = FormLimits(
    max_file_bytes=10_000,
    max_body_bytes=20_000,
    max_parts=3,
    max_field_bytes=100,
    allowed_formats=frozenset({"jpeg", "png"}),
)


def part(name: str, data: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{B}\r\nContent-Disposition: {disposition}\r\n" + (
        f"Content-Type: {ctype}\r\n" if ctype else ""
    )
    return head.encode() + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


async def whole(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def one_byte_at_a_time(data: bytes) -> AsyncIterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


async def receive(
    tmp_path: Path,
    data: bytes,
    limits: FormLimits = LIMITS,
    content_type: str = CT,
    content_length: int | None = None,
    chunks: AsyncIterator[bytes] | None = None,
):
    """`receive_form` of `data` one byte at a time (or of `chunks`, if given) into `tmp_path`."""
    return await receive_form(
        content_type=content_type,
        chunks=one_byte_at_a_time(data) if chunks is None else chunks,
        file_field="file",
        new_temp=lambda: temp_path_for(tmp_path),
        limits=limits,
        content_length=content_length,
    )


async def test_file_and_fields_even_one_byte_at_a_time(tmp_path: Path) -> None:
    image = jpeg_bytes()
    form = await receive(
        tmp_path, body(part("note", "héllo".encode()), part("file", image, "a.jpg", "image/jpeg"))
    )
    assert form.fields == {"note": "héllo"}
    received = form.file
    assert received is not None and received.file is not None
    received.file.close()
    assert received.path.read_bytes() == image
    assert received.sha256 == hashlib.sha256(image).hexdigest()
    assert (received.size, received.format and received.format.name, received.filename) == (
        len(image),
        "jpeg",
        "a.jpg",
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (body(part("file", b"\xff\xd8\xff" + b"0" * 20_000, "a.jpg")), PayloadTooLarge),
        (body(part("note", b"x" * 101)), PayloadTooLarge),
        (body(part("a", b"1"), part("b", b"2"), part("c", b"3"), part("d", b"4")), MalformedMultipart),
        (body(part("file", jpeg_bytes(), "a.jpg"), part("file", jpeg_bytes(), "b.jpg")), TooManyFiles),
        (body(part("file", jpeg_bytes(), "a.jpg", "text/plain")), UnsupportedMediaType),
        (part("file", jpeg_bytes(), "a.jpg"), MalformedMultipart),  # no closing boundary
    ],
)
async def test_limits_and_malformed_forms_leave_no_file(tmp_path: Path, data: bytes, error: type) -> None:
    with pytest.raises(error):
        await receive(tmp_path, data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", None])
async def test_not_a_multipart_request(tmp_path: Path, content_type: str | None) -> None:
    with pytest.raises(MalformedMultipart):
        await receive(tmp_path, body(part("file", b"x", "a")), content_type=content_type)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("a\x00b\nc.png", "abc.png"),
        ("..", None),
        ("", None),
        (None, None),
        ("x" * 300, "x" * 255),
    ],
)
def test_sanitize_filename(raw: str | None, clean: str | None) -> None:
    assert sanitize_filename(raw) == clean


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text(max_size=20))
def test_sanitize_filename_ascii_shortcut_changes_nothing(raw: str) -> None:
    """Printable ASCII skips normalizing and filtering: both would leave it as it is."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    assert sanitize_filename(raw) == (None if name in ("", ".", "..") else name[:255])


async def test_a_trickled_file_gets_its_temp_file_only_after_16_kib(tmp_path: Path) -> None:
    """A client trickling its upload costs a small buffer, not a file on disk: the temp file is
    created once 16 KiB of the file arrived (or the part ended), with every byte in order."""
    image = jpeg_bytes() + bytes(30 * 1024)  # the sink sniffs and counts, it does not decode
    data = body(part("file", image, "a.jpg", "image/jpeg"))
    seen: list[int] = []  # temp files on disk after each chunk

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]
            seen.append(len(list(tmp_path.iterdir())))

    limits = FormLimits(
        max_file_bytes=10**6,
        max_body_bytes=2 * 10**6,
        max_parts=3,
        max_field_bytes=100,
        allowed_formats=frozenset({"jpeg"}),
    )
    form = await receive(tmp_path, b"", limits, chunks=chunks())
    assert seen[:15] == [0] * 15 and seen[-1] == 1
    assert form.file is not None and form.file.path.read_bytes() == image
    assert form.file.sha256 == hashlib.sha256(image).hexdigest()


async def test_prefix_hash_resumes_from_a_streaming_checkpoint(tmp_path: Path) -> None:
    # A declared trailer is cut off after streaming: the kept prefix's SHA-256 comes from the
    # checkpoint before the cut, plus the bytes after it (never more than ~256 KiB re-read).
    image = jpeg_bytes() + bytes(range(256)) * 4096  # ~1 MB: three checkpoints

    async def chunks_of_64k() -> AsyncIterator[bytes]:
        data = body(part("file", image, "a.jpg", "image/jpeg"))
        for i in range(0, len(data), 65_536):
            yield data[i : i + 65_536]

    limits = FormLimits(
        max_file_bytes=2_000_000,
        max_body_bytes=3_000_000,
        max_parts=3,
        max_field_bytes=100,
        allowed_formats=frozenset({"jpeg"}),
    )
    form = await receive_form(
        content_type=CT,
        chunks=chunks_of_64k(),
        file_field="file",
        new_temp=lambda: temp_path_for(tmp_path),
        limits=limits,
    )
    received = form.file
    assert received is not None and received.file is not None
    assert len(received.hash_checkpoints) >= 3
    for cut in (0, 1, 262_143, 262_144, 600_001, len(image)):
        assert received.prefix_sha256(image, cut) == hashlib.sha256(image[:cut]).hexdigest(), cut
    received.file.close()


@pytest.mark.parametrize("chunk_size", [1 << 20, 20_000, 4096])
async def test_forms_one_after_another_keep_their_own_headers_and_bytes(
    tmp_path: Path, chunk_size: int
) -> None:
    """Header values parsed once are reused for the next request with the same text, and a chunk
    of 16 KiB or more goes to the file without a copy: each form still gets exactly its own."""
    limits = FormLimits(
        max_file_bytes=10**6,
        max_body_bytes=2 * 10**6,
        max_parts=3,
        max_field_bytes=100,
        allowed_formats=frozenset({"jpeg"}),
    )
    sent = [("b-one", "a.jpg", "image/jpeg"), ("b-two", "b.jpg", None), ("b-one", "c.jpg", "image/jpeg")]
    for i, (boundary, filename, ctype) in enumerate(sent):
        image = jpeg_bytes() + bytes([i]) * 40_000
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        head += f"Content-Type: {ctype}\r\n\r\n" if ctype else "\r\n"
        data = head.encode() + image + f"\r\n--{boundary}--\r\n".encode()

        async def chunks(data: bytes = data) -> AsyncIterator[bytes]:
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]

        form = await receive_form(
            content_type=f"multipart/form-data; boundary={boundary}",
            chunks=chunks(),
            file_field="file",
            new_temp=lambda: temp_path_for(tmp_path),
            limits=limits,
        )
        received = form.file
        assert received is not None and received.file is not None
        received.file.close()
        assert (received.filename, received.declared_type) == (filename, ctype)
        assert received.path.read_bytes() == image and received.size == len(image)
        assert received.sha256 == hashlib.sha256(image).hexdigest()


async def test_a_small_file_is_also_kept_in_memory_a_larger_one_is_not(tmp_path: Path) -> None:
    image = jpeg_bytes()
    keeping = replace(LIMITS, keep_bytes=len(image), kept_budget=10 * len(image))
    small = (await receive(tmp_path, body(part("file", image, "a.jpg")), keeping)).file
    assert small is not None and small.contents == image == small.path.read_bytes()
    small.file.close()
    smaller = replace(keeping, keep_bytes=len(image) - 1)
    larger = (await receive(tmp_path, body(part("file", image, "b.jpg")), smaller)).file
    assert larger is not None and larger.contents is None and larger.path.read_bytes() == image
    larger.file.close()
    unset = (await receive(tmp_path, body(part("file", image, "c.jpg")))).file  # keep_bytes 0
    assert unset is not None and unset.contents is None
    unset.file.close()


async def test_a_body_declared_too_long_to_hold_a_kept_file_is_not_copied(tmp_path: Path) -> None:
    image = jpeg_bytes()
    data = body(part("file", image, "a.jpg"))
    keeping = replace(LIMITS, keep_bytes=len(image), kept_budget=10 * len(image))
    kept = (await receive(tmp_path, data, keeping, content_length=len(data))).file
    assert kept is not None and kept.contents == image
    kept.file.close()
    # A Content-Length past keep_bytes and the form's overhead: the file is written, never copied
    declared = len(image) + keeping.max_body_bytes - keeping.max_file_bytes + 1
    peaks: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in one_byte_at_a_time(data):
            peaks.append(_FileSink.kept_total)
            yield chunk

    form = await receive(tmp_path, data, keeping, content_length=declared, chunks=watched())
    assert form.file is not None and form.file.contents is None and form.file.path.read_bytes() == image
    form.file.file.close()
    assert max(peaks) == 0


async def test_a_file_the_disk_takes_only_in_part_is_refused_not_cut(tmp_path: Path) -> None:
    """A write that reaches a full disk or the file size limit part-way takes some of its bytes
    and says how many: the rest must be written again (and refused), not left out of a file
    whose size and hash count it. RLIMIT_FSIZE makes that happen here (Python ignores SIGXFSZ)."""
    image = jpeg_bytes()
    data = body(part("file", image, "a.jpg"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(image) // 2, hard))
    try:
        with pytest.raises(OSError) as refused:
            await receive(tmp_path, data, chunks=whole(data))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert refused.value.errno == errno.EFBIG
    assert list(tmp_path.iterdir()) == []


async def test_a_file_kept_from_tiny_chunks_holds_about_its_size(tmp_path: Path) -> None:
    """A small file is kept in memory whatever its chunks: one byte at a time must not cost an
    object per byte (~40 bytes each, a memory attack the budget, which counts bytes, would miss)."""
    image = photo_jpeg()  # ~68 KB
    size = len(image)
    keeping = replace(
        LIMITS, max_file_bytes=size, max_body_bytes=2 * size, keep_bytes=size, kept_budget=2 * size
    )
    tracemalloc.start()
    try:
        kept = (await receive(tmp_path, body(part("file", image, "a.jpg")), keeping)).file
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kept is not None and kept.contents == image
    kept.file.close()
    assert peak < 6 * size, (peak, size)  # its copies, not an object per byte


async def test_kept_bytes_stay_within_the_budget_and_are_given_back(tmp_path: Path) -> None:
    image = jpeg_bytes()
    over_budget = replace(LIMITS, keep_bytes=len(image), kept_budget=len(image) - 1)  # < one file
    over = (await receive(tmp_path, body(part("file", image, "a.jpg")), over_budget)).file
    assert over is not None and over.contents is None and over.path.read_bytes() == image
    over.file.close()
    assert _FileSink.kept_total == 0
    keeping = replace(over_budget, kept_budget=10 * len(image))
    with pytest.raises(MalformedMultipart):  # the body stops inside the file part
        await receive(tmp_path, body(part("file", image, "b.jpg"))[:-40], keeping)
    assert _FileSink.kept_total == 0  # the stalled file's share is given back


@pytest.mark.parametrize("junk", ["preamble", "padding"])
async def test_the_preamble_and_padding_limits_are_the_forms(tmp_path: Path, junk: str) -> None:
    image = jpeg_bytes()
    limits = replace(LIMITS, max_preamble_bytes=10, max_padding_bytes=10)
    for size, refused in ((10, False), (11, True)):
        data = body(part("file", image, "a.jpg"))
        if junk == "preamble":
            data = b"p" * size + b"\r\n" + data
        else:
            data = data.replace(f"--{B}\r\n".encode(), f"--{B}{' ' * size}\r\n".encode(), 1)
        if refused:
            with pytest.raises(MalformedMultipart):
                await receive(tmp_path, data, limits)
        else:
            form = await receive(tmp_path, data, limits)
            assert form.file is not None and form.file.path.read_bytes() == image
            form.file.file.close()
