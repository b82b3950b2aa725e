"""Seed 004 contour jobs through HTTP: submit, poll, restart, and every bad input."""

from __future__ import annotations

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
            "invalid_segmentation_map",
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
