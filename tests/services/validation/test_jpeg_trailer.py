"""app.services.validation.jpeg_trailer: the trailer a phone declares after its JPEG (Motion
Photo, MVIMG, Samsung SEF) is found only where the declaration is consistent, and the MPF index
locates the further images. Files are built to their published layouts in tests/phone_photos.py."""

from __future__ import annotations

from app.services.validation.jpeg_trailer import XMP_HEADER, Trailer, declared_trailer, mpf_images
from tests.phone_photos import (
    ITEM,
    MOTION_XMP,
    MVIMG_XMP,
    gain_map,
    motion_photo,
    mp4,
    mpo,
    mvimg,
    photo,
    samsung_motion_photo,
)


def xmp_of(body: bytes) -> list[bytes]:
    """The XMP packets of the primary image, as the JPEG walk hands them over."""
    start = body.index(XMP_HEADER) + len(XMP_HEADER)
    length = int.from_bytes(body[start - len(XMP_HEADER) - 2 : start - len(XMP_HEADER)], "big")
    return [body[start : start - len(XMP_HEADER) - 2 + length]]


def motion_xmp(length: int) -> str:
    items = ITEM.format(mime="image/jpeg", semantic="Primary", length=0, padding=0)
    items += ITEM.format(mime="video/mp4", semantic="MotionPhoto", length=length, padding=0)
    return MOTION_XMP.format(items=items)


def test_a_motion_photo_declares_its_video() -> None:
    video = mp4()
    body = motion_photo(video)
    end = len(body) - len(video)
    assert declared_trailer(body, end, xmp_of(body)) == Trailer(
        end, "motion_photo", ("MotionPhoto:video/mp4",)
    )


def test_a_motion_photo_with_a_gain_map_declares_both_but_the_trailer_starts_after_the_kept_image() -> None:
    video, gain = mp4(), gain_map()
    body = motion_photo(video, gain_map=gain)
    image_end = len(body) - len(video)  # the walk kept the gain map as a whole JPEG
    trailer = declared_trailer(body, image_end, xmp_of(body))
    assert trailer == Trailer(image_end, "motion_photo", ("MotionPhoto:video/mp4",))


def test_a_declared_length_that_does_not_fit_is_not_believed() -> None:
    video = mp4()
    image = photo(motion_xmp(len(video) + 10_000_000))  # longer than the file
    assert declared_trailer(image + video, len(image), xmp_of(image)) is None
    not_a_box = b"\0" * len(video)  # the declared place holds no ISO-BMFF box
    image = photo(motion_xmp(len(not_a_box)))
    assert declared_trailer(image + not_a_box, len(image), xmp_of(image)) is None


def test_mvimg_and_samsung_videos_are_found() -> None:
    video = mp4()
    body = mvimg(video)
    end = len(body) - len(video)
    assert declared_trailer(body, end, xmp_of(body)) == Trailer(end, "micro_video", ("MicroVideo:video/mp4",))
    samsung = samsung_motion_photo(video)
    image_end = len(photo())
    trailer = declared_trailer(samsung, image_end, [])
    assert trailer is not None and trailer.kind == "samsung_sef"
    assert trailer.start == image_end
    assert trailer.contents == ("Image_UTC_Data", "MotionPhoto_Data")


def test_undeclared_bytes_are_no_trailer() -> None:
    image = photo(MVIMG_XMP.format(offset=0))
    assert declared_trailer(image + b"\0" * 5000, len(image), xmp_of(image)) is None
    assert declared_trailer(photo() + b"SEFT" * 10, len(photo()), []) is None


def test_mpf_index_locates_the_second_image() -> None:
    body = mpo()
    app2 = body.index(b"MPF\x00")
    length = int.from_bytes(body[app2 - 2 : app2], "big")
    images = mpf_images(body, (app2, app2 - 2 + length))
    assert len(images) == 1
    offset, size = images[0]
    assert body[offset : offset + 3] == b"\xff\xd8\xff"
    assert offset + size == len(body)
    assert mpf_images(body, (app2, app2 + 4)) == []  # no index after the header: none
