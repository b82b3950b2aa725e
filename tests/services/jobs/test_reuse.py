"""app.services.jobs.reuse: detection jobs' looks (PDQ hashes of scikit-image photos) are
recorded and near-duplicates found nearest first within the submit's threshold, of the same owner
unless the scope is anyone's; flat images have no look; the threshold is a setting a submit may
only tighten (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from skimage import data
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import ValidationFailed
from app.services.analysis.settings import ReuseSettings
from app.services.jobs.reuse import ContourReuse, JobCandidate, contour_reuse, look_of

SIZE = (512, 512)


def jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


ASTRONAUT = Image.fromarray(data.astronaut())
ORIGINAL = look_of(jpeg(ASTRONAUT, 95), SIZE, "v1")
REENCODED = look_of(jpeg(ASTRONAUT, 50), SIZE, "v1")
OTHER = look_of(jpeg(Image.fromarray(data.coffee()).resize(SIZE), 90), SIZE, "v1")


def reuse(sessions: async_sessionmaker[AsyncSession], any_owner: bool = False) -> ContourReuse:
    return ContourReuse(sessions, distance=24, any_owner=any_owner, max_candidates=5)


def test_a_flat_image_has_no_look() -> None:
    assert look_of(jpeg(Image.new("RGB", SIZE, (90, 90, 90)), 90), SIZE, "v1") is None
    assert ORIGINAL is not None and ORIGINAL.size == SIZE


async def test_a_submit_may_only_tighten_the_threshold(sessions: async_sessionmaker[AsyncSession]) -> None:
    policy = reuse(sessions)
    assert (policy.max_distance(True, None), policy.max_distance(True, 4), policy.max_distance(False, 4)) == (
        24,
        4,
        0,
    )
    with pytest.raises(ValidationFailed):
        policy.max_distance(True, 25)
    off = ReuseSettings(
        perceptual_reuse_distance=0, perceptual_reuse_scope="owner", perceptual_reuse_max_candidates=5
    )
    assert contour_reuse(off, sessions) is None


async def test_near_duplicates_of_the_owner_are_found_nearest_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert ORIGINAL is not None and REENCODED is not None and OTHER is not None
    policy = reuse(sessions)
    await policy.record("original", "user:1", "job-1", ORIGINAL)
    await policy.record("other", "user:1", "job-2", OTHER)
    await policy.record("theirs", "user:2", "job-3", ORIGINAL)
    found = await policy.candidates(REENCODED, "user:1", exclude="new", max_distance=24)
    assert [(c.content_key, c.job_id) for c in found] == [("original", "job-1")]
    assert found[0] == JobCandidate("original", "job-1", found[0].distance) and found[0].distance <= 24
    assert await policy.candidates(REENCODED, "user:1", exclude="new", max_distance=0) == []
    assert await policy.candidates(ORIGINAL, "user:1", exclude="original", max_distance=24) == []
    anyone = await reuse(sessions, any_owner=True).candidates(
        REENCODED, "user:1", exclude="new", max_distance=24
    )
    assert [c.content_key for c in anyone] == ["theirs", "original"]  # equal distance: newest first
    assert await policy.erase_owner("user:1") == 2
    assert await policy.candidates(REENCODED, "user:1", exclude="new", max_distance=24) == []
    assert await policy.forget_before(4e9) == 1
