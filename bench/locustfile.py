"""Locust users for bench/load.py: a closed-loop mix against one service (FastHttpUser: the
client's own cost per request stays small next to the server's).

Environment: BENCH_HIT_ID (an image whose skin analysis is cached), BENCH_SMALL (a 100 KB
JPEG), BENCH_PHOTOS (a directory of 0.3-1 MB JPEGs, made distinct per request).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import FastHttpUser, constant, task

SHED = {429, 503}
HIT_ID = os.environ.get("BENCH_HIT_ID", "")
SMALL = Path(os.environ["BENCH_SMALL"]).read_bytes() if "BENCH_SMALL" in os.environ else b""
PHOTOS = [p.read_bytes() for p in sorted(Path(os.environ.get("BENCH_PHOTOS", ".")).glob("*.jpg"))]
COUNTER = itertools.count()


def check(response, expect: int) -> None:  # noqa: ANN001 (locust's response type)
    if response.status_code in SHED:
        response.failure("shed")
    elif response.status_code != expect:
        response.failure(f"status {response.status_code}")
    else:
        response.success()


class ServiceUser(FastHttpUser):
    wait_time = constant(0)

    def upload(self, body: bytes, name: str) -> str | None:
        with self.client.post(
            "/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")}, name=name, catch_response=True
        ) as response:
            check(response, 201)
            return response.json()["image_id"] if response.status_code == 201 else None

    def analyze(self, image_id: str, analyzer: str, name: str) -> None:
        with self.client.post(
            "/api/v1/analyze",
            json={"image_id": image_id, "analyzer": analyzer},
            name=name,
            catch_response=True,
        ) as response:
            check(response, 200)

    @task(45)
    def hit(self) -> None:
        self.analyze(HIT_ID, "skin", "analyze hit")

    @task(20)
    def small_upload(self) -> None:
        self.upload(SMALL, "upload 100 KB")

    @task(15)
    def miss(self) -> None:
        image_id = self.upload(SMALL + next(COUNTER).to_bytes(4, "big"), "upload (for a miss)")
        if image_id:
            self.analyze(image_id, "skin", "analyze miss (skin)")

    @task(15)
    def classify(self) -> None:
        n = next(COUNTER)
        image_id = self.upload(PHOTOS[n % len(PHOTOS)] + n.to_bytes(4, "big"), "upload (for classify)")
        if image_id:
            self.analyze(image_id, "classify", "analyze miss (classify)")

    @task(5)
    def read(self) -> None:
        with self.client.get(f"/api/v1/images/{HIT_ID}", name="metadata", catch_response=True) as response:
            check(response, 200)
