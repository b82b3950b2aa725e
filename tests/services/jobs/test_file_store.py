"""app.services.jobs.file_store: the job queue's files (records, content-addressed inputs and
results), called directly: unreadable records, erasure, recovery of a dead worker's jobs, and
the per-key claim that keeps two workers from computing one input at once."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.core.errors import UndecodableImage
from app.services.jobs.file_store import JobStore, worker_alive, worker_id
from app.services.jobs.records import Job, JobError, JobStatus

HOST = socket.gethostname()
DEAD = f"{HOST}:999999999"


def job(key: str = "k" * 64, status: JobStatus = JobStatus.PENDING, **extra: object) -> Job:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "job_id": str(uuid.uuid4()),
        "status": status,
        "created_at": now,
        "updated_at": now,
        "content_key": key,
    }
    values.update(extra)
    return Job(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs-root", worker_id())


def test_worker_ids_and_which_workers_are_alive() -> None:
    me = worker_id()
    assert me == f"{HOST}:{os.getpid()}"
    assert worker_alive(me)
    assert worker_alive(f"{HOST}:1")  # init: another live process of this host
    assert not worker_alive(DEAD)
    assert worker_alive("another-host:999999999")  # cannot tell: assumed alive
    assert worker_alive(f"{HOST}:not-a-pid")


def test_records_round_trip_and_bad_ones_read_as_missing(store: JobStore) -> None:
    written = job(owner="user:1", error=JobError(code="c", detail="d"), status=JobStatus.FAILED)
    store.write_record(written)
    assert store.read_record(written.job_id) == written
    assert store.read_record(str(uuid.uuid4())) is None
    corrupt = str(uuid.uuid4())
    store.record_path(corrupt).write_bytes(b'{"job_id": "')
    assert store.read_record(corrupt) is None
    imposter = str(uuid.uuid4())
    store.record_path(imposter).write_bytes(written.model_dump_json().encode())
    assert store.read_record(imposter) is None  # names another job


def test_inputs_and_results_are_content_addressed_and_published_once(store: JobStore) -> None:
    key, done = store.lookup(b"input")
    assert key == hashlib.sha256(b"input").hexdigest() and not done
    store.store_input(key, b"input")
    store.store_input(key, b"input")
    assert store.read_input(key) == b"input"
    store.publish_result(key, b"first")
    store.publish_result(key, b"second")
    assert store.lookup(b"input") == (key, True)
    assert store.read_result(key) == b"first"
    assert store.read_result("0" * 64) is None
    with pytest.raises(OSError):
        store.read_input("0" * 64)


def test_drop_unreferenced_keeps_what_a_record_still_names(store: JobStore) -> None:
    key, _ = store.lookup(b"x")
    store.store_input(key, b"x")
    store.publish_result(key, b"out")
    store.write_record(job(key))
    store.drop_unreferenced(key)
    assert store.has_result(key) and store.read_input(key) == b"x"
    for path in store.jobs_dir.iterdir():
        path.unlink()
    store.drop_unreferenced(key)
    assert not store.has_result(key) and not (store.inputs_dir / key).exists()


def test_erase_owner_removes_only_that_owners_records_and_unshared_blobs(store: JobStore) -> None:
    shared, private = store.lookup(b"shared")[0], store.lookup(b"private")[0]
    for key, data in ((shared, b"shared"), (private, b"private")):
        store.store_input(key, data)
        store.publish_result(key, b"out")
    store.write_record(job(shared, owner="user:1"))
    store.write_record(job(private, owner="user:1"))
    kept = job(shared, owner="user:2")
    store.write_record(kept)
    assert store.erase_owner("user:1") == 2
    assert [p.name for p in store.jobs_dir.iterdir()] == [f"{kept.job_id}.json"]
    assert store.has_result(shared) and not store.has_result(private)
    assert not (store.inputs_dir / private).exists()
    assert store.erase_owner("user:1") == 0


def test_recover_adopts_unfinished_jobs_of_dead_workers_oldest_first(store: JobStore) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    crashed = job(status=JobStatus.RUNNING, worker=DEAD, created_at=t0 + timedelta(seconds=2))
    waiting = job(worker=None, created_at=t0)
    peer = job(worker=f"{HOST}:1", created_at=t0)  # a live sibling's: left alone
    elsewhere = job(worker="another-host:7", created_at=t0)  # another host's: assumed alive
    finished = job(status=JobStatus.COMPLETED, worker=DEAD, created_at=t0)
    for each in (crashed, waiting, peer, elsewhere, finished):
        store.write_record(each)
    (store.jobs_dir / "notes.txt").write_text("stray")

    adopted = store.recover(max_age_seconds=None, worker="me:1")
    assert [j.job_id for j in adopted] == [waiting.job_id, crashed.job_id]
    assert all(j.status == JobStatus.PENDING and j.worker == "me:1" for j in adopted)
    assert store.read_record(crashed.job_id) == adopted[1]
    assert store.read_record(peer.job_id) == peer
    assert store.read_record(finished.job_id) == finished


def test_retention_removes_old_finished_records_and_their_blobs(store: JobStore) -> None:
    old_key, new_key = store.lookup(b"old")[0], store.lookup(b"new")[0]
    for key, data in ((old_key, b"old"), (new_key, b"new")):
        store.store_input(key, data)
        store.publish_result(key, b"out")
    long_ago = datetime.now(UTC) - timedelta(days=2)
    old = job(old_key, status=JobStatus.COMPLETED, created_at=long_ago, updated_at=long_ago)
    recent = job(new_key, status=JobStatus.COMPLETED)
    store.write_record(old)
    store.write_record(recent)
    store.recover(max_age_seconds=86_400, worker="me:1")
    assert store.read_record(old.job_id) is None and not store.has_result(old_key)
    assert store.read_record(recent.job_id) == recent and store.has_result(new_key)


def test_execute_publishes_the_runners_output_once(store: JobStore) -> None:
    key, _ = store.lookup(b"in")
    store.store_input(key, b"in")
    calls: list[bytes] = []

    def runner(data: bytes) -> bytes:
        calls.append(data)
        return data.upper()

    assert store.execute(key, runner) is None
    assert store.execute(key, runner) is None  # the result exists: not run again
    assert calls == [b"in"] and store.read_result(key) == b"IN"
    assert list(store.claims_dir.iterdir()) == []


def test_execute_reports_failures_as_job_errors(store: JobStore) -> None:
    key, _ = store.lookup(b"bad")
    store.store_input(key, b"bad")

    def undecodable(_: bytes) -> bytes:
        raise UndecodableImage("not an image")

    assert store.execute(key, undecodable) == JobError(code="undecodable_image", detail="not an image")
    assert store.execute(key, lambda _: "text") == JobError(  # type: ignore[arg-type, return-value]
        code="internal_error", detail="The job failed because of an internal error"
    )
    missing = store.execute("0" * 64, lambda data: data)
    assert missing is not None and missing.code == "job_input_missing"
    assert not store.has_result(key)


def test_a_dead_workers_claim_is_taken_over(store: JobStore) -> None:
    key, _ = store.lookup(b"in")
    store.store_input(key, b"in")
    (store.claims_dir / key).write_text(DEAD)
    assert store.execute(key, lambda data: data + b"!") is None
    assert store.read_result(key) == b"in!"


def test_an_empty_claim_that_a_kill_left_is_taken_over(store: JobStore) -> None:
    """A worker SIGKILLed between creating its claim and writing its name in it (as an earlier
    version made claims) left an empty file, which no worker ever took over: the key's jobs
    waited forever (a crash-recovery run: 0 of 8 jobs done 30 s after the restart)."""
    key, _ = store.lookup(b"in")
    store.store_input(key, b"in")
    (store.claims_dir / key).write_bytes(b"")
    done: list[JobError | None] = []
    runner = threading.Thread(
        target=lambda: done.append(store.execute(key, lambda data: data + b"!")), daemon=True
    )
    runner.start()
    runner.join(10)
    assert not runner.is_alive() and done == [None]
    assert store.read_result(key) == b"in!"
    assert list(store.claims_dir.iterdir()) == []


def test_a_claim_holds_its_holders_name_from_the_moment_it_exists(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made whole, then put in place: another worker (or a restart after a kill) never sees a
    claim without its holder's name."""
    key, _ = store.lookup(b"in")
    store.store_input(key, b"in")
    seen: list[bytes] = []

    def runner(data: bytes) -> bytes:
        seen.append((store.claims_dir / key).read_bytes())
        return data

    real_open = os.open

    def refuse_the_claims_own_create(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path) == store.claims_dir / key and flags & os.O_EXCL:
            raise AssertionError("the claim was created empty, its name written after")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_the_claims_own_create)
    assert store.execute(key, runner) is None
    assert seen == [store.worker.encode()]
    assert list(store.claims_dir.iterdir()) == []  # no temp file left beside it either


def test_a_live_claim_makes_the_second_worker_wait_then_use_the_result(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first, second = JobStore(root, worker_id()), JobStore(root, worker_id())
    key, _ = first.lookup(b"in")
    first.store_input(key, b"in")
    entered, release = threading.Event(), threading.Event()
    second_calls: list[bytes] = []

    def slow(data: bytes) -> bytes:
        entered.set()
        release.wait(10)
        return b"from the first"

    thread = threading.Thread(target=first.execute, args=(key, slow))
    thread.start()
    assert entered.wait(10)
    waiter = threading.Thread(target=second.execute, args=(key, lambda d: second_calls.append(d) or b"x"))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # waiting on the first worker's claim
    release.set()
    thread.join(10)
    waiter.join(10)
    assert second_calls == [] and second.read_result(key) == b"from the first"
