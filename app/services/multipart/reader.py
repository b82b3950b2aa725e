"""Streaming multipart/form-data reader: one file part straight to disk, small text fields.

The parser (`multipart_parser.MultipartStream`) sees the body chunk by chunk; the file
part's bytes go to a temp file as they arrive, sniffed, counted and hashed on the way, so
no upload is ever held in memory. Every limit is enforced while reading.
"""

from __future__ import annotations

import hashlib
import mmap
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import Any

from python_multipart.multipart import parse_options_header

from app.core.errors import (
    MalformedMultipart,
    MissingFile,
    PayloadTooLarge,
    TooManyFiles,
    UnsupportedMediaType,
)
from app.core.formats import SNIFF_BYTES, ImageFormat, accepted_format
from app.services.multipart.parser import MAX_PADDING_BYTES, MAX_PREAMBLE_BYTES, MultipartStream
from app.storage.atomic import write_all

DECLARED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/webp",
        "image/heic",
        "image/heif",
        "image/heic-sequence",
        "image/heif-sequence",
        "image/avif",
        "image/avif-sequence",
        "application/octet-stream",
    }
)


@dataclass(frozen=True)
class FormLimits:
    """Limits applied while a form streams in."""

    max_file_bytes: int
    max_body_bytes: int
    max_parts: int
    max_field_bytes: int
    allowed_formats: frozenset[str]
    declared_types: frozenset[str] = DECLARED_TYPES
    max_preamble_bytes: int = MAX_PREAMBLE_BYTES  # before the first boundary
    max_padding_bytes: int = MAX_PADDING_BYTES  # spaces after a boundary
    # A file of at most `keep_bytes` also keeps a copy in memory (`ReceivedFile.contents`);
    # the files being received by this process at once keep at most `kept_budget` in all
    keep_bytes: int = 0
    kept_budget: int = 0

    def may_keep(self, content_length: int | None) -> bool:
        """Whether a body of `content_length` bytes (None: not declared) may hold a file small
        enough to keep: not when it is longer than `keep_bytes` and the form's share of the body
        (`max_body_bytes - max_file_bytes`: boundaries, headers, fields). A misjudged file is
        only checked through a mapping of its file instead."""
        form = self.max_body_bytes - self.max_file_bytes
        return self.keep_bytes > 0 and (content_length is None or content_length <= self.keep_bytes + form)


@dataclass
class ReceivedFile:
    """The file part of a form, fully written (not yet fsynced) to `path`.

    `file` is still open (read-write) so that the next step needs no second open;
    whoever takes the ReceivedFile closes it.
    """

    path: Path
    field_name: str
    filename: str | None
    declared_type: str | None
    size: int
    format: ImageFormat | None
    file: FileIO | None = None
    sha256: str = ""
    placed: bool = False  # renamed into place (and closed): nothing left to discard
    # The file's bytes, also kept in memory when it is small (`FormLimits.keep_bytes`): its
    # checks read them from here instead of mapping the file
    contents: bytes | None = None
    # (offset, SHA-256 state of the bytes before it) every ~HASH_CHECKPOINT_BYTES while streaming
    hash_checkpoints: list[tuple[int, Any]] = field(default_factory=list)

    def prefix_sha256(self, data: bytes | mmap.mmap, end: int) -> str:
        """SHA-256 of the file's first `end` bytes (`data`: its contents), resumed from the
        last streaming checkpoint at or before `end`: at most ~HASH_CHECKPOINT_BYTES re-read."""
        usable = ((o, h) for o, h in self.hash_checkpoints if o <= end)
        start, state = max(usable, default=(0, None), key=_first)
        hasher = hashlib.sha256() if state is None else state.copy()
        with memoryview(data) as view:
            hasher.update(view[start:end])
        return hasher.hexdigest()


@dataclass
class ReceivedForm:
    """What a form carried: at most one file part and the small text fields."""

    file: ReceivedFile | None = None
    fields: dict[str, str] = field(default_factory=dict)


def sanitize_filename(raw: str | None) -> str | None:
    """A client file name reduced to safe metadata: base name only, no control characters."""
    if raw is None:
        return None
    if raw.isascii() and raw.isprintable():  # the usual name: nothing to normalize or drop
        name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    else:
        name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
        name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return None
    return name[:255]


# Parsed header values, by their text: a client sends the same Content-Type and part headers
# again and again, and parsing one costs ~15 µs (three per upload). Bounded (texts of at most
# _PARSED_TEXT_MAX characters, _PARSED_MAX of them; a new one when full clears them all), so
# that no client can make it big. Readers never change a parsed value.
_PARSED_MAX = 256
_PARSED_TEXT_MAX = 512
_parsed: dict[str, tuple[bytes, dict[bytes, bytes]]] = {}


