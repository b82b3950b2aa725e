"""Seed 004 contour jobs through HTTP: submit, poll, restart, and every bad input."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.conftest import serve
from tests.factories import encode

SUBMIT = "/api/v1/frontal/crop/submit"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def corrupt_png(size: tuple[int, int]) -> bytes:
    """A PNG whose chunk CRCs are right but whose pixel data does not inflate."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", size[0], size[1], 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage" * 10) + chunk(b"IEND", b"")


def astronaut_jpeg() -> bytes:
    return encode(Image.fromarray(data.astronaut()), "JPEG", quality=90)


async def wait_done(client: httpx.AsyncClient, job_id: str, timeout: float = 30) -> dict:
    with anyio.fail_after(timeout):
        while True:
            resp = await client.get(f"/api/v1/frontal/crop/status/{job_id}")
            assert resp.status_code == 200, resp.text
            body = resp.json()
            if body["status"] in ("completed", "failed"):
                return body
            await anyio.sleep(0.05)


def svg_paths(result_b64: str) -> list[ET.Element]:
    root = ET.fromstring(base64.b64decode(result_b64))
    return [el for el in root.iter() if el.tag.endswith("path")]


async def test_detect_then_contours(client: httpx.AsyncClient) -> None:
    resp = await client.post(SUBMIT, json={"image": b64(astronaut_jpeg())})
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert set(accepted) == {"job_id", "status"} and accepted["status"] in ("pending", "running", "completed")
    done = await wait_done(client, accepted["job_id"])
    assert done["status"] == "completed", done
    assert done["error"] is None
    assert len(svg_paths(done["result"])) >= 8  # one closed path per facial region


async def test_data_url_and_same_inputs_share_the_result(client: httpx.AsyncClient) -> None:
    raw = astronaut_jpeg()
    first = await wait_done(client, (await client.post(SUBMIT, json={"image": b64(raw)})).json()["job_id"])
    again = await client.post(SUBMIT, json={"image": "data:image/jpeg;base64," + b64(raw)})
    assert again.status_code == 202
    second = await wait_done(client, again.json()["job_id"])
    assert again.json()["job_id"] != first["job_id"]
    assert second["result"] == first["result"]


async def test_line_wrapped_base64_and_uppercase_data_urls(client: httpx.AsyncClient) -> None:
    raw = b64(astronaut_jpeg())
    wrapped = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))
    for image in (wrapped, "DATA:image/jpeg;BASE64," + raw):
        resp = await client.post(SUBMIT, json={"image": image})
        assert resp.status_code == 202, resp.text


async def test_refused_submits_write_nothing(make_settings, data_dir) -> None:
    async with serve(make_settings(job_max_pending=0)) as c:
        for quality in (70, 80):
            body = encode(Image.fromarray(data.astronaut()), "JPEG", quality=quality)
            resp = await c.post(SUBMIT, json={"image": b64(body)})
            assert resp.status_code == 503 and resp.json()["code"] == "queue_full"
    assert not list((data_dir / "jobs" / "inputs").iterdir())


async def test_client_landmarks_skip_detection(client: httpx.AsyncClient) -> None:
    # A blank image: detection would fail, the given landmarks are used instead.
    blank = encode(Image.new("RGB", (400, 400), (128, 128, 128)), "PNG")
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = [{"x": 200 + 100 * np.cos(a), "y": 200 + 120 * np.sin(a)} for a in angles]
    done = await wait_done(
        client, (await client.post(SUBMIT, json={"image": b64(blank), "landmarks": points})).json()["job_id"]
    )
    assert done["status"] == "completed", done
    assert svg_paths(done["result"])


async def test_segmentation_map_contours(client: httpx.AsyncClient) -> None:
    image = encode(Image.new("RGB", (120, 80), (200, 180, 160)), "PNG")
    labels = np.zeros((80, 120), dtype=np.uint8)
    labels[10:30, 10:50] = 1
    labels[40:70, 60:110] = 2
    seg = encode(Image.fromarray(labels, "L"), "PNG")
    done = await wait_done(
        client,
        (await client.post(SUBMIT, json={"image": b64(image), "segmentation_map": b64(seg)})).json()[
            "job_id"
        ],
    )
    assert done["status"] == "completed", done
    assert len(svg_paths(done["result"])) == 2


