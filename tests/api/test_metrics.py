"""Prometheus metrics: every metric the Grafana dashboard uses is exposed at /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.conftest import serve
from tests.factories import jpeg_bytes, photo_jpeg

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "image-service.json"
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "le", "or", "and", "on", "without"}


def dashboard_metrics() -> set[str]:
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", target["expr"])
            for word in re.findall(r"[a-z_][a-z0-9_]*", expr):
                if word not in PROMQL_WORDS and "_" in word:
                    names.add(word)
    return names


async def test_every_dashboard_metric_is_exposed(make_settings) -> None:
    settings = make_settings(initial_credits=3)
    async with serve(settings) as c:
        # Exercise every path that a panel watches.
        await c.post("/register", json={"username": "boss", "password": "pw-long-enough", "is_admin": True})
        await c.post("/v1/login", json={"username": "boss", "password": "wrong password"})
        token = (await c.post("/v1/login", json={"username": "boss", "password": "pw-long-enough"})).json()
        up = await c.post("/upload", files={"file": ("a.jpg", photo_jpeg())})
        image_id = up.json()["image_id"]
        await c.post("/analyze", json={"image_id": image_id})
        await c.post("/analyze", json={"image_id": image_id})
        await c.post("/v1/register", json={"username": "payer", "password": "pw-long-enough"})
        payer = (await c.post("/v1/login", json={"username": "payer", "password": "pw-long-enough"})).json()
        await c.post(
            "/v1/classify",
            files={"file": ("b.jpg", jpeg_bytes())},
            headers={"Authorization": f"Bearer {payer['access_token']}"},
        )
        await c.post("/api/v1/frontal/crop/submit", json={"image": "not base64!"})
        exposed = (await c.get("/metrics")).text
        assert token["token_type"] == "bearer"
    families = set(re.findall(r"^# TYPE (\S+)", exposed, re.M))
    samples = set(re.findall(r"^([a-z_][a-z0-9_]*)[{ ]", exposed, re.M))
    missing = set()
    for name in dashboard_metrics():
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        if name not in samples and base not in families and name not in families:
            missing.add(name)
    assert not missing, missing
    assert 'http_request_duration_seconds_count{method="POST",route="/analyze",status="200"}' in exposed


async def test_metrics_can_need_a_token_or_be_off(make_settings) -> None:
    async with serve(make_settings(metrics_token="s3cret")) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer s3cret"})).status_code == 200
    async with serve(make_settings(metrics_enabled=False)) as c:
        assert (await c.get("/metrics")).status_code == 404


def test_the_scrape_config_points_at_metrics() -> None:
    text = (DASHBOARD.parents[1] / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in text


async def test_client_sees_metrics_content_type(client: httpx.AsyncClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")


def duration_count(exposed: str, route: str, method: str, status: str) -> float:
    """`http_request_duration_seconds_count` of one route, method and status (0 when absent)."""
    labels = f'method="{method}",route="{route}",status="{status}"'
    found = re.search(rf"^http_request_duration_seconds_count\{{{re.escape(labels)}\}} (\S+)$", exposed, re.M)
    return float(found[1]) if found else 0.0


async def test_request_durations_count_every_request_by_route_method_and_status(
    client: httpx.AsyncClient,
) -> None:
    """The pipeline keeps each declared route's histogram children: every request still counts
    under its own route template, method and status (and an undeclared path under `unmatched`)."""
    watched = [
        ("/health", "GET", "200"),
        ("/health", "HEAD", "200"),
        ("/api/v1/images/{image_id}", "GET", "400"),
        ("unmatched", "GET", "404"),
    ]
    before = (await client.get("/metrics")).text
    for _ in range(3):
        assert (await client.get("/health")).status_code == 200
    assert (await client.head("/health")).status_code == 200
    for _ in range(2):
        assert (await client.get("/api/v1/images/not-a-uuid")).status_code == 400
    assert (await client.get("/no/such/path")).status_code == 404
    after = (await client.get("/metrics")).text
    added = [duration_count(after, *key) - duration_count(before, *key) for key in watched]
    assert added == [3, 1, 2, 1]
