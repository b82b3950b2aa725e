"""Facial contour jobs (seed 004): validate a submit, run it in the persistent job queue.

A submit is checked completely before it is accepted (base64, sizes before decoding, image
type and wholeness, landmark count, label-image size), then reduced to a canonical job
input, so that the same image with the same landmarks or label image is the same job
content and is computed once (`JobQueue` is content-addressed). The job's output is the
SVG document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.analyzers.face.analyzer import FaceAnalyzer, FaceParams
from app.analyzers.face.regions import face_contours
from app.analyzers.face.segmentation import LABEL_MODES, segmentation_contours
from app.analyzers.registry import AnalyzerRegistry
from app.core.errors import (
    AnalyzerUnavailable,
    BadRequest,
    DatabaseUnavailable,
    InvalidBase64,
    InvalidLandmarks,
    InvalidSegmentation,
    JobNotFound,
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.core.formats import SNIFF_BYTES, accepted_format
from app.core.threads import ThreadPool
from app.db.engine import is_sqlite
from app.services.accounts.credits import CreditService
from app.services.accounts.principals import Principal
from app.services.analysis.scheduler import LaneClient
from app.services.jobs.file_queue import JobQueue
from app.services.jobs.pg_queue import ProcrastinateJobQueue
from app.services.jobs.records import FINISHED, Job, JobStatus
from app.services.jobs.reuse import ContourReuse, JobLook, look_of
from app.services.jobs.settings import JobSettings
from app.services.validation.checks import inspect_image
from app.services.webhooks.service import WebhookEvent, WebhookService
from app.storage.objects import ObjectStore

logger = logging.getLogger("app.jobs")

LANDMARK_COUNT = 68
DEFAULT_MARGIN = 0.3
# Tracing costs time and memory per label and per boundary edge: bound what one job can ask.
MAX_LABELS = 256
MAX_OUTLINE_EDGES = 200_000


class Point(BaseModel):
    """A landmark in image pixels."""

    x: float
    y: float


class ContourJobRequest(BaseModel):
    """An image (base64 or a base64 data URL), optionally with 68 landmarks or a label image."""

    model_config = ConfigDict(extra="forbid", title="CropSubmit")

    image: str = Field(description="The facial image, base64 or `data:image/...;base64,...`")
    landmarks: list[Point] | None = Field(
        default=None,
        max_length=1000,
        description="68 points (iBUG 300-W order) in image pixels: skips detection",
    )
    segmentation_map: str | None = Field(
        default=None,
        description="A label image (PNG, one channel, same size, 0 = background, <= 256 labels) as base64: "
        "contours are traced from it",
    )
    callback_url: str | None = Field(
        default=None,
        description="Called (signed POST, Standard Webhooks) when the job completes or fails; "
        "needs an API key or a user token (README, Webhooks)",
    )
    reuse: bool = Field(
        default=True,
        description="Let the result of an earlier job for a near-duplicate image answer (detection "
        "jobs; `reused_from` in the status)",
    )
    reuse_distance: int | None = Field(
        default=None,
        ge=0,
        le=31,
        description="A tighter PDQ distance for this job (at most PERCEPTUAL_REUSE_DISTANCE)",
    )


@dataclass(frozen=True)
class ContourJobState:
    """Where a contour job is: its status, the SVG document once completed, or why it failed."""

    job_id: str
    status: JobStatus
    svg: bytes | None
    error: str | None
    error_code: str | None
    reused_from: str | None = None  # the earlier job whose result answers (perceptual reuse)
    reused_distance: int | None = None


@dataclass(frozen=True)
class _Parsed:
    """A checked submit: the request, its canonical job input and (for a detection job, when
    reuse is on) the look of its image."""

    request: ContourJobRequest
    job_input: bytes
    look: JobLook | None = None


def decode_base64_field(value: str, field: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string or base64 data URL of an image, refusing oversize input before
    decoding (a data URL may name no type, an `image/...` one or application/octet-stream)."""
    text = value.strip()
    if text[:5].lower() == "data:":
        header, sep, text = text.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise InvalidBase64(f"`{field}`: only base64 data URLs are accepted")
        media = header[5:].split(";", 1)[0].strip().lower()
        if media and not media.startswith("image/") and media != "application/octet-stream":
            raise UnsupportedMediaType(f"`{field}`: a data URL of type {media[:100]!r} is not an image")
    # Line-wrapped base64 (what `base64` prints by default) is fine: drop the whitespace.
    text = "".join(text.split())
    if (len(text) // 4) * 3 > max_bytes + 3:
        raise PayloadTooLarge(f"`{field}` decodes to more than {max_bytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64(f"`{field}` is not valid base64") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"`{field}` decodes to more than {max_bytes} bytes")
    return raw


@dataclass(frozen=True)
class _Checked:
    image: bytes
    size: tuple[int, int]


class ContourJobService:
    """Accepts contour jobs and reports their status."""

    def __init__(
        self,
        settings: JobSettings,
        registry: AnalyzerRegistry,
        pool: ThreadPool,
        analysis_pool: ThreadPool | LaneClient,
        credits: CreditService | None = None,
        objects: ObjectStore | None = None,
        webhooks: WebhookService | None = None,
        reuse: ContourReuse | None = None,
    ) -> None:
        self.settings = settings
        self.reuse = reuse
        self.registry = registry
        self.pool = pool
        self.credits = credits
        self.webhooks = webhooks
        if webhooks is not None:
            webhooks.set_source(self.event_of)
        self.queue: JobQueue | ProcrastinateJobQueue
        if objects is not None and not is_sqlite(settings.database):
            # Scale-out mode: records in PostgreSQL, bytes in the object store, runs on procrastinate
            self.queue = ProcrastinateJobQueue(
                settings, objects, self._run, run_pool=analysis_pool, on_finished=self._finished
            )
            if webhooks is not None:  # attempts become the job engine's tasks
                webhooks.use_engine(self.queue.app, self.queue.add_queue)
            return
        self.queue = JobQueue(
            settings.jobs_dir,
            pool,
            self._run,
            run_pool=analysis_pool,
            workers=settings.job_workers,
            max_pending=settings.job_max_pending,
            max_age_seconds=settings.job_retention_seconds,
            on_finished=self._finished,
        )

    async def start(self) -> None:
        """Recover and resume accepted jobs (after a crash too); with the file queue, whose
        retention runs here, forget the reuse hashes of jobs past retention too."""
        await self.queue.start()
        retention = self.settings.job_retention_seconds
        if self.reuse is not None and retention is not None and isinstance(self.queue, JobQueue):
            try:
                await self.reuse.forget_before(time.time() - retention)
            except DatabaseUnavailable as exc:  # start anyway (503s until it is back); next start
                logger.warning("contour job reuse: hashes past retention not purged: %s", exc)

    async def stop(self) -> None:
        """Stop the workers; unfinished jobs resume at the next start."""
        await self.queue.stop()

    async def admit(self) -> None:
        """Refuse now (QueueFull, 503 with Retry-After) while the job queue is full: before a
        submit's body (up to ~14 MB) is read (scale-out: counted in PostgreSQL, every replica's)."""
        if isinstance(self.queue, ProcrastinateJobQueue):
            await self.queue.admit()
        else:
            self.queue.admit()

    async def submit(self, body: bytes, owner: Principal) -> Job:
        """Parse and validate a JSON submit completely (off the event loop: bodies run to
        ~14 MB), then enqueue it; the job is persisted before this returns. A metered owner
        has a credit set aside (402 if none), charged when the job completes."""
        parsed = await self.pool.run(self._parse_and_check, body)
        request, job_input = parsed.request, parsed.job_input
        if request.landmarks is None and request.segmentation_map is None:
            self._face()  # detection needs the model: refuse now (503) rather than fail later
        max_distance = self.reuse.max_distance(request.reuse, request.reuse_distance) if self.reuse else 0
        if request.callback_url is not None:
            if self.webhooks is None:
                raise BadRequest("Callbacks are not available on this server")
            await self.webhooks.check_callback(request.callback_url, owner)
        hold_id = await self.credits.hold(owner) if self.credits is not None else None
        try:
            job = await self._reused(parsed, owner, max_distance)
            if job is None:
                job = await self.queue.submit(job_input, owner=owner.id, hold_id=hold_id)
        except BaseException:
            await self._release(owner, hold_id)
            raise
        if hold_id is not None and job.hold_id != hold_id:  # cached, joined or reused work: free
            await self._release(owner, hold_id)
        if parsed.look is not None and self.reuse is not None and job.reused_from is None:
            try:
                await self.reuse.record(job.content_key, owner.id, job.job_id, parsed.look)
            except Exception as exc:  # the job is accepted: only its reuse by later jobs is lost
                logger.warning("job %s: image hash not recorded (%s)", job.job_id, type(exc).__name__)
        if request.callback_url is not None and self.webhooks is not None:
            await self.webhooks.register(owner, job.job_id, request.callback_url)
            # It may have finished before the callback was recorded (a cached job is born so)
            event = await self.event_of(job.job_id)
            if event is not None:
                await self.webhooks.fire(job.job_id, event)
        return job

    async def _reused(self, parsed: _Parsed, owner: Principal, max_distance: int) -> Job | None:
        """A job born completed with the result of the owner's earlier job for a near-duplicate
        image (`app.services.jobs.reuse`), or None: no reuse asked for, the content is known
        itself (its own result or work in flight answers), or no near-duplicate has a result."""
        if self.reuse is None or parsed.look is None or max_distance <= 0:
            return None
        if await self.queue.known(parsed.job_input):
            return None
        own_key = hashlib.sha256(parsed.job_input).hexdigest()
        for candidate in await self.reuse.candidates(parsed.look, owner.id, own_key, max_distance):
            job = await self.queue.adopt(
                candidate.content_key,
                owner=owner.id,
                reused_from=candidate.job_id,
                distance=candidate.distance,
            )
            if job is not None:
                return job
        return None

    async def erase_owner(self, owner: str) -> int:
        """Forget every job of `owner` (account erasure) and the hashes of their images; how
        many jobs."""
        if self.reuse is not None:
            await self.reuse.erase_owner(owner)
        return await self.queue.erase_owner(owner)

    async def event_of(self, job_id: str) -> WebhookEvent | None:
        """The webhook event of a finished job; None while it runs; LookupError if it is gone."""
        try:
            job = await self.queue.get(job_id)
        except JobNotFound:
            raise LookupError(job_id) from None
        return _event(job) if job.status in FINISHED else None

    async def _finished(self, job: Job) -> None:
        """A job finished (or will run free): settle its credit, then fire its webhooks."""
        try:
            await self._settle(job)
        finally:
            if self.webhooks is not None and job.status in FINISHED:
                await self.webhooks.fire(job.job_id, _event(job))

    async def _release(self, owner: Principal, hold_id: str | None) -> None:
        if self.credits is not None:
            await self.credits.settle(owner, hold_id, charged=False, reason="contour_job")

    async def _settle(self, job: Job) -> None:
        """A job finished: charge its owner's held credit if it completed, else give it back
        (also for a job that will run free, still unfinished: `ProcrastinateJobQueue.forgo_charge`)."""
        if self.credits is None or job.hold_id is None or not job.owner.startswith("user:"):
            return
        owner = Principal(id=job.owner, kind="user", user_id=int(job.owner.removeprefix("user:")))
        completed = job.status == JobStatus.COMPLETED
        await self.credits.settle(
            owner,
            job.hold_id,
            charged=completed,
            reason="contour_job",
            detail=job.job_id,
            subject=f"job:{job.job_id}",  # a job redelivered or settled twice is charged once
        )

    def _parse_and_check(self, body: bytes) -> _Parsed:
        try:
            request = ContourJobRequest.model_validate_json(body)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(exc.errors(include_url=False)) from None
        job_input = self._canonical_input(request)
        if self.reuse is None or request.landmarks is not None or request.segmentation_map is not None:
            return _Parsed(request, job_input)
        payload = json.loads(job_input)
        image = base64.b64decode(payload["image"])
        size = (int(payload["size"][0]), int(payload["size"][1]))
        return _Parsed(request, job_input, look_of(image, size, str(payload["detector"])))

    def _image(self, encoded: str, field: str, formats: tuple[str, ...] | None = None) -> _Checked:
        raw = decode_base64_field(encoded, field, self.settings.max_upload_bytes)
        fmt = accepted_format(raw[:SNIFF_BYTES], formats or self.settings.allowed_formats, f"`{field}`")
        width, height = inspect_image(
            raw, fmt, self.settings.max_image_pixels, limits=self.settings.integrity
        )
        return _Checked(raw, (width, height))

    def _canonical_input(self, request: ContourJobRequest) -> bytes:
        image = self._image(request.image, "image")
        payload: dict[str, Any] = {"image": base64.b64encode(image.image).decode(), "size": list(image.size)}
        if request.landmarks is not None and request.segmentation_map is not None:
            raise BadRequest("Send `landmarks` or `segmentation_map`, not both")
        if request.landmarks is not None:
            points = [(p.x, p.y) for p in request.landmarks]
            bound = 10 * max(image.size)  # landmarks may leave the frame a little, not by light years
            if len(points) != LANDMARK_COUNT or not all(
                math.isfinite(v) and abs(v) <= bound for p in points for v in p
            ):
                raise InvalidLandmarks(
                    f"Expected {LANDMARK_COUNT} points with finite x and y, got {len(points)}"
                )
            payload["landmarks"] = points
        if request.segmentation_map is not None:
            try:
                seg = self._image(request.segmentation_map, "segmentation_map", formats=("png",))
            except UndecodableImage as exc:
                raise InvalidSegmentation(f"The segmentation map cannot be decoded: {exc.detail}") from None
            if seg.size != image.size:
                (sw, sh), (iw, ih) = seg.size, image.size
                raise InvalidSegmentation(f"The segmentation map is {sw}x{sh}, the image {iw}x{ih}")
            self._check_labels(seg.image)
            payload["segmentation_map"] = base64.b64encode(seg.image).decode()
        if request.landmarks is None and request.segmentation_map is None:
            # The detector is part of the result: another model version is another job content.
            payload["detector"] = self._face().version
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def _check_labels(raw: bytes) -> None:
        """A label image: one integer channel, few labels, a bounded outline."""
        try:
            with Image.open(io.BytesIO(raw)) as image:
                mode = image.mode
                labels = np.asarray(image) if mode in LABEL_MODES else None
        except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidSegmentation(f"The segmentation map cannot be decoded ({exc})") from None
        if labels is None:
            raise InvalidSegmentation(
                f"The segmentation map must have one integer label channel, not mode {mode}"
            )
        count = len(np.unique(labels))
        if count > MAX_LABELS + 1:  # + background
            raise InvalidSegmentation(f"The segmentation map has {count} labels; at most {MAX_LABELS}")
        edges = int(np.count_nonzero(labels[:, 1:] != labels[:, :-1]))
        edges += int(np.count_nonzero(labels[1:, :] != labels[:-1, :]))
        edges += int(np.count_nonzero(labels[[0, -1], :])) + int(np.count_nonzero(labels[:, [0, -1]]))
        if edges > MAX_OUTLINE_EDGES:
            raise InvalidSegmentation(
                f"The segmentation map's regions have {edges} boundary edges; at most {MAX_OUTLINE_EDGES}"
            )

    def _face(self) -> FaceAnalyzer:
        analyzer = self.registry.get("face")
        if not isinstance(analyzer, FaceAnalyzer):
            raise AnalyzerUnavailable("The face analyzer is not loaded")
        return analyzer

    def _run(self, job_input: bytes) -> bytes:
        """Job runner (worker thread): the SVG document for one canonical input."""
        payload = json.loads(job_input)
        size = (int(payload["size"][0]), int(payload["size"][1]))
        if "segmentation_map" in payload:
            with Image.open(io.BytesIO(base64.b64decode(payload["segmentation_map"]))) as labels:
                labels.load()
                return segmentation_contours(labels).svg.encode()
        if "landmarks" in payload:
            points = [(float(x), float(y)) for x, y in payload["landmarks"]]
            return face_contours(size, points, DEFAULT_MARGIN).svg.encode()
        face = self._face()
        image = base64.b64decode(payload["image"])
        return face.contours_from_image(image, DEFAULT_MARGIN, FaceParams().min_face_px).svg.encode()

    async def status(self, job_id: str, viewer: Principal) -> ContourJobState:
        """Where a job is (JobNotFound if unknown, or not `viewer`'s)."""
        job = await self.queue.get(job_id)
        if not viewer.can_see(job.owner):
            raise JobNotFound()
        svg = await self.queue.result(job_id) if job.status == JobStatus.COMPLETED else None
        return ContourJobState(
            job_id=job.job_id,
            status=job.status,
            svg=svg,
            error=job.error.detail if job.error else None,
            error_code=job.error.code if job.error else None,
            reused_from=job.reused_from,
            reused_distance=job.reused_distance,
        )


def _event(job: Job) -> WebhookEvent:
    """`contour_job.completed` or `contour_job.failed`: the job's status, not its SVG (the
    receiver reads that from the status route)."""
    return WebhookEvent(
        type=f"contour_job.{job.status.value}",
        timestamp=job.updated_at,
        data={
            "job_id": job.job_id,
            "status": job.status.value,
            "error": job.error.detail if job.error else None,
            "error_code": job.error.code if job.error else None,
            "status_url": f"/api/v1/frontal/crop/status/{job.job_id}",
            **(
                {"reused_from": {"job_id": job.reused_from, "distance": job.reused_distance}}
                if job.reused_from is not None
                else {}
            ),
        },
    )
