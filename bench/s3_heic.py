"""HEIC on object storage (issue 17): a model-backed analysis of a 12 MP HEIC on an S3-backed
service, through its rendition object, against the same service decoding the HEIC on every
analysis (`RENDITION_FORMATS=`, what object storage did before) and against the same picture
uploaded as JPEG, in the same rounds.

Two uvicorn services (bench/harness.py), each with `STORAGE_URL` on its own prefix of one
SeaweedFS bucket (TEST_S3_* if set, else a `weed mini` started here) and its own DATA_DIR.
Each round uploads the JPEG and the HEIC afresh to both (every analysis is a cache MISS) and
times `face` on each: wall ms and the server's CPU ms (/proc, all threads). The rendition is
made after the upload answers; the round waits for it first (a 64 px preview, which waits for
the rendition being made), and reports the server CPU of upload + rendition + preview apart.
Perceptual reuse is off (every analysis computes).

    .venv/bin/python bench/s3_heic.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import harness as h
import httpx
from photos import face_photo
from scaleout import s3_options

sys.path.insert(0, str(h.REPO_ROOT))


def heic_file() -> Path:
    """The 12 MP face photo as HEIC (x265 q80, 512 px grid tiles as a phone writes them)."""
    from PIL import Image

    from app.core.formats import enable_heif

    path = h.WORK_DIR / "face-12mp-grid512-ultrafast.heic"
    if not path.exists():
        enable_heif()
        with Image.open(face_photo()) as im:
            buf = io.BytesIO()
            im.save(buf, "HEIF", quality=80, tile_size=512, enc_params={"preset": "ultrafast"})
        path.write_bytes(buf.getvalue())
    return path


def post(client: httpx.Client, server: h.Server, body: bytes, mime: str) -> str:
    r = client.post(server.url + "/api/v1/upload", files={"file": ("photo", body, mime)})
    if r.status_code != 201:
        raise RuntimeError(f"{server.name}: upload {r.status_code}: {r.text[:300]}")
    return str(r.json()["image_id"])


def timed_face(client: httpx.Client, server: h.Server, image_id: str) -> tuple[float, float]:
    cpu = h.cpu_seconds(server.pid)
    ms, _ = h.analyze(client, server, image_id, "face", expect="MISS")
    return ms, (h.cpu_seconds(server.pid) - cpu) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jpeg, heic = face_photo().read_bytes(), heic_file().read_bytes()
    h.WORK_DIR.mkdir(exist_ok=True)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=h.WORK_DIR)))
        s3 = s3_options(stack, work)

        def env(prefix: str, **extra: str) -> dict[str, str]:
            return {
                "STORAGE_URL": f"s3://{s3['bucket']}/{prefix}",
                "S3_ENDPOINT_URL": s3["endpoint_url"],
                "S3_REGION": s3["region"],
                "AWS_ACCESS_KEY_ID": s3["access_key_id"],
                "AWS_SECRET_ACCESS_KEY": s3["secret_access_key"],
                "PERCEPTUAL_REUSE_DISTANCE": "0",
                "SCALE_OUT_CHECKS": "false",  # one host: each service its own SQLite, no Redis
                **extra,
            }

        run = uuid.uuid4().hex[:8]
        servers = {
            "rendition": stack.enter_context(h.service("rendition", work, **env(f"bench-{run}-r"))),
            "decode": stack.enter_context(
                h.service("decode", work, **env(f"bench-{run}-d", RENDITION_FORMATS=""))
            ),
        }
        client = stack.enter_context(httpx.Client(timeout=300))
        samples: dict[str, list[tuple[float, float]]] = {}
        made: list[float] = []
        for round_ in range(args.rounds + 1):  # round 0 warms the models up, not counted
            for name, server in servers.items():
                for kind, body, mime in (("JPEG", jpeg, "image/jpeg"), ("HEIC", heic, "image/heic")):
                    cpu = h.cpu_seconds(server.pid)
                    image_id = post(client, server, body, mime)
                    if kind == "HEIC" and name == "rendition":
                        wait_for_rendition(client, server, image_id)
                        if round_:
                            made.append((h.cpu_seconds(server.pid) - cpu) * 1000)
                    sample = timed_face(client, server, image_id)
                    if round_:
                        samples.setdefault(f"{name}: {kind}", []).append(sample)
            h.log(f"round {round_} done")
        rows = []
        for case, values in samples.items():
            base = statistics.median(c for _, c in samples[f"{case.split(':')[0]}: JPEG"])
            cpu = statistics.median(c for _, c in values)
            rows.append(
                {
                    "case": f"face, {case}",
                    "wall_ms": statistics.median(w for w, _ in values),
                    "cpu_ms": cpu,
                    "cpu_vs_jpeg": cpu / base,
                }
            )
        rows.append(
            {
                "case": "HEIC upload + its rendition + a 64 px preview (rendition server)",
                "cpu_ms": statistics.median(made),
            }
        )
        print(f"load average {os.getloadavg()[0]:.2f}; {len(jpeg)} B JPEG, {len(heic)} B HEIC")
        h.report(h.WORK_DIR / "s3_heic.json", rows, {"rounds": args.rounds})
    return 0


def wait_for_rendition(client: httpx.Client, server: h.Server, image_id: str) -> None:
    """Until the service's rendition of `image_id` is stored: a preview is rendered from it,
    so a 200 preview means it is there (bounded: 300 s)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # the upload's background rendition is on the analysis lane; a preview waits for it
        r = client.get(f"{server.url}/api/v1/images/{image_id}/preview", params={"width": 64})
        if r.status_code == 200:
            return
        time.sleep(0.2)
    raise RuntimeError("no rendition within 300 s")


if __name__ == "__main__":
    h.run_cli(main)
