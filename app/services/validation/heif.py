"""The HEIF structure walk (HEIC and AVIF, both ISO-BMFF): the top-level boxes exactly cover
the file. Their pixels are checked by decoding the header (`app.services.validation.checks`)."""

from __future__ import annotations

import mmap

from app.core.errors import UndecodableImage


def check_heif_structure(data: bytes | mmap.mmap) -> None:
    """Raise UndecodableImage unless the HEIF's top-level boxes exactly cover the file."""
    size, pos = len(data), 0
    while pos < size:
        if pos + 8 > size:
            raise UndecodableImage("The HEIF is truncated inside a box header")
        box = int.from_bytes(data[pos : pos + 4], "big")
        header = 8
        if box == 1:
            if pos + 16 > size:
                raise UndecodableImage("The HEIF is truncated inside a box header")
            box, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif box == 0:
            box = size - pos
        if box < header or pos + box > size:
            raise UndecodableImage("The HEIF is truncated or corrupt (a box runs past the end)")
        pos += box
