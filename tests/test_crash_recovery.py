"""SIGKILL a real server mid-upload, restart it on the same data dir, check nothing is corrupt.

A first uvicorn process takes completed uploads and analyses, then a storm of concurrent
ones: big JPEGs at full speed, analyses, and raw-socket clients that send half a body and
stall (so partial temp files are guaranteed to be on disk). It is killed with SIGKILL.
Then, on disk: every image in the catalog (the SQLite database) decodes and matches its
SHA-256, every analysis parses. A second process on the same `DATA_DIR` must sweep every
temp file and every stale file without a catalog row at start-up, serve every upload
acknowledged before the kill, give byte-identical analyses, and take fresh work.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.storage.atomic import TEMP_PREFIX
from tests.conftest import files_under
from tests.factories import encode, jpeg_bytes, photo_jpeg, photo_png
from tests.processes import Server, start_server

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "crash-test-boundary-0d9f8e7a"
IMAGE_EXTENSIONS = {".jpg", ".png"}


# ---------------------------------------------------------------------------------------------
# Payloads and clients
# ---------------------------------------------------------------------------------------------


def noisy_jpeg(approx_bytes: int, seed: int) -> bytes:
    """A photo-like JPEG of roughly `approx_bytes` (smooth gradient + noise), decodable in full."""
    rng = np.random.default_rng(seed)
    side = int((approx_bytes / 0.68) ** 0.5)
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.stack([(xx * 255 // side), (yy * 255 // side), ((xx + yy) * 127 // side)], axis=-1)
    noise = rng.integers(-60, 60, (side, side, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=92)


def multipart_body(payload: bytes, filename: str = "photo.jpg", mime: str = "image/jpeg") -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def stalled_upload(
    port: int, payload: bytes, sent_fraction: float, idempotency_key: str | None
) -> socket.socket:
    """A raw HTTP/1.1 upload that sends only part of its body, then stalls (socket kept open)."""
    body = multipart_body(payload, filename="stalled.jpg")
    head = (
        f"POST /api/v1/upload HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + (f"Idempotency-Key: {idempotency_key}\r\n" if idempotency_key else "")
        + "\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(head)
    cut = int(len(body) * sent_fraction)
    # In pieces, with pauses, like a slow mobile client.
    for start in range(0, cut, 64 * 1024):
        sock.sendall(body[start : min(cut, start + 64 * 1024)])
        time.sleep(0.005)
    return sock


def temp_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob(f"{TEMP_PREFIX}*") if p.is_file())


def partial_uploads(data_dir: Path) -> list[Path]:
    """Non-empty temp files in images/ (upload bodies being received); they come and go."""
    found = []
    for path in temp_files(data_dir):
        with contextlib.suppress(FileNotFoundError):
            if path.parent.name == "images" and path.stat().st_size > 0:
                found.append(path)
    return found


def upload(client: httpx.Client, payload: bytes, filename: str, **headers: str) -> httpx.Response:
    return client.post(
        "/api/v1/upload",
        content=multipart_body(payload, filename=filename),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers},
    )


def analyze(client: httpx.Client, image_id: str) -> httpx.Response:
    return client.post("/api/v1/analyze", json={"image_id": image_id})


class Storm:
    """Background uploads and analyses until `stop`; records what was acknowledged."""

    def __init__(self, base_url: str, payloads: list[bytes], known_ids: list[str]) -> None:
        self.base_url = base_url
        self.payloads = payloads
        self.known_ids = list(known_ids)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.uploaded: dict[str, dict[str, object]] = {}  # image_id -> 201 body
        self.analyses: dict[str, bytes] = {}  # image_id -> 200 body
        self.unexpected: list[str] = []
        self.started_uploads = 0
        self.threads: list[threading.Thread] = []

    def start(self, uploaders: int, analysts: int) -> None:
        for i in range(uploaders):
            self.threads.append(threading.Thread(target=self._uploader, args=(i,), daemon=True))
        for i in range(analysts):
            self.threads.append(threading.Thread(target=self._analyst, args=(i,), daemon=True))
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)

    def _uploader(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            n = index
            while not self.stop.is_set():
                payload = self.payloads[n % len(self.payloads)]
                n += 1
                with self.lock:
                    self.started_uploads += 1
                try:
                    response = upload(client, payload, f"storm-{index}-{n}.jpg")
                except httpx.HTTPError:
                    continue  # the server died under us
                if response.status_code == 201:
                    body = response.json()
                    with self.lock:
                        self.uploaded[body["image_id"]] = body
                        self.known_ids.append(body["image_id"])
                else:
                    self.unexpected.append(f"upload {response.status_code} {response.text[:200]}")

    def _analyst(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            n = index
            while not self.stop.is_set():
                with self.lock:
                    image_id = self.known_ids[n % len(self.known_ids)]
                n += 1
                try:
                    response = analyze(client, image_id)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    with self.lock:
                        previous = self.analyses.setdefault(image_id, response.content)
                    if previous != response.content:
                        self.unexpected.append(f"analysis of {image_id} changed between calls")
                else:
                    self.unexpected.append(f"analyze {response.status_code} {response.text[:200]}")
                time.sleep(0.002)


# ---------------------------------------------------------------------------------------------
# On-disk invariants
# ---------------------------------------------------------------------------------------------


def catalog(data_dir: Path) -> list[dict[str, object]]:
    """The catalog rows, read straight from the database (as a crashed process left it)."""
    with contextlib.closing(sqlite3.connect(data_dir / "service.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM images ORDER BY image_id")]


def idempotency_claims(data_dir: Path) -> list[str]:
    """The key hashes of Idempotency-Key claims held (in flight) in the database."""
    with contextlib.closing(sqlite3.connect(data_dir / "service.db")) as db:
        sql = "SELECT key_hash FROM idempotency_keys WHERE claimed_until IS NOT NULL"
        return [str(row[0]) for row in db.execute(sql)]


def check_published_images(data_dir: Path) -> dict[str, dict[str, object]]:
    """Every image in the catalog decodes in full and matches its SHA-256; returns id -> row."""
    images_dir = data_dir / "images"
    published: dict[str, dict[str, object]] = {}
    for meta in catalog(data_dir):
        image_id = str(meta["image_id"])
        extension = {"jpeg": ".jpg", "png": ".png"}[str(meta["format"])]
        content = (images_dir / image_id).with_suffix(extension).read_bytes()
        assert len(content) == meta["size_bytes"], image_id
        assert hashlib.sha256(content).hexdigest() == meta["sha256"], f"{image_id}: bytes do not match"
        with Image.open(io.BytesIO(content)) as im:
            im.load()  # a full decode: raises on a truncated or corrupt file
            assert im.size == (meta["width"], meta["height"])
        published[image_id] = meta
    return published


def check_analyses_parse(data_dir: Path) -> None:
    for path in sorted((data_dir / "analysis").glob("*.json")):
        body = json.loads(path.read_bytes())
        assert isinstance(body, dict) and "image_id" in body, path.name


def images_without_metadata(data_dir: Path) -> list[str]:
    """Image files that no catalog row names (invisible to every client)."""
    known = {str(row["image_id"]) for row in catalog(data_dir)}
    return sorted(
        p.name
        for p in (data_dir / "images").iterdir()
        if p.suffix in IMAGE_EXTENSIONS and p.stem not in known
    )


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------


def test_sigkill_mid_upload_then_restart_recovers(servers: list[Server], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    big = [noisy_jpeg(size, seed) for seed, size in enumerate((1_200_000, 2_000_000, 3_000_000, 4_000_000))]
    assert all(1_000_000 < len(b) < 5 * 1024 * 1024 for b in big), [len(b) for b in big]

    # A claim is a lease (no pid): a crashed request's key is free again once it runs out.
    lease = {"IDEMPOTENCY_LEASE_SECONDS": "3"}
    first = start_server(servers, data_dir, "first", lease)

    # 1. Completed work before the storm: uploads (one with an Idempotency-Key) and analyses.
    acknowledged: dict[str, dict[str, object]] = {}
    analyses_before: dict[str, bytes] = {}
    with httpx.Client(base_url=first.base_url, timeout=10) as client:
        for i, payload in enumerate([photo_jpeg(), photo_png(), jpeg_bytes(), big[0]]):
            mime = "image/png" if payload.startswith(b"\x89PNG") else "image/jpeg"
            response = client.post("/api/v1/upload", files={"file": (f"done-{i}", payload, mime)})
            assert response.status_code == 201, response.text
            acknowledged[response.json()["image_id"]] = response.json()
        keyed = upload(client, big[1], "keyed.jpg", **{"Idempotency-Key": "crash-done-key"})
        assert keyed.status_code == 201, keyed.text
        acknowledged[keyed.json()["image_id"]] = keyed.json()
        for image_id in acknowledged:
            response = analyze(client, image_id)
            assert response.status_code == 200, response.text
            analyses_before[image_id] = response.content

    # 2. The storm: stalled raw-socket uploads (partial temp files guaranteed), full-speed
    #    big uploads and analyses, all at once.
    stalled: list[socket.socket] = []
    storm = Storm(first.base_url, big, list(acknowledged))
    try:
        for i in range(4):
            key = "crash-stalled-key" if i == 0 else None
            stalled.append(stalled_upload(first.port, big[i % len(big)], 0.3 + 0.15 * i, key))
        storm.start(uploaders=6, analysts=3)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(partial_uploads(data_dir)) >= len(stalled) and len(storm.uploaded) >= 3 and storm.analyses:
                break
            time.sleep(0.02)
        time.sleep(0.3)  # let the storm get well into its next bodies

        at_kill = partial_uploads(data_dir)
        claims_at_kill = idempotency_claims(data_dir)
        first.kill()
    finally:
        storm.join()
        for sock in stalled:
            sock.close()

    # The kill really interrupted uploads half-way: partial temp files are on disk.
    assert len(at_kill) >= len(stalled), (at_kill, first.logs())
    assert claims_at_kill, "the stalled keyed upload held no Idempotency-Key claim at kill time"
    assert storm.uploaded, f"no upload completed during the storm:\n{first.logs()}"
    assert not storm.unexpected, storm.unexpected[:5]
    acknowledged.update(storm.uploaded)
    for image_id, body in storm.analyses.items():
        analyses_before.setdefault(image_id, body)
        assert analyses_before[image_id] == body

    # 3. On disk after the crash: no partial file under a final name.
    published = check_published_images(data_dir)
    assert set(acknowledged) <= set(published), sorted(set(acknowledged) - set(published))
    check_analyses_parse(data_dir)
    # A crash between the rename of the bytes and the commit of the catalog row leaves bytes
    # nobody can see (the client never got a 201): plant a stale one (the window is too small
    # to hit with a real kill) for start-up to remove, and a recent one for it to leave alone
    # (a live sibling worker could still be committing it); neither is ever visible.
    stale = data_dir / "images" / f"{uuid.uuid4()}.jpg"
    stale.write_bytes(jpeg_bytes())
    old = time.time() - 3600
    os.utime(stale, (old, old))
    broken = data_dir / "images" / f"{uuid.uuid4()}.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")

    # 4. Restart on the same data dir.
    second = start_server(servers, data_dir, "second", lease)
    leftovers = temp_files(data_dir)
    assert leftovers == [], leftovers
    # The kill itself may have caught uploads between their rename and their commit: those
    # stay on disk (recent) but are never visible, and none of them was acknowledged.
    unlisted = images_without_metadata(data_dir)
    assert broken.name in unlisted
    assert not {Path(name).stem for name in unlisted} & set(acknowledged)
    assert not stale.exists()
    # Nothing acknowledged was dropped, nothing unacknowledged was published.
    assert check_published_images(data_dir).keys() == published.keys()

    with httpx.Client(base_url=second.base_url, timeout=10) as client:
        for image_id, body in acknowledged.items():
            response = client.get(f"/api/v1/images/{image_id}")
            assert response.status_code == 200, (image_id, response.text)
            assert response.json() == body
            content = client.get(f"/api/v1/images/{image_id}/content")
            assert content.status_code == 200
            assert hashlib.sha256(content.content).hexdigest() == body["sha256"]
            analysis = analyze(client, image_id)
            assert analysis.status_code == 200, analysis.text
            if image_id in analyses_before:
                assert analysis.content == analyses_before[image_id], image_id
            # And stable from now on.
            assert analyze(client, image_id).content == analysis.content
        for name in [stale.name, *unlisted]:
            assert client.get(f"/api/v1/images/{Path(name).stem}").status_code == 404, name

        # The completed keyed upload replays; the key whose request died is usable again.
        replay = upload(client, big[1], "keyed.jpg", **{"Idempotency-Key": "crash-done-key"})
        assert replay.status_code == 201, replay.text
        assert replay.json() == keyed.json()
        deadline = time.monotonic() + 30  # 409 until the dead request's lease runs out
        while True:
            retried = upload(client, big[0], "stalled.jpg", **{"Idempotency-Key": "crash-stalled-key"})
            if retried.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert retried.status_code == 201, retried.text
        assert idempotency_claims(data_dir) == []

        # Fresh work.
        fresh = upload(client, big[2], "fresh.jpg")
        assert fresh.status_code == 201, fresh.text
        fresh_id = fresh.json()["image_id"]
        first_analysis = analyze(client, fresh_id)
        assert first_analysis.status_code == 200, first_analysis.text
        assert analyze(client, fresh_id).content == first_analysis.content

    # The restarted server's own work left everything consistent too.
    assert temp_files(data_dir) == []
    assert images_without_metadata(data_dir) == unlisted
    check_published_images(data_dir)
    check_analyses_parse(data_dir)
    assert all(not name.startswith(TEMP_PREFIX) for name in files_under(data_dir))
