"""Image ids: server-made UUID4s, accepted from clients only in their canonical form."""

from __future__ import annotations

import os
import re

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE)

UUID4_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"


def new_image_id() -> str:
    """A fresh random UUID4 in canonical lower-case form (as `str(uuid.uuid4())`, without
    building a UUID object: ~1.5 µs instead of ~6)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid4(value: str) -> bool:
    """True if `value` is a UUID version 4 in the canonical 8-4-4-4-12 hex form."""
    return _UUID4.fullmatch(value) is not None


def normalize_uuid4(value: str) -> str:
    """The canonical lower-case form of a UUID4; ValueError for anything else."""
    if not isinstance(value, str) or not is_uuid4(value):
        raise ValueError("must be a UUID version 4 (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)")
    return value.lower()
