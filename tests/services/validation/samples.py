"""Upload files for the structure-walk tests, built chunk by chunk: PNG chunk surgery, JPEG
segments, WebP RIFF chunks, ordinary files that must pass and hostile ones that must not.

Shared by tests/services/validation/test_{png,jpeg,webp,checks,settings}.py and, through HTTP,
tests/api/test_upload_integrity.py.
"""

from __future__ import annotations

import dataclasses
import io
import mmap
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin
from skimage import data

from app.services.validation.limits import IntegrityLimits
from app.services.validation.settings import DEFAULT_LIMITS


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


@cache
def jpeg(**options: object) -> bytes:
    return encode(Image.fromarray(data.astronaut()), "JPEG", **options)


@cache
def png(**options: object) -> bytes:
    return encode(Image.fromarray(data.coffee()), "PNG", **options)


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    return exif.tobytes()


EXIF = _exif()


def limits(**changes: int) -> IntegrityLimits:
    return dataclasses.replace(DEFAULT_LIMITS, **changes)


# --- PNG chunk surgery ---------------------------------------------------------------------------

Chunk = tuple[bytes, bytes]


def chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def split_png(body: bytes) -> list[Chunk]:
    chunks, pos = [], 8
    while pos < len(body):
        length = int.from_bytes(body[pos : pos + 4], "big")
        chunks.append((body[pos + 4 : pos + 8], body[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def join_png(chunks: list[Chunk]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(kind, payload) for kind, payload in chunks)


def insert(body: bytes, extra: bytes, where: str) -> bytes:
    """`extra` (raw chunks) just after IHDR (`before`), after the last IDAT (`after`)."""
    chunks = split_png(body)
    kinds = [kind for kind, _ in chunks]
    index = 1 if where == "before" else len(kinds) - 1 - kinds[::-1].index(b"IDAT") + 1
    head = join_png(chunks[:index])
    return head + extra + join_png(chunks[index:])[8:]


def text(keyword: bytes = b"Comment", value: bytes = b"hello") -> bytes:
    return chunk(b"tEXt", keyword + b"\0" + value)


def ztxt(raw: bytes, keyword: bytes = b"Comment") -> bytes:
    return chunk(b"zTXt", keyword + b"\0\0" + zlib.compress(raw, 9))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def raw_png(
    width: int,
    height: int,
    depth: int,
    color: int,
    channels: int,
    interlace: int = 0,
    idat: bytes | None = None,
) -> bytes:
    """A PNG of zero pixels built by hand (Pillow writes no interlaced PNG); `idat` replaces its data."""
    if idat is None:
        passes = (
            [(width, height)]
            if not interlace
            else [
                (max(0, (width - x + dx - 1) // dx), max(0, (height - y + dy - 1) // dy))
                for x, y, dx, dy in _ADAM7
            ]
        )
        rows = b"".join((b"\0" + b"\0" * ((w * depth * channels + 7) // 8)) * h for w, h in passes if w and h)
        idat = zlib.compress(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    return join_png([(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b"")])


def small_png() -> bytes:
    return encode(Image.new("RGB", (64, 48), (10, 200, 90)), "PNG")


def bad_late_crc() -> bytes:
    return small_png()[:-12] + chunk(b"tIME", b"\x07\xe8\x01\x01\x00\x00\x00", crc=0) + chunk(b"IEND", b"")


@cache
def png_hostile() -> dict[str, bytes]:
    """Broken or hostile PNGs, each refused by the walk (shared with the HTTP tests)."""
    base = small_png()
    idat = [i for i, (kind, _) in enumerate(split_png(base)) if kind == b"IDAT"][0]
    chunks = split_png(base)
    split_idat = chunks[:idat] + [(b"IDAT", chunks[idat][1][:10]), (b"tEXt", b"a\0b")]
    split_idat += [(b"IDAT", chunks[idat][1][10:])] + chunks[idat + 1 :]
    return {
        "bad-crc-late-chunk": bad_late_crc(),
        "bad-crc-ihdr": base[:29] + bytes([base[29] ^ 1]) + base[30:],
        "100k-text-chunks": insert(base, text(b"k", b"v") * 100_000, "before"),
        "100k-text-chunks-after-idat": insert(base, text(b"k", b"v") * 100_000, "after"),
        "4mb-text-chunk": insert(base, text(b"Comment", b"x" * 4_000_000), "before"),
        "ztxt-bomb-after-idat": insert(base, ztxt(b"\0" * 20_000_000), "after"),
        "data-after-iend": base + b"PK\x03\x04 a zip file, say",
        "chunk-after-iend": base + chunk(b"tEXt", b"a\0b"),
        "truncated-mid-idat": base[: len(base) // 2],
        "truncated-no-iend": base[:-12],
        "truncated-mid-crc": base[:-2],
        "idat-not-contiguous": join_png(split_idat),
        "private-chunk-after-idat": insert(base, chunk(b"prVW", b"x" * 100), "after"),
        "iccp-after-idat": insert(base, chunk(b"iCCP", b"p\0\0" + zlib.compress(b"x")), "after"),
        "unknown-critical-chunk": insert(base, chunk(b"ABCD", b""), "before"),
        "non-letter-chunk-type": insert(base, chunk(b"a1b2", b""), "before"),
        "ihdr-not-first": join_png([split_png(base)[1], *split_png(base)[:1], *split_png(base)[2:]]),
        "iend-not-empty": base[:-12] + chunk(b"IEND", b"payload"),
        "no-idat": join_png([c for c in split_png(base) if c[0] != b"IDAT"]),
        "length-past-end": base[:33] + b"\x7f\xff\xff\xff" + base[37:],
        # CRCs right, image data wrong (found by a hostile sweep: stored with 201 before)
        "empty-idat": raw_png(64, 64, 8, 2, 3, idat=b""),
        "idat-too-short": raw_png(64, 64, 8, 2, 3, idat=zlib.compress(b"\0" * 10)),
        "idat-not-zlib": raw_png(64, 64, 8, 2, 3, idat=b"\x78\x9c" + bytes(range(7, 57))),
        "idat-short-for-36-mp": raw_png(6000, 6000, 8, 2, 3, idat=zlib.compress(b"\0" * 1000)),
        "adam7-rows-missing": raw_png(37, 23, 8, 2, 3, interlace=1, idat=zlib.compress(b"\0" * 200)),
    }


def rgba_palette_png() -> bytes:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    return encode(image, "PNG", transparency=0)


def apng() -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "plain")
    info.add_text("Title", "compressed " * 50, zip=True)
    info.add_itxt("Author", "Ünïcode", lang="de", tkey="Autor")
    info.add_itxt("XML:com.adobe.xmp", "<x/>" * 100, zip=True)
    return png(pnginfo=info)


def skimage_png(tmp_path: Path, pixels: np.ndarray) -> bytes:
    from skimage import io as skio

    path = tmp_path / "skimage.png"
    skio.imsave(path, pixels, check_contrast=False)
    return path.read_bytes()


def png_ok(tmp_path: Path) -> dict[str, bytes]:
    """Ordinary PNGs that must pass (shared with the HTTP tests)."""
    text_after = small_png()[:-12] + text(b"Software", b"after the image") + chunk(b"IEND", b"")
    return {
        "pillow-rgb": png(),
        "text-chunks": png_with_text(),
        "text-after-idat": text_after,
        "apng": apng(),
        "16-bit-gray": encode(Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64)), "PNG"),
        "palette-trns": rgba_palette_png(),
        "skimage-16-bit-gray": skimage_png(tmp_path, data.camera()[::4, ::4].astype(np.uint16) * 257),
        "skimage-gray": skimage_png(tmp_path, data.camera()[::4, ::4]),
        "adam7-rgb": raw_png(37, 23, 8, 2, 3, interlace=1),
        "adam7-1-bit-gray": raw_png(13, 5, 1, 0, 1, interlace=1),
        "adam7-1x1": raw_png(1, 1, 8, 6, 4, interlace=1),
        "1-bit-odd-width": raw_png(13, 7, 1, 0, 1),
        "16-bit-rgba": raw_png(9, 9, 16, 6, 4),
        "many-idat": join_png(
            [(b"IHDR", split_png(png())[0][1])]
            + [(b"IDAT", part) for part in _slices(b"".join(p for k, p in split_png(png()) if k == b"IDAT"))]
            + [(b"IEND", b"")]
        ),
    }


def _slices(blob: bytes, size: int = 8192) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def com(size: int) -> bytes:
    return b"\xff\xfe" + (size + 2).to_bytes(2, "big") + b"c" * size


@cache
def jpeg_hostile() -> dict[str, bytes]:
    """Broken or hostile JPEGs (shared with the HTTP tests)."""
    base = encode(Image.new("RGB", (64, 48), (200, 120, 80)), "JPEG", quality=90)
    progressive = jpeg(progressive=True)
    second_scan = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)
    return {
        "huge-com-segments": base[:2] + com(65_533) * 70 + base[2:],
        "many-com-segments": base[:2] + com(1) * 300 + base[2:],
        "huge-com-between-scans": progressive[:second_scan] + com(65_533) * 70 + progressive[second_scan:],
        "trailing-garbage": base + b"\0" * 5000,
        "trailing-garbage-ending-in-eoi": base + b"PK\x03\x04" + b"z" * 10_000 + b"\xff\xd9",
        "truncated-in-scan": jpeg()[: len(jpeg()) // 2],
        "segment-past-end": base[:4] + b"\xff\xff" + base[6:],
        "eoi-before-scan": base[:2] + b"\xff\xd9" + base[2:],
        "second-soi-inside": base[:2] + b"\xff\xd8" + base[2:],
        "fill-bytes-flood": base[:2] + b"\xff" * 20_000 + base[2:],
    }


@cache
def mpo() -> bytes:
    left, right = Image.fromarray(data.astronaut()), Image.fromarray(data.astronaut()[:, ::-1].copy())
    return encode(left, "MPO", save_all=True, append_images=[right])


def mapped(tmp_path: Path, body: bytes, name: str = "upload") -> mmap.mmap:
    path = tmp_path / name
    path.write_bytes(body)
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


# --- WebP ------------------------------------------------------------------------------------------


def webp(**options: object) -> bytes:
    return encode(Image.fromarray(data.astronaut()).resize((128, 128)), "WEBP", **options)


def riff(*chunks: bytes) -> bytes:
    payload = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def webp_ok() -> dict[str, bytes]:
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 255, 0))]
    return {
        "lossy": webp(quality=80),
        "lossless": webp(lossless=True),
        "alpha": encode(Image.new("RGBA", (32, 32), (1, 2, 3, 100)), "WEBP"),
        "exif-icc": webp(exif=EXIF, icc_profile=b"x" * 3001),
        "animated": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50),
    }


@cache
def webp_hostile() -> dict[str, bytes]:
    """Broken or hostile WebPs (shared with the HTTP tests)."""
    base = webp(quality=80)
    vp8 = base[12:]
    extended = webp(exif=EXIF)
    return {
        "riff-size-too-big": base[:4] + struct.pack("<I", len(base)) + base[8:],
        "riff-size-too-small": base[:4] + struct.pack("<I", len(base) - 8 - 100) + base[8:],
        "trailing-data": base + b"\0" * 64,
        "chunk-past-riff-end": riff(vp8[:4] + struct.pack("<I", len(vp8)) + vp8[8:]),
        "chunk-after-simple-image": riff(vp8, riff_chunk(b"XMP ", b"<x/>")),
        "huge-xmp": riff(extended[12:], riff_chunk(b"XMP ", b"x" * 4_500_000)),
        "no-image": riff(riff_chunk(b"VP8X", b"\0" * 10), riff_chunk(b"EXIF", b"x")),
        "truncated": base[: len(base) // 2],
    }
