"""Three replicas in scale-out mode, no shared disk, nginx in front (tests/scaleout/cluster.py).

Requests go through nginx or straight to one replica; every answer must be the same whichever
replica gives it. One cluster for the module (replicas take seconds to start).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import jpeg_bytes, photo_jpeg
from tests.scaleout.cluster import Cluster, fetch, start_cluster

pytestmark = pytest.mark.slow

UPLOAD = "/api/v1/upload"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: dict[str, Any]) -> Iterator[Cluster]:
    with start_cluster(tmp_path_factory.mktemp("scaleout"), s3_server, INITIAL_CREDITS="5") as started:
        yield started


def files(body: bytes, name: str = "p.jpg") -> dict[str, Any]:
    return {"file": (name, body, "image/jpeg")}


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    """A new user's bearer header (registered and logged in through `client`)."""
    body = {"username": f"u{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    login = await client.post("/api/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_idempotency_keys_make_one_image_each_across_replicas(cluster: Cluster) -> None:
    photo = photo_jpeg()
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in cluster.urls]
    try:
        count = "SELECT count(*) AS n FROM images"
        before = (await fetch(cluster.database_url, count))[0]["n"]
        keys = [f"key-{uuid.uuid4().hex}" for _ in range(20)]
        sends = [(key, clients[i % 3]) for key in keys for i in range(4)]
        answers = await asyncio.gather(
            *(c.post(UPLOAD, files=files(photo), headers={"Idempotency-Key": k}) for k, c in sends)
        )
        ids: dict[str, set[str]] = {key: set() for key in keys}
        for (key, _), answer in zip(sends, answers, strict=True):
            if answer.status_code == 409:
                assert answer.json()["code"] == "idempotency_key_in_use"
                continue
            assert answer.status_code == 201, answer.text
            ids[key].add(answer.json()["image_id"])
        assert all(len(found) == 1 for found in ids.values()), ids
        created = {next(iter(found)) for found in ids.values()}
        assert len(created) == 20
        assert (await fetch(cluster.database_url, count))[0]["n"] - before == 20  # no other image
        # A later retry, on each replica, replays the same image
        for key in keys:
            for client in clients:
                again = await client.post(UPLOAD, files=files(photo), headers={"Idempotency-Key": key})
                assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
                assert {again.json()["image_id"]} == ids[key]
    finally:
        for client in clients:
            await client.aclose()


async def test_an_upload_is_served_and_analyzed_identically_by_every_replica(cluster: Cluster) -> None:
    a, b, c = (httpx.AsyncClient(base_url=url, timeout=60) for url in cluster.urls)
    try:
        photo = photo_jpeg()
        up = await a.post(UPLOAD, files=files(photo))
        assert up.status_code == 201, up.text
        image_id = up.json()["image_id"]
        for path in (f"/api/v1/images/{image_id}", f"/api/v1/images/{image_id}/content"):
            bodies = [await r.get(path) for r in (b, c, a)]
            assert [r.status_code for r in bodies] == [200, 200, 200]
            assert len({r.content for r in bodies}) == 1
        assert bodies[0].content == photo
        for analyzer in ("skin", "classify"):
            request = {"image_id": image_id, "analyzer": analyzer}
            answers = [await r.post("/api/v1/analyze", json=request) for r in (b, c, a, b)]
            assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
            assert len({r.content for r in answers}) == 1
    finally:
        for client in (a, b, c):
            await client.aclose()


async def test_fifty_concurrent_first_analyses_give_one_answer(cluster: Cluster, capsys: Any) -> None:
    clients = [
        httpx.AsyncClient(base_url=url, timeout=120) for url in [cluster.nginx.base_url, *cluster.urls]
    ]
    try:
        up = await clients[0].post(UPLOAD, files=files(jpeg_bytes(color=(1, 2, 3))))
        image_id = up.json()["image_id"]
        before = cluster.metric("analyses_total", analyzer="classify", outcome="computed")
        request = {"image_id": image_id, "analyzer": "classify"}
        answers = await asyncio.gather(
            *(c.post("/api/v1/analyze", json=request) for c in itertools.islice(itertools.cycle(clients), 50))
        )
        assert {r.status_code for r in answers} == {200}, {r.text for r in answers}
        assert len({r.content for r in answers}) == 1
        computed = cluster.metric("analyses_total", analyzer="classify", outcome="computed") - before
        # Single-flight is per process: at most one computation per replica, at least one
        assert 1 <= computed <= 3
        with capsys.disabled():
            print(f"\n50 concurrent first classify analyses over 3 replicas: {computed:.0f} computation(s)")
    finally:
        for client in clients:
            await client.aclose()


async def test_credits_are_charged_once_and_never_overdrawn(cluster: Cluster) -> None:
    clients = [httpx.AsyncClient(base_url=url, timeout=120) for url in cluster.urls]
    try:
        user = await register(clients[0])
        up = await clients[1].post(UPLOAD, files=files(jpeg_bytes(color=(9, 9, 9))), headers=user)
        request = {"image_id": up.json()["image_id"], "analyzer": "classify"}
        answers = await asyncio.gather(
            *(clients[i % 3].post("/api/v1/analyze", json=request, headers=user) for i in range(10))
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        for client in clients:
            assert (await client.get("/v1/me", headers=user)).json()["credits"] == 4

        other = await register(clients[2])
        ids = []
        for i in range(10):
            image = jpeg_bytes(color=(40 + 20 * i, 80, 120))
            ids.append(
                (await clients[i % 3].post(UPLOAD, files=files(image), headers=other)).json()["image_id"]
            )
        answers = await asyncio.gather(
            *(
                clients[i % 3].post(
                    "/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"}, headers=other
                )
                for i, image_id in enumerate(ids)
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 5 + [402] * 5, [r.text for r in answers]
        assert {r.json()["code"] for r in answers if r.status_code == 402} == {"insufficient_credits"}
        balance = (await clients[0].get("/v1/me", headers=other)).json()["credits"]
        assert balance == 0
        for user_header, expected in ((user, 4), (other, 0)):
            me = (await clients[1].get("/v1/me", headers=user_header)).json()
            rows = await fetch(
                cluster.database_url,
                "SELECT u.credits, (SELECT sum(delta) FROM credit_ledger l WHERE l.user_id = u.id) AS total"
                " FROM users u WHERE u.username = $1",
                me["username"],
            )
            assert [(r["credits"], r["total"]) for r in rows] == [(expected, expected)]
    finally:
        for client in clients:
            await client.aclose()


async def test_a_delete_through_one_replica_is_404_through_the_others_at_once(cluster: Cluster) -> None:
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in cluster.urls]
    try:
        a, b, c = clients
        image_id = (await a.post(UPLOAD, files=files(photo_jpeg()))).json()["image_id"]
        for r in (b, c):  # results and content cached on the other replicas first
            assert (await r.post("/api/v1/analyze", json={"image_id": image_id})).status_code == 200
            assert (await r.get(f"/api/v1/images/{image_id}/content")).status_code == 200
        assert (await a.delete(f"/api/v1/images/{image_id}")).status_code == 204
        for r in (b, c):
            assert (await r.get(f"/api/v1/images/{image_id}")).status_code == 404
            assert (await r.get(f"/api/v1/images/{image_id}/content")).status_code == 404
            assert (await r.post("/api/v1/analyze", json={"image_id": image_id})).status_code == 404
    finally:
        for client in clients:
            await client.aclose()