def _options(value: str) -> tuple[bytes, dict[bytes, bytes]]:
    """`parse_options_header(value)`, remembered for the short texts seen last."""
    found = _parsed.get(value)
    if found is None:
        found = parse_options_header(value)
        if len(value) <= _PARSED_TEXT_MAX:
            if len(_parsed) >= _PARSED_MAX:
                _parsed.clear()
            _parsed[value] = found
    return found


def _boundary(content_type: str | None) -> bytes:
    media, params = _options(content_type or "")
    if media.lower() != b"multipart/form-data":
        raise MalformedMultipart("Expected a multipart/form-data body with a `file` part")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 70:
        raise MalformedMultipart("The multipart boundary is missing or invalid")
    return boundary


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


HASH_CHECKPOINT_BYTES = 256 * 1024


class _FileSink:
    """Writes one file part to disk, sniffing, counting and hashing (SHA-256) on the way.

    Hashing each chunk while it is still in the CPU cache costs ~2.9 ms per 5 MB; hashing
    the file afterwards in a worker thread measured 3.4 ms more CPU per 5 MB upload
    (page faults through the mmap, or the copy through read()).

    The temp file is created once BUFFER_BYTES of the file have arrived (or the part ends):
    a client that trickles its upload costs a small buffer, not a file (creating one blocks
    the event loop ~1 ms on a busy disk: 1,000 trickling uploads made that an attack's main
    cost). Sockets under load deliver 16-64 KiB chunks, which go straight to the file.
    """

    BUFFER_BYTES = 16 * 1024
    # A file of at most `limits.keep_bytes` is also kept in memory, so that its checks read it
    # without mapping the file (an mmap, its page faults and munmap, two more GIL hand-offs
    # under load). All files being received at once keep at most `limits.kept_budget` between
    # them: uploads that stall short of their end cannot hold more memory than that (the others
    # go to disk only).
    kept_total = 0  # bytes kept by every sink of this process (event loop only)

    def __init__(self, path: Path, limits: FormLimits, keep: bool) -> None:
        self.path = path
        self.limits = limits
        self.file: FileIO | None = None
        self._pending = bytearray()
        self.hasher = hashlib.sha256()
        self.checkpoints: list[tuple[int, Any]] = []
        self.size = 0
        self.head = b""
        self.format: ImageFormat | None = None
        self.kept: bytearray | None = bytearray() if keep else None  # its bytes while it is small

    def write(self, data: memoryview) -> None:
        self.size += len(data)
        if self.size > self.limits.max_file_bytes:
            raise PayloadTooLarge(f"The file exceeds the limit of {self.limits.max_file_bytes} bytes")
        if self.format is None and len(self.head) < SNIFF_BYTES:
            self.head += bytes(data[: SNIFF_BYTES - len(self.head)])
            if len(self.head) >= SNIFF_BYTES:
                self.decide_format()
        self.hasher.update(data)
        self.keep(data)
        if self.size // HASH_CHECKPOINT_BYTES != (self.size - len(data)) // HASH_CHECKPOINT_BYTES:
            self.checkpoints.append((self.size, self.hasher.copy()))  # ~1 us each
        if self.file is not None:
            write_all(self.file, data)
        elif len(self._pending) + len(data) >= self.BUFFER_BYTES:
            write_all(self.opened(), data)  # straight from the chunk: no copy into the buffer
        else:
            self._pending += data

    def keep(self, data: memoryview) -> None:
        """Keep a copy of `data` while the file stays within `keep_bytes` and the budget allows."""
        if self.kept is None:
            return
        limits = self.limits
        if self.size <= limits.keep_bytes and _FileSink.kept_total + len(data) <= limits.kept_budget:
            self.kept += data  # not a list of chunks: an object per chunk of a byte would cost ~40x
            _FileSink.kept_total += len(data)
        else:
            self.release_kept()

    def release_kept(self) -> bytearray | None:
        """Stop keeping: the bytes kept so far (None if the file was not kept), their share of
        the budget given back."""
        kept, self.kept = self.kept, None
        if kept is not None:
            _FileSink.kept_total -= len(kept)
        return kept

    def opened(self) -> FileIO:
        """The temp file, created (with what arrived so far) if it is not yet."""
        if self.file is None:
            self.file = FileIO(self.path, "xb+")
            if self._pending:
                write_all(self.file, self._pending)
                self._pending = bytearray()
        return self.file

    def decide_format(self) -> None:
        self.format = accepted_format(self.head, self.limits.allowed_formats)


