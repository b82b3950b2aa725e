"""app.services.analysis.classify: seed 000's classify use case, through the service with real
stores: the model checked before anything is stored, the image stored then classified, and
the compensating delete when the classification fails."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from app.analyzers.base import ImageSource
from app.composition import ServiceContainer
from app.core.errors import ImageNotFound, ModelFailed, UnknownModel
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL as ANYONE
from app.services.analysis.classify import ClassifyInput, UploadedImage
from app.services.analysis.service import AnalysisOutcome
from tests.factories import jpeg_bytes
from tests.services.conftest import running

BOUNDARY = "b0undary"


class FakeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = 5
    model: str | None = None


class FakeResult(BaseModel):
    top_k: int


class FakeClassifier:
    """A `classify` analyzer with one extra model, `other`; fails while `failing` is set."""

    name: ClassVar[str] = "classify"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "test"
    params_model: ClassVar[type[BaseModel]] = FakeParams
    result_model: ClassVar[type[BaseModel]] = FakeResult
    model_backed: ClassVar[bool] = False

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.calls = 0

    def version_for(self, params: BaseModel) -> str:
        assert isinstance(params, FakeParams)
        if params.model not in (None, "other"):
            raise UnknownModel(f"Unknown model {params.model!r}")
        return f"1-{params.model}"

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        assert isinstance(params, FakeParams)
        self.calls += 1
        if self.failing.is_set():
            raise ModelFailed()
        return FakeResult(top_k=params.top_k)


def images(services: ServiceContainer) -> list[str]:
    """The ids of the images stored on disk."""
    return [p.stem for p in services.images.store.root.iterdir() if not p.name.startswith(".")]


def multipart(data: bytes) -> tuple[str, bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={BOUNDARY}", head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(data: bytes, top_k: int = 5, model: str | None = None) -> ClassifyInput:
    content_type, body = multipart(data)

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return UploadedImage(content_type, len(body), chunks(), top_k, model)


async def test_an_upload_is_stored_and_classified(settings) -> None:
    classifier = FakeClassifier()
    async with running(settings, classifier) as services:

        async def receive() -> ClassifyInput:
            return upload(jpeg_bytes(), top_k=3)

        done = await services.classify.classify(ANYONE, None, receive)
        assert done.source == "image" and not done.outcome.cached
        body = json.loads(done.outcome.body)
        assert body["top_k"] == 3 and body["image_id"] == done.metadata.image_id
        assert (await services.images.metadata(done.metadata.image_id, ANYONE)).width == 64


async def test_a_failed_classification_deletes_the_image_it_stored(settings) -> None:
    classifier = FakeClassifier()
    classifier.failing.set()
    async with running(settings, classifier) as services:
        stored: list[str] = []

        async def receive() -> ClassifyInput:
            return upload(jpeg_bytes())

        async def guard(work: Awaitable[AnalysisOutcome]) -> AnalysisOutcome:
            # what the route wraps the analysis in: by then the image is stored
            stored.extend(images(services))
            return await work

        with pytest.raises(ModelFailed):
            await services.classify.classify(ANYONE, None, receive, guard)
        assert classifier.calls == 1 and len(stored) == 1  # it was stored, then classified
        assert images(services) == []
        with pytest.raises(ImageNotFound):
            await services.images.metadata(stored[0], ANYONE)


async def test_an_unknown_model_is_refused_before_the_body_is_read(settings) -> None:
    async with running(settings, FakeClassifier()) as services:

        async def receive() -> ClassifyInput:
            raise AssertionError("the body must not be read")

        with pytest.raises(UnknownModel):
            await services.classify.classify(ANYONE, "nope", receive)


async def test_the_model_named_in_the_body_is_checked_too(settings) -> None:
    classifier = FakeClassifier()
    async with running(settings, classifier) as services:

        async def receive() -> ClassifyInput:
            return upload(jpeg_bytes(), model="nope")

        with pytest.raises(UnknownModel):
            await services.classify.classify(ANYONE, None, receive)
        assert classifier.calls == 0 and images(services) == []
