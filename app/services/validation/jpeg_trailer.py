"""What a phone appends after its JPEG, found through the file's own declarations.

Phones store more than the photo in a `.jpg`; each layout says, in the file, where it is:
- Google/Android Motion Photo: the primary image's XMP `Container:Directory` lists the media
  items after the primary image in file order, each with `Item:Mime`, `Item:Semantic`,
  `Item:Length` and an optional `Item:Padding` (bytes after the item), so every item's place
  is counted back from the end of the file. Image items (an Ultra HDR gain map) are whole
  JPEGs that the JPEG walk keeps; the items after the last kept image (the `MotionPhoto`
  video) form the trailer. Older files name the namespaces `GContainer`/`GContainerItem`.
- MVIMG (Google Camera before Motion Photo 1.0): XMP `GCamera:MicroVideoOffset` = the MP4's
  length, counted back from the end of the file.
- Samsung (SEF): the file ends with a directory block `SEFH ... <u32 length> SEFT`; each of
  its 12-byte entries (`0 0, u16 type, u32 distance back from SEFH, u32 size`) locates a
  block (`0 0, u16 type, u32 name length, name, data`): MotionPhoto_Data (an MP4), depth
  maps, edit history... The first block starts the trailer (layout as ExifTool reads it).
- MPF (CIPA DC-007): the APP2 `MPF` index gives the offset and size of every further image
  (Ultra HDR gain maps, MPO views). They are images: `mpf_images` locates them, the walk keeps them.

A declaration is believed only when it is consistent: it lies within the file, after the
last kept image, with a declared video starting with an ISO-BMFF box header. Parsing is
regular expressions over bounded XMP (no XML parser: no entity expansion) and fixed-size
binary reads; nothing here decodes pixels.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
MPF_HEADER = b"MPF\x00"

_ITEM = re.compile(rb"<\s*[\w.-]+:Item\b([^>]{0,4096})>")
_ATTRIBUTE = re.compile(rb"[\w.-]+:(Mime|Semantic|Length|Padding)\s*=\s*[\"']([^\"']{0,256})[\"']")
_MICRO_VIDEO = re.compile(rb"MicroVideoOffset\s*(?:=\s*[\"']\s*(\d{1,12})\s*[\"']|>\s*(\d{1,12})\s*<)")
_SEF_NAME = re.compile(rb"[\x20-\x7e]{1,64}")
_BOX_TYPE = re.compile(rb"[\x20-\x7e]{4}")
_SEF_MAX_ENTRIES = 1024


@dataclass(frozen=True)
class Trailer:
    """Bytes after the image, as their declaration describes them: the image is `data[:start]`."""

    start: int
    kind: str  # "motion_photo" | "micro_video" | "samsung_sef"
    contents: tuple[str, ...]


def _is_box(data: bytes | mmap.mmap, pos: int) -> bool:
    """Whether an ISO-BMFF box header (size >= 8, four printable type letters) starts at `pos`."""
    head = data[pos : pos + 8]
    return (
        len(head) == 8
        and (int.from_bytes(head[:4], "big") >= 8 or head[:4] == b"\0\0\0\x01")
        and bool(_BOX_TYPE.fullmatch(head[4:8]))
    )


def _container(data: bytes | mmap.mmap, image_end: int, xmp: bytes) -> Trailer | None:
    """The Motion Photo trailer its `Container:Directory` declares (items after `image_end`)."""
    items = []
    for found in _ITEM.finditer(xmp):
        pairs = _ATTRIBUTE.findall(found[1])
        fields = {name.decode(): value.decode("latin-1").strip() for name, value in pairs}
        if "Mime" in fields:
            items.append(fields)
    if len(items) < 2:
        return None
    size, end, removed = len(data), len(data), []
    try:
        for item in reversed(items[1:]):  # the primary item (first) has no length of its own
            length, padding = int(item.get("Length", "0")), int(item.get("Padding", "0") or 0)
            start = end - padding - length
            if length < 0 or padding < 0 or start < 0:
                return None
            if start < image_end:
                if start + length > image_end or not item["Mime"].startswith("image/"):
                    return None  # it overlaps the image, or a video inside the kept images
                break
            removed.append((start, item))
            end = start
    except ValueError:
        return None
    if not removed or end > size:
        return None
    first_start, first = removed[-1]
    if first["Mime"].startswith("video/") and not _is_box(data, first_start):
        return None
    contents = tuple(f"{item.get('Semantic', 'Item')}:{item['Mime']}" for _, item in reversed(removed))
    return Trailer(first_start, "motion_photo", contents)


def _micro_video(data: bytes | mmap.mmap, image_end: int, xmp: bytes) -> Trailer | None:
    """The MVIMG video its `GCamera:MicroVideoOffset` declares."""
    found = _MICRO_VIDEO.search(xmp)
    if found is None:
        return None
    start = len(data) - int(found[1] or found[2])
    if start < image_end or not _is_box(data, start):
        return None
    return Trailer(start, "micro_video", ("MicroVideo:video/mp4",))


def _samsung(data: bytes | mmap.mmap, image_end: int) -> Trailer | None:
    """The Samsung SEF trailer its closing `SEFH ... SEFT` directory declares."""
    size = len(data)
    if size - image_end < 20 or data[size - 4 : size] != b"SEFT":
        return None
    length = int.from_bytes(data[size - 8 : size - 4], "little")
    directory = size - 8 - length
    if length < 12 or directory < image_end or data[directory : directory + 4] != b"SEFH":
        return None
    count = int.from_bytes(data[directory + 8 : directory + 12], "little")
    if not 1 <= count <= _SEF_MAX_ENTRIES or 12 + 12 * count > length:
        return None
    blocks = []
    for index in range(count):
        _, distance, block_size = struct.unpack_from("<III", data, directory + 12 + 12 * index)
        start = directory - distance
        if start < image_end or block_size < 8 or block_size > distance:
            return None
        name_length = int.from_bytes(data[start + 4 : start + 8], "little")
        name = bytes(data[start + 8 : start + 8 + min(name_length, 64)])
        if name_length + 8 > block_size or not _SEF_NAME.fullmatch(name):
            return None
        blocks.append((start, name.decode("ascii")))
    blocks.sort()
    return Trailer(blocks[0][0], "samsung_sef", tuple(name for _, name in blocks))


def declared_trailer(data: bytes | mmap.mmap, image_end: int, xmp: list[bytes]) -> Trailer | None:
    """The trailer after `image_end` (the end of the last kept image) that the file declares, if
    any: of the consistent declarations, the one that starts first (a Samsung file may also
    carry a Container directory for its video inside the SEF trailer)."""
    found = [_samsung(data, image_end)]
    for packet in xmp:
        found += [_container(data, image_end, packet), _micro_video(data, image_end, packet)]
    candidates = [trailer for trailer in found if trailer is not None]
    return min(candidates, key=lambda t: t.start) if candidates else None


def mpf_images(data: bytes | mmap.mmap, segment: tuple[int, int]) -> list[tuple[int, int]]:
    """(offset in the file, size) of each further image an APP2 MPF index (the segment's
    payload at data[start:end]) declares; [] when the index is absent or inconsistent."""
    start, end = segment
    base = start + len(MPF_HEADER)  # MP entry offsets count from the TIFF header
    index = bytes(data[base:end])
    if index[:4] not in (b"II*\x00", b"MM\x00*"):
        return []
    order = "<" if index[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", index, 4)
        (entries,) = struct.unpack_from(order + "H", index, ifd)
        for n in range(min(entries, 64)):
            tag, _, count, value = struct.unpack_from(order + "HHII", index, ifd + 2 + 12 * n)
            if tag != 0xB002:
                continue
            images = []
            for k in range(1, min(count // 16, 64)):  # entry 0 is the primary image
                _, image_size, offset, _, _ = struct.unpack_from(order + "IIIHH", index, value + 16 * k)
                if offset and image_size:
                    images.append((base + offset, image_size))
            return sorted(images)
    except struct.error:
        return []
    return []
