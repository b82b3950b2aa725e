"""Small test images, generated in memory (real photos from scikit-image's data)."""

from __future__ import annotations

import io
import threading
from functools import cache
from typing import ClassVar

import numpy as np
from PIL import Image
from pydantic import BaseModel
from skimage import data

from app.analyzers.base import ImageSource, NoParams
from app.analyzers.skin import SkinAnalyzer


class CountingSkin(SkinAnalyzer):
    """The `skin` analyzer, counting its computations (and optionally slowed or failing)."""

    def __init__(self, delay: float = 0.0, fail_with: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.fail_with = fail_with
        self._lock = threading.Lock()
        self._gate = threading.Event()

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        with self._lock:
            self.calls += 1
        if self.delay:
            self._gate.wait(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return super().analyze(source, params)


class SlowResult(BaseModel):
    ok: bool


class SlowModel:
    """A model-backed analyzer (named `slow` unless told) that holds its thread until `release`
    is set."""

    name: ClassVar[str] = "slow"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "test"
    params_model: ClassVar[type[BaseModel]] = NoParams
    result_model: ClassVar[type[BaseModel]] = SlowResult
    model_backed: ClassVar[bool] = True

    def __init__(self, name: str = "slow") -> None:
        self.name = name  # type: ignore[misc]
        self.started: list[str] = []
        self.release = threading.Event()

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        self.started.append(source.image_id)
        self.release.wait(10)
        return SlowResult(ok=True)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 120, 80)) -> bytes:
    """A small solid-colour JPEG."""
    return encode(Image.new("RGB", size, color), "JPEG", quality=90)


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (10, 200, 90)) -> bytes:
    """A small solid-colour PNG."""
    return encode(Image.new("RGB", size, color), "PNG")


@cache
def photo_jpeg() -> bytes:
    """scikit-image's astronaut photo as a JPEG (~70 KB)."""
    return encode(Image.fromarray(data.astronaut()), "JPEG", quality=90)


@cache
def photo_png() -> bytes:
    """scikit-image's coffee photo as a PNG (~450 KB)."""
    return encode(Image.fromarray(data.coffee()), "PNG")


def jpeg_of_exact_size(target: int) -> bytes:
    """A valid JPEG of exactly `target` bytes: a noisy photo, padded inside a COM segment."""
    rng = np.random.default_rng(0)
    side = 64
    while True:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        body = encode(Image.fromarray(pixels), "JPEG", quality=95)
        if len(body) + 4 <= target:
            side += 64
            if len(body) * 2 < target:
                continue
        break
    while len(body) + 4 > target:
        side -= 8
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        body = encode(Image.fromarray(pixels), "JPEG", quality=95)
    # Fill the gap with COM (comment) segments right after SOI; each holds <= 65533 bytes.
    gap = target - len(body)
    segments = b""
    while gap > 0:
        chunk = min(gap, 65535 + 2)
        if chunk < 4:
            raise AssertionError("cannot pad by less than 4 bytes")
        if gap - chunk and gap - chunk < 4:
            chunk -= 4
        payload = chunk - 4
        segments += b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + b"\x00" * payload
        gap -= chunk
    result = body[:2] + segments + body[2:]
    assert len(result) == target, (len(result), target)
    return result


# No test may depend on the default rate limits (a fast machine would hit them): limits stay on,
# far above what a test sends; tests of the limits themselves set their own.
TEST_RATE_LIMITS = {
    name: "100000/minute"
    for name in (
        "rate_limit_upload",
        "rate_limit_analyze",
        "rate_limit_auth",
        "rate_limit_login_username",
        "rate_limit_default",
    )
}
