"""app.services.validation.png: the PNG chunk walk -- hostile and ordinary files (built in
tests/services/validation/samples.py), the text and metadata limits as settings, the ordering
rules, how compressed text is charged, and the bounded check of the image data."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.core.errors import UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import inspect_image
from app.services.validation.limits import IntegrityLimits
from app.services.validation.png import (
    DEFLATE_MAX_RATIO,
    IMAGE_DATA_CHECK_BYTES,
    SIGNATURE,
    check_png_structure,
)
from app.services.validation.settings import DEFAULT_LIMITS
from tests.services.validation import samples
from tests.services.validation.samples import insert, mapped, png_hostile, png_ok, small_png, text, ztxt


def chunk(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def ihdr(width: int = 4, height: int = 4, depth: int = 8, color: int = 0, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))


def idat(width: int = 4, height: int = 4, bytes_per_row: int | None = None) -> bytes:
    row = b"\0" + b"\0" * (width if bytes_per_row is None else bytes_per_row)
    return chunk(b"IDAT", zlib.compress(row * height))


def png(*middle: bytes, before: bytes = b"", after: bytes = b"", header: bytes | None = None) -> bytes:
    """A 4x4 grey PNG: `before` between IHDR and IDAT, `middle` replacing the IDAT, `after` before IEND."""
    body = b"".join(middle) if middle else idat()
    return SIGNATURE + (header or ihdr()) + before + body + after + chunk(b"IEND")


def limits(**changes: int) -> IntegrityLimits:
    return dataclasses.replace(DEFAULT_LIMITS, **changes)


def test_the_minimal_png_passes() -> None:
    check_png_structure(png(), DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no signature"),
        (SIGNATURE + chunk(b"tEXt", b"a\0b") + ihdr(), "no signature"),
        (png(before=ihdr()), "a second IHDR"),
        (png(after=chunk(b"pHYs", b"\0" * 9)), "'pHYs' chunk after the image data"),
        (png(idat(), chunk(b"tIME", b"\0" * 7), idat()), "not contiguous"),
        (png()[:-12] + chunk(b"IEND", b"x"), "IEND is not empty"),
        (png() + b"\0" * 5, "5 bytes of data after its end"),
        (png(before=chunk(b"IDAX")), "unknown critical chunk 'IDAX'"),
        (png(before=chunk(b"t\xe9XT")), "chunk type"),
        (SIGNATURE + ihdr() + chunk(b"IEND"), "no image data"),
    ],
    ids=[
        "empty",
        "text-before-ihdr",
        "second-ihdr",
        "phys-after-idat",
        "idat-split-by-time",
        "iend-payload",
        "trailing-bytes",
        "unknown-critical",
        "latin1-type",
        "no-idat",
    ],
)
def test_structure_errors_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=message):
        check_png_structure(body, DEFAULT_LIMITS)


def test_only_text_time_and_frame_chunks_may_follow_the_image_data() -> None:
    after = (
        chunk(b"tEXt", b"k\0v")
        + chunk(b"iTXt", b"k\0\0\0\0\0v")
        + chunk(b"tIME", b"\x07\xe8\x01\x01\x00\x00\x00")
        + chunk(b"fcTL", b"\0" * 26)
        + chunk(b"fdAT", b"\0" * 8)
    )
    check_png_structure(png(after=after), DEFAULT_LIMITS)


def test_frame_chunks_are_not_counted_as_metadata() -> None:
    frames = chunk(b"fcTL", b"\0" * 26) * 3
    check_png_structure(png(before=frames), limits(image_max_metadata_segments=0))
    with pytest.raises(UndecodableImage, match="ancillary"):
        check_png_structure(png(before=chunk(b"pHYs", b"\0" * 9)), limits(image_max_metadata_segments=0))


def test_compressed_text_counts_at_its_worst_case_towards_the_total() -> None:
    payload = b"k\0\0" + b"z" * 47  # 50 bytes of zTXt data, never inflated
    worst = 50 * DEFLATE_MAX_RATIO  # 51,600
    tight = limits(png_max_text_chunk_bytes=1_000_000, png_max_text_bytes=worst - 1)
    with pytest.raises(UndecodableImage, match="text chunks hold more than"):
        check_png_structure(png(before=chunk(b"zTXt", payload)), tight)
    check_png_structure(png(before=chunk(b"tEXt", payload)), tight)  # plain text counts its size
    check_png_structure(png(before=chunk(b"zTXt", payload)), limits(png_max_text_bytes=worst))


def test_compressed_text_is_charged_at_most_the_per_chunk_limit_before_the_image() -> None:
    payload = b"k\0\0" + b"z" * 47
    capped = limits(png_max_text_chunk_bytes=1000, png_max_text_bytes=2500)
    check_png_structure(png(before=chunk(b"zTXt", payload) * 2), capped)  # 2 x 1000
    with pytest.raises(UndecodableImage, match="hold more than 2500"):
        check_png_structure(png(before=chunk(b"zTXt", payload) * 3), capped)  # 3 x 1000


def test_an_itxt_is_compressed_only_when_its_flag_says_so() -> None:
    plain = b"key\0" + b"\0\0" + b"de\0Schluessel\0" + b"v" * 30
    packed = b"key\0" + b"\1\0" + b"de\0Schluessel\0" + b"v" * 30
    tight = limits(png_max_text_chunk_bytes=1000)
    check_png_structure(png(after=chunk(b"iTXt", plain)), tight)
    with pytest.raises(UndecodableImage, match="could inflate"):
        check_png_structure(png(after=chunk(b"iTXt", packed)), tight)


def test_only_the_first_rows_of_a_huge_image_are_inflated() -> None:
    header = ihdr(width=8000, height=8000, color=2)  # 192 MB of rows promised
    enough = chunk(b"IDAT", zlib.compress(b"\0" * IMAGE_DATA_CHECK_BYTES))
    check_png_structure(png(enough, header=header), DEFAULT_LIMITS)
    short = chunk(b"IDAT", zlib.compress(b"\0" * (IMAGE_DATA_CHECK_BYTES - 1)))
    with pytest.raises(UndecodableImage, match=f"{IMAGE_DATA_CHECK_BYTES - 1} of 192008000 bytes"):
        check_png_structure(png(short, header=header), DEFAULT_LIMITS)


def test_image_data_split_over_many_chunks_is_followed_across_them() -> None:
    stream = zlib.compress(b"\0" * (5 * 17))  # 16x5 grey: 5 rows of a filter byte + 16 bytes
    pieces = [chunk(b"IDAT", stream[i : i + 3]) for i in range(0, len(stream), 3)]
    check_png_structure(png(*pieces, header=ihdr(width=16, height=5)), DEFAULT_LIMITS)
    with pytest.raises(UndecodableImage, match="truncated or corrupt"):
        check_png_structure(png(*pieces[:-2], header=ihdr(width=16, height=5)), DEFAULT_LIMITS)


def test_a_header_pillow_refuses_is_left_to_pillow() -> None:
    # Colour type 5 does not exist: the walk cannot know the row size and does not guess.
    check_png_structure(png(chunk(b"IDAT", zlib.compress(b"x")), header=ihdr(color=5)), DEFAULT_LIMITS)


@pytest.mark.parametrize(("name", "body"), png_hostile().items(), ids=png_hostile().keys())
def test_hostile_png_is_refused(name: str, body: bytes) -> None:
    with pytest.raises(UndecodableImage):
        check_png_structure(body, DEFAULT_LIMITS)
    with pytest.raises(UndecodableImage):
        inspect_image(body, FORMATS["png"], 40_000_000)


def test_ztxt_bomb_before_idat_is_refused_by_pillow_within_its_limit() -> None:
    # The walk does not inflate it (Pillow's header read does, up to MAX_TEXT_CHUNK, then refuses).
    body = insert(small_png(), ztxt(b"\0" * 20_000_000), "before")
    check_png_structure(body, DEFAULT_LIMITS)
    with pytest.raises(UndecodableImage):
        inspect_image(body, FORMATS["png"], 40_000_000)


def test_png_text_limits_are_settings() -> None:
    base = small_png()
    three = insert(base, text() * 3, "after")
    check_png_structure(three, DEFAULT_LIMITS)
    with pytest.raises(UndecodableImage, match="more than 2 text chunks"):
        check_png_structure(three, limits(png_max_text_chunks=2))
    with pytest.raises(UndecodableImage, match="100-byte tEXt"):
        check_png_structure(
            insert(base, text(b"k", b"x" * 98), "before"), limits(png_max_text_chunk_bytes=99)
        )
    with pytest.raises(UndecodableImage, match="hold more than 30 bytes"):
        check_png_structure(three, limits(png_max_text_bytes=30))
    small_ztxt = ztxt(b"small text, compressed")
    assert (len(small_ztxt) - 12) * DEFLATE_MAX_RATIO < DEFAULT_LIMITS.png_max_text_chunk_bytes
    check_png_structure(insert(base, small_ztxt, "after"), DEFAULT_LIMITS)  # cannot inflate past 1 MiB
    with pytest.raises(UndecodableImage, match="could inflate"):
        check_png_structure(insert(base, small_ztxt, "after"), limits(png_max_text_chunk_bytes=1000))


def test_png_chunk_and_metadata_limits_are_settings() -> None:
    body = samples.png(pnginfo=None, icc_profile=b"x" * 2000, dpi=(72, 72))  # iCCP + pHYs
    check_png_structure(body, DEFAULT_LIMITS)
    with pytest.raises(UndecodableImage, match="more than 1 ancillary"):
        check_png_structure(body, limits(image_max_metadata_segments=1))
    with pytest.raises(UndecodableImage, match="ancillary chunks hold more than 40 bytes"):
        check_png_structure(body, limits(image_max_metadata_bytes=40))
    with pytest.raises(UndecodableImage, match="more than 3 chunks"):
        check_png_structure(body, limits(image_max_chunks=3))


def test_ordinary_pngs_pass(tmp_path: Path) -> None:
    for name, body in png_ok(tmp_path).items():
        check_png_structure(body, DEFAULT_LIMITS)
        assert inspect_image(body, FORMATS["png"], 40_000_000)[0] > 0, name
        with Image.open(io.BytesIO(body)) as im:
            im.load()  # really whole (the hand-built ones too)


def test_png_crc_is_checked_on_the_mmap(tmp_path: Path) -> None:
    body = bytearray(samples.png())
    assert inspect_image(mapped(tmp_path, bytes(body)), FORMATS["png"], 40_000_000) == (600, 400)
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(UndecodableImage, match="bad CRC"):
        inspect_image(mapped(tmp_path, bytes(body), "bad"), FORMATS["png"], 40_000_000)