async def test_no_face_fails_the_job_with_a_code(client: httpx.AsyncClient) -> None:
    coffee = encode(Image.fromarray(data.coffee()), "JPEG")
    done = await wait_done(client, (await client.post(SUBMIT, json={"image": b64(coffee)})).json()["job_id"])
    assert done["status"] == "failed"
    assert done["error_code"] == "no_face_detected" and done["error"]
    assert done["result"] is None


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"image": "!!!not base64!!!"}, 400, "invalid_base64"),
        ({"image": "data:text/plain,hello"}, 400, "invalid_base64"),
        ({"image": "data:text/html;base64," + b64(astronaut_jpeg())}, 400, "unsupported_media_type"),
        ({"image": b64(b"just some text, not an image")}, 400, "unsupported_media_type"),
        ({"image": b64(astronaut_jpeg()[:4000])}, 400, "undecodable_image"),
        ({"image": b64(astronaut_jpeg()), "landmarks": [{"x": 1, "y": 2}] * 5}, 400, "invalid_landmarks"),
        (
            {
                "image": b64(astronaut_jpeg()),
                "segmentation_map": b64(encode(Image.new("L", (10, 10)), "PNG")),
            },
            400,
            "invalid_segmentation_map",
        ),
        ({"image": "A" * (8 * 1024 * 1024)}, 413, "payload_too_large"),
        (
            {"image": b64(astronaut_jpeg()), "segmentation_map": b64(astronaut_jpeg())},
            400,
            "unsupported_media_type",  # label maps must be lossless PNG
        ),
        (
            {
                "image": b64(astronaut_jpeg()),
                "segmentation_map": b64(encode(Image.fromarray(data.astronaut()), "PNG")),
            },
            400,
            "invalid_segmentation_map",  # RGB, not one label channel
        ),
        (
            {
                "image": b64(encode(Image.new("RGB", (1000, 1000)), "PNG")),
                "segmentation_map": b64(
                    encode(Image.fromarray((np.indices((1000, 1000)).sum(0) % 2).astype(np.uint8)), "PNG")
                ),
            },
            400,
            "invalid_segmentation_map",  # a checkerboard: 2 M boundary edges, a few KB of PNG
        ),
        (
            {
                "image": b64(encode(Image.new("RGB", (64, 64)), "PNG")),
                "segmentation_map": b64(corrupt_png((64, 64))),
            },
            400,
            "invalid_segmentation_map",
        ),
        (
            {"image": b64(astronaut_jpeg()), "landmarks": [{"x": 1e308, "y": -1e308}] * 68},
            400,
            "invalid_landmarks",
        ),
        (
            {
                "image": b64(astronaut_jpeg()),
                "landmarks": [{"x": 1, "y": 2}] * 68,
                "segmentation_map": b64(encode(Image.new("L", (512, 512)), "PNG")),
            },
            400,
            "bad_request",
        ),
        (
            {
                "image": b64(encode(Image.new("RGB", (64, 64)), "PNG")),
                "segmentation_map": b64(
                    encode(Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)), "PNG")
                ),
            },
            400,
            "invalid_segmentation_map",
        ),
        ({}, 400, "validation_error"),
        ({"image": b64(astronaut_jpeg()), "extra": 1}, 400, "validation_error"),
    ],
)
async def test_bad_submits(
    client: httpx.AsyncClient, data_dir, payload: dict, status: int, code: str
) -> None:
    resp = await client.post(SUBMIT, json=payload)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code
    assert not list((data_dir / "jobs" / "jobs").glob("*.json"))


async def test_unknown_and_malformed_job_ids(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/frontal/crop/status/3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    assert (await client.get("/api/v1/frontal/crop/status/not-a-uuid")).status_code == 400


async def test_completed_jobs_survive_restart(make_settings) -> None:
    async with serve(make_settings()) as c:
        job_id = (await c.post(SUBMIT, json={"image": b64(astronaut_jpeg())})).json()["job_id"]
        before = await wait_done(c, job_id)
    async with serve(make_settings()) as c:
        after = (await c.get(f"/api/v1/frontal/crop/status/{job_id}")).json()
    assert after == before


def counted(exposition: str, sample: str) -> float:
    """The value of one sample line (`name{labels}`) of a /metrics text, 0 if absent."""
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def segmentation_job(shade: int) -> dict[str, str]:
    """A cheap job (contours traced from a label image); `shade` makes its content distinct."""
    image = encode(Image.new("RGB", (60, 40), (200, 180, shade)), "PNG")
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[5:20, 5:30] = 1
    return {"image": b64(image), "segmentation_map": b64(encode(Image.fromarray(labels, "L"), "PNG"))}


async def test_job_metrics_count_one_per_job(client: httpx.AsyncClient) -> None:
    """`jobs_total` counts every accepted job once as pending and once as finished, whether it
    queued work, joined work in flight or came from the result cache; the job runs' timing
    histograms count one per run (jobs of the same content share one), never per disk step."""
    samples = (
        'jobs_total{state="pending"}',
        'jobs_total{state="completed"}',
        'jobs_total{state="failed"}',
        'analysis_inference_seconds_count{analyzer="contour-jobs"}',
        'analysis_queue_wait_seconds_count{analyzer="contour-jobs"}',
    )
    before = (await client.get("/metrics")).text
    distinct = 4
    answers = await asyncio.gather(
        *(client.post(SUBMIT, json=segmentation_job(shade)) for shade in range(distinct)),
        client.post(SUBMIT, json=segmentation_job(0)),  # joins the work of shade 0
    )
    ids = [r.json()["job_id"] for r in answers if r.status_code == 202]
    assert len(ids) == distinct + 1, [r.text for r in answers]
    for job_id in ids:
        assert (await wait_done(client, job_id))["status"] == "completed"
    cached = await client.post(SUBMIT, json=segmentation_job(1))  # born completed
    assert cached.status_code == 202 and cached.json()["status"] == "completed"
    accepted = len(ids) + 1
    after = (await client.get("/metrics")).text
    delta = {s: counted(after, s) - counted(before, s) for s in samples}
    assert delta == {
        'jobs_total{state="pending"}': accepted,
        'jobs_total{state="completed"}': accepted,
        'jobs_total{state="failed"}': 0,
        'analysis_inference_seconds_count{analyzer="contour-jobs"}': distinct,
        'analysis_queue_wait_seconds_count{analyzer="contour-jobs"}': distinct,
    }