class _FormCollector:
    """python-multipart callbacks that route each part to a file sink or a small field."""

    def __init__(
        self,
        file_field: str,
        new_temp: Callable[[], Path],
        limits: FormLimits,
        on_file: Callable[[], None] | None = None,
        keep: bool = True,
    ) -> None:
        self.file_field = file_field
        self.new_temp = new_temp
        self.limits = limits
        self.on_file = on_file
        self.keep = keep  # the file part may be kept in memory (see FormLimits.may_keep)
        self.form = ReceivedForm()
        self.sink: _FileSink | None = None
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._kind = ""
        self._field_name = ""
        self._field_value = bytearray()
        self._file_done = False

    def begin_part(self, headers: dict[str, str]) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise MalformedMultipart(f"The form has more than {self.limits.max_parts} parts")
        self._headers = headers
        self.on_headers_finished()

    def on_headers_finished(self) -> None:
        disposition, params = _options(self._headers.get("content-disposition", ""))
        name_raw = params.get(b"name")
        if disposition.lower() != b"form-data" or name_raw is None:
            raise MalformedMultipart("A form part has no Content-Disposition name")
        name = name_raw.decode("utf-8", "replace")
        filename_raw = params.get(b"filename")
        is_file = name == self.file_field or filename_raw is not None
        if not is_file:
            self._kind = "field"
            self._field_name = name
            self._field_value.clear()
            return
        if self.sink is not None or self._file_done or name != self.file_field:
            raise TooManyFiles(f"Send exactly one file, in the form field `{self.file_field}`")
        declared = self._headers.get("content-type")
        if declared is not None:
            media = _options(declared)[0].decode("latin-1").lower()
            if media not in self.limits.declared_types:
                raise UnsupportedMediaType(
                    f"Declared type {media!r} is not accepted; use one of "
                    + ", ".join(sorted(self.limits.declared_types))
                )
            declared = media
        if self.on_file is not None:
            self.on_file()  # may refuse the form before any byte of the file is taken
        self._kind = "file"
        self.sink = _FileSink(self.new_temp(), self.limits, self.keep)
        self.form.file = ReceivedFile(
            path=self.sink.path,
            field_name=name,
            filename=sanitize_filename(filename_raw.decode("utf-8", "replace") if filename_raw else None),
            declared_type=declared,
            size=0,
            format=None,
        )

    def part_data(self, data: memoryview) -> None:
        if self._kind == "file":
            assert self.sink is not None
            self.sink.write(data)
        else:
            self._field_value += data
            if len(self._field_value) > self.limits.max_field_bytes:
                raise PayloadTooLarge(
                    f"Form field {self._field_name!r} exceeds {self.limits.max_field_bytes} bytes"
                )

    def end_part(self) -> None:
        if self._kind == "file":
            sink = self.sink
            assert sink is not None and self.form.file is not None
            if sink.format is None and sink.size > 0:
                sink.decide_format()
            self.form.file.file = sink.opened()
            self.form.file.sha256 = sink.hasher.hexdigest()
            self.form.file.hash_checkpoints = sink.checkpoints
            kept = sink.release_kept()
            if kept is not None:
                self.form.file.contents = bytes(kept)
            self.form.file.size = sink.size
            self.form.file.format = sink.format
            self._file_done = True
            self.sink = None
        else:
            self.form.fields[self._field_name] = self._field_value.decode("utf-8", "replace")
        self._kind = ""

    def close(self) -> None:
        if self.sink is not None and self.sink.file is not None:
            self.sink.file.close()
        if self.form.file is not None and self.form.file.file is not None:
            self.form.file.file.close()


async def receive_form(
    *,
    content_type: str | None,
    chunks: AsyncIterator[bytes],
    file_field: str,
    new_temp: Callable[[], Path],
    limits: FormLimits,
    on_file: Callable[[], None] | None = None,
    content_length: int | None = None,
) -> ReceivedForm:
    """Stream a multipart body; the file part lands in a temp file from `new_temp`.

    `content_length`, the body's declared length, tells whether its file may be small enough
    to keep in memory (a bigger one is not copied for nothing).

    `on_file` is called when the file part's headers have arrived, before any of its bytes
    are read: an exception it raises refuses the form there. On any error the temp file is
    removed before the exception propagates.
    """
    collector = _FormCollector(file_field, new_temp, limits, on_file, limits.may_keep(content_length))
    try:
        parser = MultipartStream(
            _boundary(content_type),
            collector,
            limits.max_field_bytes,
            max_preamble_bytes=limits.max_preamble_bytes,
            max_padding_bytes=limits.max_padding_bytes,
        )
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise PayloadTooLarge(f"The request body exceeds {limits.max_body_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except BaseException:
        collector.close()
        if collector.form.file is not None:
            collector.form.file.path.unlink(missing_ok=True)
        raise
    finally:
        if collector.sink is not None:  # a file part that never ended
            collector.sink.release_kept()
    return collector.form


def require_file(form: ReceivedForm, file_field: str) -> ReceivedFile:
    """The form's file part, or MissingFile."""
    if form.file is None:
        raise MissingFile(f"The form has no `{file_field}` file part")
    return form.file
