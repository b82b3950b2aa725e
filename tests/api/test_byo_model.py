"""Bring your own model through HTTP: MODEL_PATH swaps the classifier, MODELS adds named ones
(the `model` param), a swapped model never serves an old result, and a model that does not
fit fails readiness while everything else keeps working.

The models are small real ONNX classifiers (tests/tiny_models.py): the brightest channel wins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app.analyzers.registry import build_registry
from app.analyzers.settings import AnalyzerSettings
from app.core.config import Settings  # noqa: F401  (make_settings builds them)
from tests.conftest import files_under, serve
from tests.factories import encode
from tests.tiny_models import labels_file, tiny_classifier

RGB = ["red", "green", "blue"]
ROTATED = np.roll(np.eye(3, dtype=np.float32), 1, axis=1)  # red channel -> class 1, green -> 2, blue -> 0


def red_png() -> bytes:
    return encode(Image.new("RGB", (64, 48), (230, 20, 10)), "PNG")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """The default model of these tests with its labels beside it."""
    models = tmp_path / "models"
    models.mkdir()
    labels_file(models / "tiny.labels.txt", RGB)
    return tiny_classifier(models / "tiny.onnx")


def app_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(analyzers=["classify"], **overrides)


async def upload(client: httpx.AsyncClient) -> str:
    resp = await client.post("/api/v1/upload", files={"file": ("red.png", red_png(), "image/png")})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


async def classify(client: httpx.AsyncClient, image_id: str, **params: Any) -> httpx.Response:
    body = {"image_id": image_id, "analyzer": "classify", "params": params}
    return await client.post("/api/v1/analyze", json=body)


async def test_model_path_and_labels_replace_the_classifier(
    make_settings, tiny: Path, tmp_path: Path
) -> None:
    labels = labels_file(tmp_path / "names.txt", ["rouge", "vert", "bleu"])  # MODEL_LABELS wins
    settings = app_settings(make_settings, model_path=tiny, model_labels=labels)
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        assert (await c.get("/readyz")).status_code == 200
        resp = await c.post("/v1/classify?top_k=2", files={"file": ("r.png", red_png(), "image/png")})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert [p["label"] for p in body["predictions"]] == ["rouge", "vert"]
        assert body["analyzer_version"] == sha256(tiny) and body["params"] == {"top_k": 2}
        rows = {row["name"]: row for row in (await c.get("/api/v1/analyzers")).json()}
        assert rows["classify"]["version"] == sha256(tiny)


async def test_a_swapped_model_never_serves_the_old_result(make_settings, tiny: Path, data_dir: Path) -> None:
    settings = app_settings(make_settings, model_path=tiny)
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        image_id = await upload(c)
        first = await classify(c, image_id)
        assert first.headers["X-Cache"] == "MISS" and first.json()["predictions"][0]["label"] == "red"
        assert (await classify(c, image_id)).headers["X-Cache"] == "HIT"
    old_version = sha256(tiny)
    tiny_classifier(tiny, weights=ROTATED)  # the same path, another model
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        swapped = await classify(c, image_id)
        assert swapped.status_code == 200 and swapped.headers["X-Cache"] == "MISS"
        assert swapped.json()["predictions"][0]["label"] == "green"
        assert swapped.json()["analyzer_version"] == sha256(tiny) != old_version
        again = await classify(c, image_id)
        assert again.headers["X-Cache"] == "HIT" and again.content == swapped.content
    assert (data_dir / "analysis" / image_id / "classify.json").read_bytes() == swapped.content


async def test_named_models_are_picked_by_the_model_param(
    make_settings, tiny: Path, tmp_path: Path, data_dir: Path
) -> None:
    rotated = tiny_classifier(tmp_path / "models" / "rotated.onnx", weights=ROTATED)
    labels_file(tmp_path / "models" / "rotated.labels.txt", RGB)
    settings = app_settings(make_settings, model_path=tiny, models=f"rot={rotated}")
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        assert (await c.get("/readyz")).status_code == 200
        image_id = await upload(c)
        default = await classify(c, image_id)
        named = await classify(c, image_id, model="rot")
        assert default.status_code == named.status_code == 200, named.text
        assert default.json()["predictions"][0]["label"] == "red"
        assert named.json()["predictions"][0]["label"] == "green"
        assert named.json()["analyzer_version"] == sha256(rotated) != default.json()["analyzer_version"]
        assert named.json()["params"] == {"top_k": 5, "model": "rot"}
        explicit = await classify(c, image_id, model="default")
        assert explicit.headers["X-Cache"] == "HIT" and explicit.content == default.content
        stored = files_under(data_dir / "analysis" / image_id)
        assert "classify.json" in stored and len(stored) == 2
        one_step = await c.post("/v1/classify?model=rot", files={"file": ("r.png", red_png(), "image/png")})
        assert one_step.status_code == 200 and one_step.json()["predictions"][0]["label"] == "green"


async def test_unknown_model_is_400_and_stores_nothing(make_settings, tiny: Path, data_dir: Path) -> None:
    settings = app_settings(make_settings, model_path=tiny)
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        image_id = await upload(c)
        before = files_under(data_dir / "images")
        resp = await classify(c, image_id, model="nope")
        assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "unknown_model" and resp.json()["available"] == ["default"]
        assert "Unknown model 'nope'" in resp.json()["detail"]
        upload_resp = await c.post(
            "/v1/classify?model=nope", files={"file": ("r.png", red_png(), "image/png")}
        )
        assert upload_resp.status_code == 400 and upload_resp.json()["code"] == "unknown_model"
        by_url = await c.post("/v1/classify", json={"url": "http://example.invalid/x.jpg", "model": "nope"})
        assert by_url.status_code == 400 and by_url.json()["code"] == "unknown_model"
        assert files_under(data_dir / "images") == before
        assert files_under(data_dir / "analysis") == []


async def test_a_model_that_does_not_fit_fails_readiness_and_nothing_else(
    make_settings, tiny: Path, tmp_path: Path
) -> None:
    bad = tiny_classifier(tmp_path / "two-inputs.onnx", second_input=True)
    settings = make_settings(analyzers=["classify", "face"], model_path=tiny, models=f"bad={bad}")
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        check = {row["name"]: row for row in ready.json()["checks"]}["analyzers_loaded"]
        assert not check["ok"] and f"classify:bad ({bad} does not fit: it has 2 inputs" in check["detail"]
        image_id = await upload(c)
        assert (await c.post("/analyze", json={"image_id": image_id})).status_code == 200  # skin
        face = await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "face"})
        assert face.status_code == 422 and face.json()["code"] == "no_face_detected"  # face still runs
        assert (await classify(c, image_id)).status_code == 200
        resp = await classify(c, image_id, model="bad")
        assert resp.status_code == 503 and resp.json()["code"] == "model_unavailable"
        assert "does not fit: it has 2 inputs" in resp.json()["detail"]
        rows = {row["name"]: row for row in (await c.get("/api/v1/analyzers")).json()}
        assert rows["classify"]["available"] and not rows["classify:bad"]["available"]


@pytest.mark.parametrize("problem", ["labels", "missing"])
async def test_a_default_model_that_does_not_fit(
    make_settings, tiny: Path, tmp_path: Path, problem: str
) -> None:
    path = tiny if problem == "labels" else tmp_path / "gone.onnx"
    labels = labels_file(tmp_path / "four.txt", [*RGB, "black"])
    settings = app_settings(make_settings, model_path=path, model_labels=labels)
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        why = "3] for one image: 4 class scores" if problem == "labels" else f"model file {path} not found"
        assert why in json.dumps(ready.json())
        image_id = await upload(c)
        assert (await c.post("/analyze", json={"image_id": image_id})).status_code == 200
        resp = await classify(c, image_id)
        assert resp.status_code == 503 and resp.json()["code"] == "analyzer_unavailable"
        assert why in resp.json()["detail"]


async def test_named_models_serve_when_the_default_does_not(
    make_settings, tiny: Path, tmp_path: Path, data_dir: Path
) -> None:
    gone = tmp_path / "gone.onnx"
    settings = app_settings(make_settings, model_path=gone, models=f"tiny={tiny}")
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        assert (await c.get("/readyz")).status_code == 503
        resp = await c.post("/v1/classify", files={"file": ("r.png", red_png(), "image/png")})
        assert resp.status_code == 503 and resp.json()["code"] == "model_unavailable"
        assert f"model file {gone} not found" in resp.json()["detail"]
        assert files_under(data_dir / "images") == []  # refused before anything was stored
        named = await c.post("/v1/classify?model=tiny", files={"file": ("r.png", red_png(), "image/png")})
        assert named.status_code == 200 and named.json()["predictions"][0]["label"] == "red"
