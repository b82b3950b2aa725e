"""Classify the image of a form without storing it, or hand back its text field (seed 003).

The form streams to a temp file like an upload (`IngestService.receive`); its image is
checked and classified, then the temp file is removed whatever happens: nothing of the
request stays on disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel

from app.services.analysis import AnalysisService
from app.services.ingest import IngestService


@dataclass(frozen=True)
class FormOutcome:
    """What a form carried: the classification of its image, or else its text field (or neither)."""

    result: BaseModel | None
    text: str | None


class FormClassifier:
    """Runs an analyzer over a streamed form's image, never storing it."""

    def __init__(self, ingest: IngestService, analysis: AnalysisService) -> None:
        self.ingest = ingest
        self.analysis = analysis

    async def process(
        self,
        *,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterator[bytes],
        file_field: str,
        text_field: str,
        analyzer: str,
        params: dict[str, object],
    ) -> FormOutcome:
        """The analysis of the form's `file_field` image, or its `text_field` when it has no image."""
        form = await self.ingest.receive(
            content_type=content_type, content_length=content_length, chunks=chunks, file_field=file_field
        )
        received = form.file
        try:
            if received is None:
                return FormOutcome(result=None, text=form.fields.get(text_field))
            await self.ingest.check(received)
            result = await self.analysis.run_unstored(received.path, analyzer, params)
            return FormOutcome(result=result, text=None)
        finally:
            self.ingest.discard(received)
