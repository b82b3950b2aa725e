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
import fcntl
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from app.core.errors import AppError
from app.core.ids import is_uuid4
from app.services.jobs.records import FINISHED, INTERNAL_ERROR_DETAIL, Job, JobError, JobStatus
from app.storage.atomic import (
    TEMP_PREFIX,
    atomic_create,
    atomic_write,
    is_live_peer,
    sweep_temp_files,
    unlink_quietly,
)

logger = logging.getLogger("app.jobs")

CLAIM_POLL_SECONDS = 0.05
BLOB_GRACE_SECONDS = 3600.0


def worker_id() -> str:
    """This process, as job records name their worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str) -> bool:
    """Whether the process `worker` (host:pid) runs; another host's is assumed to."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return int(pid) == os.getpid() or is_live_peer(int(pid))


class JobStore:
    """Job records, inputs and results as files under `root`."""

    def __init__(self, root: Path, worker: str) -> None:
        self.root = root
        self.worker = worker
        self.jobs_dir = root / "jobs"
        self.inputs_dir = root / "inputs"
        self.results_dir = root / "results"
        self.claims_dir = root / "claims"
        for directory in (self.jobs_dir, self.inputs_dir, self.results_dir, self.claims_dir):
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

    def recover(self, max_age_seconds: float | None, worker: str) -> list[Job]:
        """Sweep temp files, apply retention, adopt the unfinished jobs of processes that are
        gone (resetting crashed runs to pending); the adopted jobs, oldest first.

        Several workers may start at once over one data dir: recovery runs under an exclusive
        lock, and a job whose worker is alive (another process of this host) stays its own."""
        with open(self.root / ".recover.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._recover(max_age_seconds, worker)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _recover(self, max_age_seconds: float | None, worker: str) -> list[Job]:
        for directory in (self.jobs_dir, self.inputs_dir, self.results_dir, self.claims_dir):
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
            if job.status in FINISHED or (job.worker not in (None, worker) and worker_alive(job.worker)):
                continue
            if job.status == JobStatus.RUNNING:
                logger.warning("job %s was running when its process stopped; running it again", job.job_id)
            job = job.model_copy(
                update={"status": JobStatus.PENDING, "updated_at": datetime.now(UTC), "worker": worker}
            )
            self.write_record(job)
            unfinished.append(job)
        return unfinished

    def _apply_retention(self, jobs: list[Job], max_age_seconds: float) -> list[Job]:
        """Delete finished records older than `max_age_seconds`, then every input and result
        no remaining record refers to."""
        cutoff = datetime.now(UTC).timestamp() - max_age_seconds
        kept: list[Job] = []
        expired_keys: set[str] = set()
        for job in jobs:
            if job.status in FINISHED and job.updated_at.timestamp() < cutoff:
                unlink_quietly(self.record_path(job.job_id))
                expired_keys.add(job.content_key)
            else:
                kept.append(job)
        expired = len(jobs) - len(kept)
        referenced = {job.content_key for job in kept}
        blobs = 0
        # A recent blob nobody refers to may be a live sibling's submit about to write its record.
        young = time.time() - BLOB_GRACE_SECONDS
        for directory in (self.inputs_dir, self.results_dir):
            for entry in os.scandir(directory):
                if entry.name.startswith(TEMP_PREFIX) or entry.name in referenced:
                    continue
                with contextlib.suppress(OSError):
                    if entry.name not in expired_keys and entry.stat().st_mtime > young:
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
        with self._claim(key):
            return self._run(key, runner)

    @contextmanager
    def _claim(self, key: str) -> Iterator[None]:
        """Hold `claims/{key}` while running it: two workers never compute one key at once (the
        second waits, then finds the result); a dead holder's claim is taken over.

        A claim is made whole (its holder's name in it) and then linked into place, so that it
        is never seen without its holder. One found empty was left by an earlier version,
        killed between creating its claim and naming itself in it: its holder is gone, and it
        is taken over (it once kept that key's jobs waiting for ever)."""
        path = self.claims_dir / key
        while True:
            try:
                holder = path.read_text()
            except FileNotFoundError:  # free: a temp file is made only to take it
                if atomic_create(path, self.worker.encode()):
                    break
                continue
            if not holder or not worker_alive(holder):
                unlink_quietly(path)
                continue
            time.sleep(CLAIM_POLL_SECONDS)
        try:
            yield
        finally:
            unlink_quietly(path)

    def _run(self, key: str, runner: Callable[[bytes], bytes]) -> JobError | None:
        if self.has_result(key):
            return None  # another worker computed it while this one waited for the claim
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
