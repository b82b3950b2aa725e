"""Classify the image of a form without storing it, or hand back its text field (seed 003).

The form streams to a temp file like an upload (`IngestService.receive`); its image is
checked and classified, then the temp file is removed whatever happens: nothing of the
request stays on disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass

from pydantic import BaseModel

from app.services.accounts.credits import CreditService
from app.services.accounts.principals import Principal
from app.services.analysis.service import AnalysisService
from app.services.images.ingest import IngestService


@dataclass(frozen=True)
class FormOutcome:
    """What a form carried: the classification of its image, or else its text field (or neither)."""

    result: BaseModel | None
    text: str | None
    size: tuple[int, int] | None = None


class FormClassifier:
    """Runs an analyzer over a streamed form's image, never storing it."""

    def __init__(self, ingest: IngestService, analysis: AnalysisService, credits: CreditService) -> None:
        self.ingest = ingest
        self.analysis = analysis
        self.credits = credits

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
        caller: Principal,
        check_text: Callable[[str], object] | None = None,
    ) -> FormOutcome:
        """The analysis of the form's `file_field` image, or its `text_field` when it has no image.

        A form whose image could not be analyzed soon is refused (QueueFull) before the image
        is read (admitted, it holds a place in the analyzer's queue meanwhile); `check_text`,
        when the form has a `text_field`, may refuse the form (by raising) before anything is
        analyzed. A metered caller pays one credit for a model-backed analysis that succeeds."""
        with ExitStack() as place:  # held from the image part's first byte to its analysis
            form = await self.ingest.receive(
                content_type=content_type,
                content_length=content_length,
                chunks=chunks,
                file_field=file_field,
                on_file=lambda: place.enter_context(self.analysis.reserve(analyzer)),
            )
            received = form.file
            try:
                text = form.fields.get(text_field)
                if text is not None and check_text is not None:
                    check_text(text)
                if received is None:
                    return FormOutcome(result=None, text=text)
                _, width, height = await self.ingest.check(received)
                async with self.credits.metered(
                    caller, f"analysis:{analyzer}", "unstored form image"
                ) as work:
                    result = await self.analysis.run_unstored(received.path, analyzer, params)
                    work.computed = self.analysis.registry.get(analyzer).model_backed
                return FormOutcome(result=result, text=None, size=(width, height))
            finally:
                self.ingest.discard(received)
