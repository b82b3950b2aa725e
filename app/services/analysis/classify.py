"""Seed 000's classify use case: store an image (an upload or a URL download) and classify it.

Its steps, in order: the model is checked (503 before anything is stored when it is not
loaded, 400 when there is no such model); a place in the classifier's queue is reserved
before the image is read (503 with Retry-After while it is full: an upload is never a cache
hit, the image would only be stored to be deleted); the caller's credits are checked; the
image is received (the route reads the request: a URL in JSON of at most `max_json_bytes`,
or a streamed upload) and stored like
an upload; it is classified (cached per image, one credit for a computation). If the
classification fails the image is deleted again: the client never learned its id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.analyzers.registry import AnalyzerRegistry
from app.core.errors import AppError
from app.services.accounts.credits import CreditService
from app.services.accounts.principals import Principal
from app.services.analysis.service import AnalysisOutcome, AnalysisService
from app.services.images.catalog import ImageService
from app.services.images.ingest import IngestService, UploadOutcome
from app.storage.metadata import ImageMetadata

ANALYZER = "classify"


@dataclass(frozen=True)
class UrlImage:
    """An image to download (SSRF-safe) from `url`; `top_k` and `model` as the request gave them."""

    url: str
    top_k: int
    model: str | None


@dataclass(frozen=True)
class UploadedImage:
    """An image streamed in a multipart body (field `file`)."""

    content_type: str
    content_length: int | None
    chunks: AsyncIterator[bytes]
    top_k: int
    model: str | None


ClassifyInput = UrlImage | UploadedImage
Guard = Callable[[Awaitable[AnalysisOutcome]], Awaitable[AnalysisOutcome]]


async def _unguarded(work: Awaitable[AnalysisOutcome]) -> AnalysisOutcome:
    return await work


@dataclass(frozen=True)
class Classified:
    """A classification and the stored image it is of (`source`: `image` or `url`)."""

    outcome: AnalysisOutcome
    metadata: ImageMetadata
    source: str


def model_params(model: str | None) -> dict[str, Any] | None:
    """The params that pick `model` (None: the default model's, no params)."""
    return None if model is None else {"model": model}


class ClassifyImages:
    """Stores and classifies one image per call (see the module)."""

    def __init__(
        self,
        registry: AnalyzerRegistry,
        analysis: AnalysisService,
        ingest: IngestService,
        images: ImageService,
        credits: CreditService,
        max_json_bytes: int,
    ) -> None:
        self.max_json_bytes = max_json_bytes  # a URL request's JSON body (MAX_JSON_BODY_BYTES)
        self.registry = registry
        self.analysis = analysis
        self.ingest = ingest
        self.images = images
        self.credits = credits

    def check_model(self, model: str | None) -> None:
        """AnalyzerUnavailable/ModelUnavailable (503) unless `model` is loaded; UnknownModel (400)."""
        self.analysis.parse_params(self.registry.get(ANALYZER), model_params(model))

    async def classify(
        self,
        caller: Principal,
        model: str | None,
        receive: Callable[[], Awaitable[ClassifyInput]],
        guard: Guard = _unguarded,
    ) -> Classified:
        """Run the steps of the module for `caller`. `model` is the one asked for before the
        request body is read; `receive` reads the image's source (called once a queue place is
        held); `guard` wraps the analysis (the route cancels it when the client hangs up)."""
        self.check_model(model)
        with self.analysis.reserve(ANALYZER):  # a place in the queue while the image is read
            await self.credits.check(caller)
            given = await receive()
            if given.model != model:
                self.check_model(given.model)
            stored = await self._store(given, caller)
            params: dict[str, Any] = {"top_k": given.top_k, **(model_params(given.model) or {})}
            try:
                outcome = await guard(self.analysis.analyze(stored.image_id, caller, ANALYZER, params))
            except Exception:
                # The client never learns the id of an image whose classification failed.
                with contextlib.suppress(AppError):
                    await self.images.delete(stored.image_id, caller)
                raise
        return Classified(outcome, stored.metadata, "url" if isinstance(given, UrlImage) else "image")

    async def _store(self, given: ClassifyInput, caller: Principal) -> UploadOutcome:
        if isinstance(given, UrlImage):
            return await self.ingest.ingest_url(given.url, caller)
        return await self.ingest.upload(
            content_type=given.content_type,
            content_length=given.content_length,
            chunks=given.chunks,
            owner=caller,
        )
