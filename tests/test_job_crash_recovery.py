"""SIGKILL a real server right after it accepted contour jobs, restart it: every job completes.

A first uvicorn process (one job worker) gets several distinct face images submitted at once
to `POST /api/v1/frontal/crop/submit`; as soon as the last 202 is in, it is killed with
SIGKILL, so most jobs are still pending (or running) in their records on disk. A second
process on the same `DATA_DIR` must re-queue them: every accepted job id is still known
and ends `completed` with its SVG, and no temp file is left under the data dir.
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from skimage import data

from app.storage.atomic import TEMP_PREFIX
from tests.conftest import MODEL_DIR
from tests.factories import encode
from tests.processes import Server, start_server

pytestmark = pytest.mark.slow

SUBMIT = "/api/v1/frontal/crop/submit"
STATUS = "/api/v1/frontal/crop/status/{}"


def face_images() -> list[bytes]:
    """Distinct JPEGs of scikit-image's astronaut (different bytes, so different job keys; alike
    enough to the eye that perceptual reuse may join them)."""
    base = Image.fromarray(data.astronaut())
    mirrored = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    variants = [
        (base, 90),
        (mirrored, 90),
        (base, 80),
        (base.rotate(3, resample=Image.Resampling.BICUBIC), 90),
        (base.rotate(-3, resample=Image.Resampling.BICUBIC), 90),
        (base.crop((20, 0, 492, 480)), 90),
        (base.resize((640, 640), Image.Resampling.BICUBIC), 88),
        (mirrored.resize((768, 768), Image.Resampling.BICUBIC), 88),
        (base.resize((768, 768), Image.Resampling.BICUBIC), 85),
        (mirrored.crop((0, 0, 480, 500)), 92),
    ]
    images = [encode(image, "JPEG", quality=quality) for image, quality in variants]
    assert len(set(images)) == len(images)
    return images


def job_records(data_dir: Path) -> dict[str, dict[str, object]]:
    """job_id -> its record on disk (temp files of interrupted writes left out)."""
    jobs_dir = data_dir / "jobs" / "jobs"
    return {
        path.stem: json.loads(path.read_bytes())
        for path in jobs_dir.glob("*.json")
        if not path.name.startswith(TEMP_PREFIX)
    }


def svg_paths(result_b64: str) -> list[ET.Element]:
    root = ET.fromstring(base64.b64decode(result_b64, validate=True))
    assert root.tag.endswith("svg"), root.tag
    return [el for el in root.iter() if el.tag.endswith("path")]


@pytest.fixture
def started_servers() -> Iterator[list[Server]]:
    """Every server started is stopped (or already dead after its SIGKILL), whatever happens."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.kill()
        server.stop()


def test_jobs_accepted_before_sigkill_complete_after_restart(
    started_servers: list[Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `Server` passes its parent's environment on: one job worker, the repo's models.
    monkeypatch.setenv("JOB_WORKERS", "1")
    monkeypatch.setenv("MODEL_DIR", str(MODEL_DIR))
    data_dir = tmp_path / "data"
    images = face_images()
    # Reuse off: the variants are near-duplicates (PDQ), so with it on a job could join another's
    # content key, or not, by the order in which the concurrent submits happen to be recorded
    bodies = [{"image": base64.b64encode(raw).decode(), "reuse": False} for raw in images]

    first = start_server(started_servers, data_dir, "first")

    # 1. Submit every job at once, then SIGKILL as soon as the last 202 is in.
    def submit(body: dict[str, str]) -> httpx.Response:
        return httpx.post(first.base_url + SUBMIT, json=body, timeout=10)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(submit, bodies))
    first.kill()

    for response in responses:
        assert response.status_code == 202, response.text
    accepted = [response.json()["job_id"] for response in responses]
    assert len(set(accepted)) == len(images)

    # Accepted means on disk: every job has its record, each with its own input; and the kill
    # came before the worker could finish them all, so the restart really has work to resume.
    at_kill = job_records(data_dir)
    assert set(accepted) <= set(at_kill), (sorted(set(accepted) - set(at_kill)), first.logs())
    assert len({at_kill[job_id]["content_key"] for job_id in accepted}) == len(images)
    unfinished = [job_id for job_id in accepted if at_kill[job_id]["status"] in ("pending", "running")]
    statuses = {job_id: at_kill[job_id]["status"] for job_id in accepted}
    assert unfinished, f"every job finished before the kill; nothing to recover: {statuses}"

    # 2. Restart on the same data dir: every accepted job is known and completes.
    second = start_server(started_servers, data_dir, "second")
    done: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=second.base_url, timeout=10) as client:
        while len(done) < len(accepted):
            assert time.monotonic() < deadline, (
                f"not finished after 30 s: {sorted(set(accepted) - set(done))}\n{second.logs()}"
            )
            for job_id in accepted:
                if job_id in done:
                    continue
                response = client.get(STATUS.format(job_id))
                assert response.status_code == 200, (job_id, statuses[job_id], response.text)
                body = response.json()
                assert body["job_id"] == job_id
                if body["status"] in ("completed", "failed"):
                    done[job_id] = body
            time.sleep(0.05)

    for job_id in accepted:
        body = done[job_id]
        assert body["status"] == "completed", (statuses[job_id], body)
        assert body["error"] is None and body["error_code"] is None, body
        assert len(svg_paths(str(body["result"]))) >= 8, job_id  # one closed path per facial region

    # On disk after the restart: every record says completed, its result is published, and
    # nothing half-written (no temp file) is left anywhere under the data dir.
    after = job_records(data_dir)
    results_dir = data_dir / "jobs" / "results"
    for job_id in accepted:
        assert after[job_id]["status"] == "completed", after[job_id]
        assert (results_dir / str(after[job_id]["content_key"])).is_file(), job_id
    leftovers = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob(f"{TEMP_PREFIX}*"))
    assert not leftovers, leftovers
