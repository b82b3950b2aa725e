"""The job queue's disk: status records, content-addressed inputs and results (blocking calls).

Layout under `root`::

    jobs/{job_id}.json   the job's status record (JSON: job_id, status, created_at,
                         updated_at, error {code, detail} | null, content_key);
                         replaced atomically (`atomic_write`) on every transition
    inputs/{key}         the input bytes, key = sha256(input) hex; published once (`atomic_create`)
    results/{key}        the runner's output for that input; published once (`atomic_create`)

Nothing half-written is ever visible under a final name (temp file, fsync, rename/link);
temp files of dead processes are swept by `recover`. Every method blocks: the queue calls
them from its thread pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from app.core.errors import AppError
from app.core.ids import is_uuid4
from app.services.job_models import FINISHED, INTERNAL_ERROR_DETAIL, Job, JobError, JobStatus
from app.storage.atomic import TEMP_PREFIX, atomic_create, atomic_write, sweep_temp_files, unlink_quietly

logger = logging.getLogger("app.jobs")


class JobStore:
    """Job records, inputs and results as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs_dir = root / "jobs"
        self.inputs_dir = root / "inputs"
        self.results_dir = root / "results"
        for directory in (self.jobs_dir, self.inputs_dir, self.results_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def write_record(self, job: Job) -> None:
        """Persist a job's snapshot (atomic, fsynced)."""
        atomic_write(self.record_path(job.job_id), job.model_dump_json().encode())

    def read_record(self, job_id: str) -> Job | None:
        """A job's record, or None if it is missing, unreadable, corrupt or names another job."""
        path = self.record_path(job_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("job record %s is unreadable: %s", path, exc)
            return None
        try:
            job = Job.model_validate_json(raw)
        except ValidationError as exc:
            logger.warning("job record %s is corrupt: %s", path, exc.errors(include_url=False)[:1])
            return None
        if job.job_id != job_id:
            logger.warning("job record %s names another job (%s); ignored", path, job.job_id)
            return None
        return job

    def lookup(self, data: bytes) -> tuple[str, bool]:
        """The content key of `data` and whether its result exists already."""
        key = hashlib.sha256(data).hexdigest()
        return key, self.has_result(key)

    def store_input(self, key: str, data: bytes) -> None:
        """Make sure the input of `key` is on disk (before any record refers to it)."""
        input_path = self.inputs_dir / key
        if not input_path.exists():
            atomic_create(input_path, data)

    def read_input(self, key: str) -> bytes:
        """The input bytes of `key` (OSError if they are gone)."""
        return (self.inputs_dir / key).read_bytes()

    def has_result(self, key: str) -> bool:
        return (self.results_dir / key).exists()

    def publish_result(self, key: str, output: bytes) -> None:
        """Publish the output for `key` once (a concurrent identical publish is a no-op)."""
        atomic_create(self.results_dir / key, output)

    def read_result(self, key: str) -> bytes | None:
        try:
            return (self.results_dir / key).read_bytes()
        except FileNotFoundError:
            logger.warning("result %s of a completed job is missing", key[:12])
            return None

    def drop_unreferenced(self, key: str) -> None:
        """Remove the input and result of `key` unless a record still refers to them."""
        for entry in os.scandir(self.jobs_dir):
            stem, _, ext = entry.name.rpartition(".")
            if ext == "json" and is_uuid4(stem):
                job = self.read_record(stem)
                if job is not None and job.content_key == key:
                    return
        unlink_quietly(self.inputs_dir / key)
        unlink_quietly(self.results_dir / key)

    def erase_owner(self, owner: str) -> int:
        """Delete every record of `owner`, and the inputs and results no other record refers
        to (account erasure); how many records."""
        mine: list[Job] = []
        referenced: set[str] = set()
        for entry in os.scandir(self.jobs_dir):
            stem, _, ext = entry.name.rpartition(".")
            if ext != "json" or not is_uuid4(stem):
                continue
            job = self.read_record(stem)
            if job is None:
                continue
            if job.owner == owner:
                mine.append(job)
            else:
                referenced.add(job.content_key)
        for job in mine:
            unlink_quietly(self.record_path(job.job_id))
        for key in {job.content_key for job in mine} - referenced:
            unlink_quietly(self.inputs_dir / key)
            unlink_quietly(self.results_dir / key)
        return len(mine)

    def recover(self, max_age_seconds: float | None) -> list[Job]:
        """Sweep temp files, apply retention, reset crashed runs to pending; the unfinished
        jobs, oldest first."""
        for directory in (self.jobs_dir, self.inputs_dir, self.results_dir):
            sweep_temp_files(directory)
        jobs: list[Job] = []
        for entry in os.scandir(self.jobs_dir):
            stem, dot, ext = entry.name.rpartition(".")
            if entry.name.startswith(TEMP_PREFIX):
                continue  # a live peer's temp file
            if not (dot and ext == "json" and is_uuid4(stem)):
                logger.warning("ignoring unexpected file %s in %s", entry.name, self.jobs_dir)
                continue
            job = self.read_record(stem)
            if job is not None:
                jobs.append(job)
        if max_age_seconds is not None:
            jobs = self._apply_retention(jobs, max_age_seconds)
        unfinished: list[Job] = []
        for job in sorted(jobs, key=lambda j: (j.created_at, j.job_id)):
            if job.status in FINISHED:
                continue
            if job.status == JobStatus.RUNNING:
                logger.warning(
                    "job %s was running when the last process stopped; running it again", job.job_id
                )
                job = job.model_copy(update={"status": JobStatus.PENDING, "updated_at": datetime.now(UTC)})
                self.write_record(job)
            unfinished.append(job)
        return unfinished

    def _apply_retention(self, jobs: list[Job], max_age_seconds: float) -> list[Job]:
        """Delete finished records older than `max_age_seconds`, then every input and result
        no remaining record refers to."""
        cutoff = datetime.now(UTC).timestamp() - max_age_seconds
        kept: list[Job] = []
        expired = 0
        for job in jobs:
            if job.status in FINISHED and job.updated_at.timestamp() < cutoff:
                unlink_quietly(self.record_path(job.job_id))
                expired += 1
            else:
                kept.append(job)
        referenced = {job.content_key for job in kept}
        blobs = 0
        for directory in (self.inputs_dir, self.results_dir):
            for entry in os.scandir(directory):
                if entry.name.startswith(TEMP_PREFIX) or entry.name in referenced:
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    blobs += 1
        if expired or blobs:
            logger.info(
                "retention: removed %d expired job record(s) and %d unreferenced file(s)", expired, blobs
            )
        return kept

    def execute(self, key: str, runner: Callable[[bytes], bytes]) -> JobError | None:
        """Run `runner` on the input of `key` and publish its output, unless a result exists
        already (published before a crash, or by a run this one raced with); None on success.

        An `AppError` fails the job with its code and detail; anything else with
        `internal_error` and a generic detail (the traceback is logged)."""
        if self.has_result(key):
            return None
        try:
            data = self.read_input(key)
        except OSError:
            logger.error("input %s of a queued job is missing or unreadable", key[:12])
            return JobError(code="job_input_missing", detail="The job's input was lost; submit it again")
        try:
            output = runner(data)
            if not isinstance(output, bytes | bytearray | memoryview):
                raise TypeError(f"job runner returned {type(output).__name__}, not bytes")
            self.publish_result(key, bytes(output))
        except AppError as exc:
            return JobError(code=exc.code, detail=exc.detail)
        except Exception:
            logger.exception("job runner failed on key %s", key[:12])
            return JobError(code="internal_error", detail=INTERNAL_ERROR_DETAIL)
        return None
