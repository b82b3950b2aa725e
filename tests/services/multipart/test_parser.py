"""The streaming multipart parser: any chunking, binary data full of near-delimiters, and
agreement with python-multipart on random forms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser

from app.core.errors import MalformedMultipart
from app.services.multipart.parser import (
    MAX_PADDING_BYTES,
    MAX_PREAMBLE_BYTES,
    MultipartStream,
    parse_headers,
)

B = b"Xy-12_boundary"


class Collect:
    def __init__(self) -> None:
        self.parts: list[tuple[dict[str, str], bytes]] = []

    def begin_part(self, headers: dict[str, str]) -> None:
        self.parts.append((headers, b""))

    def part_data(self, data: memoryview) -> None:
        headers, body = self.parts[-1]
        self.parts[-1] = (headers, body + bytes(data))

    def end_part(self) -> None:
        pass


def form(bodies: list[bytes]) -> bytes:
    out = b""
    for i, body in enumerate(bodies):
        out += b"--" + B + b'\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n' % i + body + b"\r\n"
    return out + b"--" + B + b"--\r\n"


def parse(data: bytes, cuts: list[int]) -> list[bytes]:
    collect = Collect()
    stream = MultipartStream(B, collect, 16384)
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        stream.write(data[last:cut])
        last = cut
    stream.finalize()
    return [body for _, body in collect.parts]


def reference(data: bytes) -> list[bytes]:
    parts: list[bytes] = []
    callbacks = {
        "on_part_begin": lambda: parts.append(b""),
        "on_part_data": lambda d, s, e: parts.__setitem__(-1, parts[-1] + d[s:e]),
    }
    parser = MultipartParser(B, callbacks)
    parser.write(data)
    parser.finalize()
    return parts


tricky = st.binary(max_size=300) | st.lists(
    st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"--", b"\r\n--", b"\r\n--Xy-12_bound", b"Xy-12_boundar", b"a", b"\x00"]
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(tricky, min_size=1, max_size=4), st.lists(st.integers(0, 2000), max_size=12))
def test_agrees_with_python_multipart_whatever_the_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    data = form(bodies)
    assert parse(data, [c % (len(data) + 1) for c in cuts]) == bodies == reference(data)


def test_preamble_padding_folded_headers_and_epilogue() -> None:
    data = (
        b"preamble to ignore\r\n--" + B + b"  \t\r\n"
        b'Content-Disposition: form-data;\r\n name="a"\r\n\r\nvalue\r\n--' + B + b"--\r\nepilogue"
    )
    collect = Collect()
    stream = MultipartStream(B, collect, 16384)
    stream.write(data)
    stream.finalize()
    assert collect.parts == [({"content-disposition": 'form-data; name="a"'}, b"value")]


@pytest.mark.parametrize(
    "data",
    [
        b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end',
        b"--" + B + b"garbage\r\n\r\nx\r\n--" + B + b"--",
        b"x" * 2000,
        b"--" + B + b"\r\n" + b"H: " + b"v" * 20000 + b"\r\n\r\nx\r\n--" + B + b"--",
        b"--" + B + b"\r\nno colon here\r\n\r\nx\r\n--" + B + b"--",
    ],
)
def test_malformed_bodies(data: bytes) -> None:
    stream = MultipartStream(B, Collect(), 16384)
    with pytest.raises(MalformedMultipart):
        stream.write(data)
        stream.finalize()


def test_headers() -> None:
    assert parse_headers(b"Content-Type: image/png\r\nX-A:  b ") == {"content-type": "image/png", "x-a": "b"}


def test_part_data_is_a_view_of_the_chunk_itself() -> None:
    """A part's data is handed on from the chunk it arrived in, not from a copy of it (only the
    bytes a delimiter may start in are held back and copied)."""
    body = bytes(range(256)) * 400
    data = form([body])
    split = len(data) // 2
    chunks = [data[:split], data[split:]]
    seen: list[tuple[object, int]] = []

    class Views(Collect):
        def part_data(self, data: memoryview) -> None:
            seen.append((data.obj, len(data)))
            super().part_data(data)

    collect = Views()
    stream = MultipartStream(B, collect, 16384)
    for chunk in chunks:
        stream.write(chunk)
    stream.finalize()
    assert collect.parts[0][1] == body
    held = len(b"\r\n--" + B) - 1
    from_chunks = [size for obj, size in seen if any(obj is chunk for chunk in chunks)]
    assert sum(from_chunks) == len(body) - held  # all but the held-back bytes, straight from the chunks


def test_headers_arriving_in_any_pieces_end_where_they_end() -> None:
    """The end of a part's headers is found across chunk ends, also after near misses (a CR LF
    CR, a folded line) held back from earlier chunks, one byte at a time or split anywhere."""
    data = (
        b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\nX-A: 1\r\n \r\n\tfolded\r\n'
        b"X-B: \r\r\n\r\nvalue\r\n--" + B + b"--\r\n"
    )
    whole = parse(data, [])
    assert whole == [b"value"]
    assert parse(data, list(range(len(data)))) == whole
    for cut in range(len(data)):
        assert parse(data, [cut]) == whole


def _outcome(data: bytes, cuts: list[int], max_header_bytes: int) -> str:
    stream = MultipartStream(B, Collect(), max_header_bytes)
    last = 0
    try:
        for cut in [*cuts, len(data)]:
            stream.write(data[last:cut])
            last = cut
        stream.finalize()
    except MalformedMultipart as exc:
        return str(exc)
    return "parsed"


@pytest.mark.parametrize("over", [0, 1])
@pytest.mark.parametrize("limit", ["preamble", "padding", "headers"])
def test_limits_do_not_depend_on_how_the_body_is_cut(limit: str, over: int) -> None:
    """A preamble, the padding after a boundary and a part's headers are refused past their
    limits and accepted up to them, whether the body comes whole or a byte at a time."""
    preamble, padding, header = b"", b"", b"X-A: b"
    if limit == "preamble":
        preamble = b"p" * (MAX_PREAMBLE_BYTES + over)
    elif limit == "padding":
        padding = b" " * (MAX_PADDING_BYTES + over)
    else:
        header = b"X-A: " + b"h" * (100 - len(b"X-A: ") + over)  # max_header_bytes 100
    start = (preamble + b"\r\n" if preamble else b"") + b"--" + B
    data = start + padding + b"\r\n" + header + b"\r\n\r\nvalue\r\n--" + B + b"--\r\n"
    whole = _outcome(data, [], 100)
    assert (whole == "parsed") == (over == 0), whole
    assert _outcome(data, list(range(1, len(data))), 100) == whole
