"""Phone photo files built to their published layouts from a real photo (scikit-image's astronaut).

- Google Motion Photo 1.0: XMP `Container:Directory` (Primary, then MotionPhoto video/mp4 with
  Item:Length), the MP4 appended; with an Ultra HDR gain map JPEG between them (GainMap item).
- MVIMG: XMP `GCamera:MicroVideo`, `GCamera:MicroVideoOffset` = the MP4's length, appended.
- Samsung SEF: blocks (`0 0, u16 type, u32 name length, name, data`) after the JPEG, then the
  directory `SEFH, u32 version, u32 count, count x (0 0, u16 type, u32 distance back from SEFH,
  u32 size)`, `u32 directory length`, `SEFT` (as ExifTool reads it).
- MPF (an MPO made by Pillow), optionally with padding between its images, its index patched.
The "videos" are small ISO-BMFF files (ftyp, mdat); nothing here decodes them.
"""

from __future__ import annotations

import io
import struct
from functools import cache

import numpy as np
from PIL import Image
from skimage import data

from tests.factories import encode

MOTION_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"
 xmlns:Container="http://ns.google.com/photos/1.0/container/"
 xmlns:Item="http://ns.google.com/photos/1.0/container/item/"
 GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" GCamera:MotionPhotoPresentationTimestampUs="966000">
<Container:Directory><rdf:Seq>{items}</rdf:Seq></Container:Directory>
</rdf:Description></rdf:RDF></x:xmpmeta>"""
ITEM = """<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="{mime}" Item:Semantic="{semantic}"
 Item:Length="{length}" Item:Padding="{padding}"/></rdf:li>"""
MVIMG_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"
 GCamera:MicroVideo="1" GCamera:MicroVideoVersion="1" GCamera:MicroVideoOffset="{offset}"
 GCamera:MicroVideoPresentationTimestampUs="1033000"/></rdf:RDF></x:xmpmeta>"""


@cache
def astronaut(size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.fromarray(data.astronaut()).resize(size)


def photo(
    xmp: str | None = None, exif: Image.Exif | None = None, size: tuple[int, int] = (320, 240)
) -> bytes:
    """The astronaut as a JPEG, with an XMP packet (APP1) if given."""
    options: dict[str, object] = {"quality": 85}
    if xmp is not None:
        options["xmp"] = xmp.encode()
    if exif is not None:
        options["exif"] = exif.tobytes()
    return encode(astronaut(size), "JPEG", **options)


def mp4(payload_bytes: int = 40_000, seed: int = 7) -> bytes:
    """A small ISO-BMFF "video": an ftyp box and an mdat box of noise."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"mp42", 0) + b"isommp42"
    noise = np.random.default_rng(seed).integers(0, 256, payload_bytes, dtype=np.uint8).tobytes()
    return ftyp + struct.pack(">I4s", 8 + len(noise), b"mdat") + noise


def motion_photo(
    video: bytes | None = None,
    gain_map: bytes | None = None,
    declared: int | None = None,
    size: tuple[int, int] = (320, 240),
) -> bytes:
    """A Motion Photo 1.0 of the astronaut at `size` (with an Ultra HDR-style gain map item when
    `gain_map` is given); `declared` overrides the video's Item:Length."""
    video = mp4() if video is None else video
    items = [ITEM.format(mime="image/jpeg", semantic="Primary", length=0, padding=0)]
    if gain_map is not None:
        items.append(ITEM.format(mime="image/jpeg", semantic="GainMap", length=len(gain_map), padding=0))
    length = len(video) if declared is None else declared
    items.append(ITEM.format(mime="video/mp4", semantic="MotionPhoto", length=length, padding=0))
    return photo(MOTION_XMP.format(items="".join(items)), size=size) + (gain_map or b"") + video


def gain_map() -> bytes:
    """A small grey JPEG standing in for an Ultra HDR gain map."""
    return encode(astronaut((80, 60)).convert("L"), "JPEG", quality=80)


def mvimg(video: bytes | None = None) -> bytes:
    video = mp4() if video is None else video
    return photo(MVIMG_XMP.format(offset=len(video))) + video


def sef_trailer(blocks: list[tuple[int, str, bytes]], version: int = 106) -> bytes:
    """Samsung SEF blocks (type, name, data) and their SEFH/SEFT directory."""
    body, places = b"", []
    for kind, name, payload in blocks:
        block = struct.pack("<HHI", 0, kind, len(name)) + name.encode() + payload
        places.append((kind, len(body), len(block)))
        body += block
    directory = b"SEFH" + struct.pack("<II", version, len(blocks))
    for kind, offset, size in places:
        directory += struct.pack("<HHII", 0, kind, len(body) - offset, size)
    return body + directory + struct.pack("<I", len(directory)) + b"SEFT"


def samsung_motion_photo(video: bytes | None = None) -> bytes:
    video = mp4() if video is None else video
    blocks = [(0x0A01, "Image_UTC_Data", b"1733480000000"), (0x0A30, "MotionPhoto_Data", video)]
    return photo() + sef_trailer(blocks)


def samsung_edited(trailer_bytes: int = 7_000) -> bytes:
    """An edited Galaxy photo: about `trailer_bytes` of SEF data (edit history, hashes)."""
    history = (b"{'edit':'crop,filter'}" * (trailer_bytes // 22 + 1))[: trailer_bytes - 200]
    blocks = [(0x0A01, "Image_UTC_Data", b"1733480000000"), (0x0A41, "Photo_Editor_Re_Edit_Data", history)]
    return photo() + sef_trailer(blocks)


def mpo(gap: int = 0) -> bytes:
    """A two-image MPF file made by Pillow; with `gap` bytes of padding before the second image
    and the MPF index moved to match."""
    buf = io.BytesIO()
    astronaut().save(
        buf, "MPO", save_all=True, append_images=[astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    )
    body = buf.getvalue()
    if not gap:
        return body
    second = body.index(b"\xff\xd8\xff", 4)
    header = body.index(b"MPF\x00") + 4
    order = "<" if body[header : header + 2] == b"II" else ">"
    old = struct.pack(order + "I", second - header)
    where = body.index(old, header)  # the second MP entry's offset field
    body = body[:where] + struct.pack(order + "I", second - header + gap) + body[where + 4 :]
    return body[:second] + b"\0" * gap + body[second:]


def rotated(orientation: int) -> bytes:
    """The astronaut (320x240 stored) with an EXIF orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return photo(exif=exif)
