"""Perceptual reuse of seed 004's contour jobs: a detection job for a near-duplicate image.

A detection job (no landmarks, no label image) has the PDQ hash of its image recorded per
content and owner (`contour_job_hashes`, every band indexed: `app.db.job_hashes`). A later
detection submit whose own content is not known yet (no result, no work in flight) looks up
near-duplicates the same way images do (`app.services.images.perceptual`): of the same owner
(unless `PERCEPTUAL_REUSE_SCOPE=any`), the same detector version and the same pixel size (the
SVG's coordinates are pixels), within `PERCEPTUAL_REUSE_DISTANCE`; nearest first, the first
whose result is published answers: the new job is born completed with that result, says
`reused_from` (the earlier job and the distance), and is free, like a cache hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import job_hashes
from app.services.analysis.reuse import requested_distance
from app.services.analysis.settings import ReuseSettings
from app.services.images.perceptual import MIN_QUALITY, bands, distance, hash_image, probe_radius, probes


@dataclass(frozen=True)
class JobLook:
    """What a detection job's image looks like: its PDQ hash, pixel size and detector version."""

    perceptual_hash: str
    size: tuple[int, int]
    variant: str


@dataclass(frozen=True)
class JobCandidate:
    """An earlier job of a near-duplicate image: its content key, its job and the distance."""

    content_key: str
    job_id: str
    distance: int


def look_of(image: bytes, size: tuple[int, int], variant: str) -> JobLook | None:
    """The look of a validated image (CPU: call it off the event loop); None for an image too
    flat for its hash to say anything (PDQ quality below `MIN_QUALITY`)."""
    computed = hash_image(image)
    if computed.quality < MIN_QUALITY:
        return None
    return JobLook(computed.hex, size, variant)


class ContourReuse:
    """Records the hashes of detection jobs and finds near-duplicates among them."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        distance: int,
        any_owner: bool,
        max_candidates: int,
    ) -> None:
        self.sessions = sessions
        self.distance = distance
        self.any_owner = any_owner
        self.max_candidates = max_candidates

    def max_distance(self, reuse: bool, requested: int | None) -> int:
        """The threshold of one submit (0: no reuse): the setting, or a tighter one it asks for;
        ValidationFailed (400) for a wider one."""
        asked = requested_distance(self.distance, requested)
        return asked if reuse else 0

    async def record(self, content_key: str, owner: str, job_id: str, look: JobLook) -> None:
        """Remember the look of `owner`'s job of `content_key` (its first job is kept)."""
        async with self.sessions.begin() as session:
            await job_hashes.add_job_hash(
                session,
                content_key=content_key,
                owner=owner,
                job_id=job_id,
                variant=look.variant,
                size=look.size,
                perceptual_hash=look.perceptual_hash,
            )

    async def candidates(
        self, look: JobLook, owner: str, exclude: str, max_distance: int
    ) -> list[JobCandidate]:
        """Earlier jobs of near-duplicates of `look` that may answer for `owner`, nearest first
        (newest first at equal distance), content `exclude` (the submit's own) left out."""
        if max_distance <= 0:
            return []
        radius = probe_radius(max_distance)
        async with self.sessions() as session:
            rows = await job_hashes.near_duplicate_jobs(
                session,
                probes=[probes(band, radius) for band in bands(look.perceptual_hash)],
                owner=None if self.any_owner else owner,
                variant=look.variant,
                size=look.size,
                exclude=exclude,
            )
        found = []
        for rank, row in enumerate(rows):
            d = distance(look.perceptual_hash, row.perceptual_hash)
            if d <= max_distance:
                found.append((d, rank, JobCandidate(row.content_key, row.job_id, d)))
        found.sort(key=lambda item: item[:2])
        return [candidate for _, _, candidate in found[: self.max_candidates]]

    async def forget_before(self, before: float) -> int:
        """Forget the hashes recorded before `before` (epoch seconds): their jobs are past
        retention, so their results are gone or about to go (the file job queue's retention)."""
        async with self.sessions.begin() as session:
            return await job_hashes.purge_job_hashes_before(session, before=before)

    async def erase_owner(self, owner: str) -> int:
        """Forget every hash of `owner`'s jobs (account erasure); how many."""
        async with self.sessions.begin() as session:
            return await job_hashes.erase_owner_job_hashes(session, owner=owner)


def contour_reuse(settings: ReuseSettings, sessions: async_sessionmaker[AsyncSession]) -> ContourReuse | None:
    """The contour jobs' reuse policy from settings (the perceptual reuse settings); None when
    `PERCEPTUAL_REUSE_DISTANCE` is 0 (off)."""
    if settings.perceptual_reuse_distance == 0:
        return None
    return ContourReuse(
        sessions,
        distance=settings.perceptual_reuse_distance,
        any_owner=settings.perceptual_reuse_scope == "any",
        max_candidates=settings.perceptual_reuse_max_candidates,
    )
