"""Analysis use case: cache lookup, single-flight, run the analyzer in a thread, atomic publish.

A result is a pure function of (image, analyzer, analyzer version, params), stored as the
exact response bytes under a name derived from them (`{image_id}.json` for the default
`skin` analyzer, the seeds' contract; `{image_id}/{analyzer}[.{params-hash}].json` for the
rest: one folder per image, so a delete never scans the others). A repeat is a read;
concurrent first requests share one computation (one task per key in this process;
`link`-based publication across processes, first writer wins).
A cache file that does not validate (truncated, edited, older analyzer version) is
recomputed and replaced, with a warning.

With object storage (`STORAGE_URL=s3://...`, `ImageService.objects`) the same names are
objects: created with `If-None-Match: *` (first writer wins across replicas, every client
gets the winner's bytes) and replaced with `If-Match` when outdated or corrupt; the analyzer
reads a local temp copy of the image made from its object.
A model-backed analyzer of an image whose format has no reduced decoding (HEIC, AVIF) reads
its full-size JPEG rendition instead, made once per image (`pixels`; with object storage a
local copy of the rendition's object, `local_pixels`: `app.services.images.previews`);
results are published against the image itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.analyzers.base import Analyzer, ImageSource, analysis_version
from app.analyzers.registry import DEFAULT_ANALYZER, AnalyzerRegistry
from app.core import metrics
from app.core.errors import ImageNotFound, ValidationFailed
from app.core.threads import ThreadPool
from app.services.accounts.credits import CreditService
from app.services.accounts.principals import Principal
from app.services.analysis.reuse import PerceptualReuse, Reuse, reused_body
from app.services.analysis.scheduler import Abandoned, Lanes
from app.services.images.catalog import ImageService
from app.storage.base import ResultStore, result_key
from app.storage.metadata import StoredImage

logger = logging.getLogger("app.analysis")


_FRESH = "\0fresh"  # suffix of the in-flight key of a request that opted out of reuse


@dataclass(frozen=True)
class AnalysisOutcome:
    """A result body (exact bytes), whether it came from the cache, and the near-duplicate
    image whose result answered (`reused`), if one did."""

    body: bytes
    cached: bool
    reused: Reuse | None = None


@cache
def _default_params(params_model: type[BaseModel]) -> dict[str, Any]:
    """What an analyzer's params are when none are given (never changed by a caller)."""
    return params_model().model_dump()


def result_name(image_id: str, analyzer: Analyzer, params: BaseModel) -> str:
    """The cache key of one (image, analyzer, params) result (`app.storage.base.result_key`)."""
    default_params = params.model_dump() == _default_params(analyzer.params_model)
    if analyzer.name == DEFAULT_ANALYZER and default_params:
        return result_key(image_id)
    variant = analyzer.name
    if not default_params:
        canonical = json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        variant += f".{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"
    return result_key(image_id, variant)


def _encode(image_id: str, analyzer: Analyzer, params: BaseModel, result: BaseModel) -> bytes:
    body: dict[str, Any] = {"image_id": image_id, **result.model_dump(mode="json")}
    body["analyzer"] = analyzer.name
    body["analyzer_version"] = analysis_version(analyzer, params)
    if type(params).model_fields:
        body["params"] = params.model_dump(mode="json")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _is_valid(raw: bytes, image_id: str, analyzer: Analyzer, params: BaseModel) -> bool:
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            return False
        if (
            body.pop("image_id", None) != image_id
            or body.pop("analyzer", None) != analyzer.name
            or body.pop("analyzer_version", None) != analysis_version(analyzer, params)
        ):
            return False
        if type(params).model_fields and body.pop("params", None) != params.model_dump(mode="json"):
            return False
        analyzer.result_model.model_validate(body, strict=False)
    except (ValueError, ValidationError):
        return False
    # Byte-identical repeats: the file must be exactly what we would have written.
    return raw == _encode(image_id, analyzer, params, analyzer.result_model.model_validate(body))


class AnalysisService:
    """Runs analyzers over stored images with a persistent, idempotent result cache."""

    def __init__(
        self,
        registry: AnalyzerRegistry,
        images: ImageService,
        results: ResultStore,
        *,
        io_pool: ThreadPool,
        lanes: Lanes,
        memory_entries: int,
        credits: CreditService | None = None,
        reuse: PerceptualReuse | None = None,
        pixels: Callable[[StoredImage], Awaitable[Path]] | None = None,
        local_pixels: Callable[[StoredImage], AbstractAsyncContextManager[Path | None]] | None = None,
    ) -> None:
        self.registry = registry
        self.reuse = reuse
        # The file a model-backed analysis decodes for a stored image (a HEIC's rendition,
        # `PreviewService.pixels`); None: the stored bytes
        self.pixels = pixels
        # With object storage: a local copy of that file (`PreviewService.local_pixels`)
        self.local_pixels = local_pixels
        self.credits = credits
        self.images = images
        self.results = results
        self._io_pool = io_pool
        self._lanes = lanes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_entries = memory_entries
        self._in_flight: dict[str, asyncio.Task[tuple[bytes, bool, Reuse | None]]] = {}
        self._waiters: dict[str, int] = {}  # clients waiting on each in-flight result

    def parse_params(self, analyzer: Analyzer, params: dict[str, Any] | None) -> BaseModel:
        """Validate analyzer params; ValidationFailed (400) names the bad ones; a model the
        params pick that is unknown or not loaded is UnknownModel (400) or ModelUnavailable (503)."""
        try:
            parsed = analyzer.params_model.model_validate(params or {})
        except ValidationError as exc:
            raise ValidationFailed.from_errors(
                exc.errors(), prefix="params.", lead="Invalid params"
            ) from None
        analysis_version(analyzer, parsed)
        return parsed

    async def analyze(
        self,
        image_id: str,
        viewer: Principal,
        analyzer_name: str = DEFAULT_ANALYZER,
        params: dict[str, Any] | None = None,
        *,
        reuse: bool = True,
        reuse_distance: int | None = None,
    ) -> AnalysisOutcome:
        """The result of one analyzer on an image `viewer` may see, computed at most once.

        A model-backed analysis computed for a metered caller costs one credit, charged only
        when it succeeds; a cached result is free. Without a result of its own, the result of a
        near-duplicate image may answer (`reused`; see `app.services.analysis.reuse`) unless
        `reuse` is false; `reuse_distance` may tighten the server's threshold.
        """
        max_distance = self.reuse_threshold(analyzer_name, reuse, reuse_distance)
        analyzer = self.registry.get(analyzer_name)
        hit = self.hit(image_id, viewer, analyzer_name, params)
        if hit is not None:
            return hit
        parsed = self.parse_params(analyzer, params)
        name = result_name(image_id, analyzer, parsed)
        flight = name if max_distance else name + _FRESH
        image = await self.images.get(image_id, viewer)
        while True:
            task = self._in_flight.get(flight)
            leader = task is None
            if task is None:
                task = asyncio.ensure_future(
                    self._resolve(image, analyzer, parsed, name, viewer, max_distance)
                )
                self._in_flight[flight] = task
                task.add_done_callback(partial(self._finished, flight))
            self._waiters[flight] = self._waiters.get(flight, 0) + 1
            try:
                # shield: a client that hangs up must not cancel the work others wait on; when
                # every client has hung up, queued work is dropped before it starts (`wanted`).
                body, computed, reused = await asyncio.shield(task)
                break
            except Abandoned:
                # Dropped for want of clients just before this one joined: start it afresh.
                if self._in_flight.get(flight) is task:
                    del self._in_flight[flight]
            finally:
                self._waiters[flight] -= 1
                if not self._waiters[flight]:
                    del self._waiters[flight]
        cached = not (leader and computed) and reused is None
        state = "reused" if reused is not None else "cached" if cached else "computed"
        metrics.ANALYSES.labels(analyzer.name, state).inc()
        return AnalysisOutcome(body, cached=cached, reused=reused)

    def reuse_threshold(
        self, analyzer_name: str, reuse: bool = True, reuse_distance: int | None = None
    ) -> int:
        """The perceptual-reuse threshold of one request (0: none); ValidationFailed (400) for a
        `reuse_distance` wider than the server's."""
        if self.reuse is None:
            return 0
        threshold = self.reuse.max_distance(self.registry.get(analyzer_name), reuse_distance)
        return threshold if reuse else 0

    def hit(
        self,
        image_id: str,
        viewer: Principal,
        analyzer_name: str = DEFAULT_ANALYZER,
        params: dict[str, Any] | None = None,
    ) -> AnalysisOutcome | None:
        """The result from memory if it is there (no await, no thread hop), else None."""
        analyzer = self.registry.get(analyzer_name)
        parsed = self.parse_params(analyzer, params)
        name = result_name(image_id, analyzer, parsed)
        body = self._memory.get(name)
        if body is not None and self.images.peek(image_id, viewer) is not None and self.results.exists(name):
            self._memory.move_to_end(name)
            metrics.ANALYSES.labels(analyzer.name, "cached").inc()
            return AnalysisOutcome(body, cached=True)
        return None

    def reserve(self, analyzer_name: str) -> AbstractContextManager[None]:
        """Refuse now (QueueFull, 503) a computation of `analyzer_name` that would find its queue
        full or wait too long, counting the requests admitted before it that still read their
        body; else hold a place until the computation queues (see `Lane.reserve`). Lets a
        route refuse before it reads a request body."""
        analyzer = self.registry.get(analyzer_name)
        return self._lanes.of(analyzer).reserve(analyzer.name)

    def _finished(self, name: str, task: asyncio.Task[tuple[bytes, bool, Reuse | None]]) -> None:
        if self._in_flight.get(name) is task:
            del self._in_flight[name]
        if not task.cancelled() and isinstance(task.exception(), Abandoned):
            logger.info("analysis %s dropped: every client hung up before it started", name)

    async def run_unstored(
        self, path: Path, analyzer_name: str, params: dict[str, Any] | None = None
    ) -> BaseModel:
        """Run an analyzer on a file that is not a stored image (no cache): seed 003's /forward."""
        analyzer = self.registry.get(analyzer_name)
        parsed = self.parse_params(analyzer, params)
        source = ImageSource(image_id="", path=path)
        return await self._lanes.of(analyzer).run(analyzer.name, analyzer.analyze, source, parsed)

    async def _resolve(
        self,
        image: StoredImage,
        analyzer: Analyzer,
        params: BaseModel,
        name: str,
        viewer: Principal,
        max_distance: int = 0,
    ) -> tuple[bytes, bool, Reuse | None]:
        started = time.perf_counter()
        image_id = image.metadata.image_id
        objects = self.images.objects
        if objects is None:
            body = await self._io_pool.run(self._read_cached, image_id, analyzer, params, name)
        else:  # the image's catalog row is there (`images.get`): a result kept in memory is valid
            body = self._memory.get(name)
            if body is None:
                raw = await objects.read_result(name)
                body = self._validated(raw, image_id, analyzer, params, name)
        computed = body is None
        if body is None and max_distance:
            found = await self._reuse(image, analyzer, params, max_distance)
            if found is not None:
                logger.info(
                    "analysis image_id=%s analyzer=%s reused from image_id=%s (distance %d) in %.1f ms",
                    image_id,
                    analyzer.name,
                    found[1].image_id,
                    found[1].distance,
                    (time.perf_counter() - started) * 1000,
                )
                return found[0], False, found[1]
        if body is None and objects is None:
            body = await self._compute_metered(
                ImageSource(image_id, image.path), analyzer, params, name, viewer, image
            )
        elif body is None:
            assert objects is not None
            if self.local_pixels is not None and analyzer.model_backed:  # a HEIC's rendition
                copying = self.local_pixels(image)
            else:
                copying = objects.local_copy(image.metadata)
            async with copying as copy:
                if copy is None:
                    raise ImageNotFound(f"Image {image_id} not found")
                body = await self._compute_metered(
                    ImageSource(image_id, copy), analyzer, params, name, viewer
                )
        self._remember(name, body)
        logger.info(
            "analysis image_id=%s analyzer=%s %s in %.1f ms",
            image_id,
            analyzer.name,
            "computed" if computed else "cached",
            (time.perf_counter() - started) * 1000,
        )
        return body, computed, None

    async def _reuse(
        self, image: StoredImage, analyzer: Analyzer, params: BaseModel, max_distance: int
    ) -> tuple[bytes, Reuse] | None:
        """The stored, current result of the nearest near-duplicate that has one, as this
        image's answer (`reused_from` in the body), or None."""
        assert self.reuse is not None
        for candidate in await self.reuse.candidates(image, analyzer, max_distance):
            other = result_name(candidate.image_id, analyzer, params)
            objects = self.images.objects
            if objects is None:  # the file, not memory: it goes when its image is deleted
                raw = await self._io_pool.run(self._read_cached, candidate.image_id, analyzer, params, other)
            else:  # the candidate's row was there just now: a result kept in memory is valid
                raw = self._memory.get(other)
                if raw is None:
                    fetched = await objects.read_result(other)
                    raw = self._validated(fetched, candidate.image_id, analyzer, params, other)
            if raw is not None:
                reuse = Reuse(candidate.image_id, candidate.distance)
                return reused_body(raw, image.metadata.image_id, reuse), reuse
        return None

    async def _compute_metered(
        self,
        source: ImageSource,
        analyzer: Analyzer,
        params: BaseModel,
        name: str,
        viewer: Principal,
        image: StoredImage | None = None,
    ) -> bytes:
        self._lanes.of(analyzer).admit(analyzer.name)  # a miss that cannot run soon: refuse now
        if self.credits is None or not analyzer.model_backed:
            return await self._compute_and_publish(source, analyzer, params, name, image)
        async with self.credits.metered(viewer, f"analysis:{analyzer.name}", name, subject=name) as work:
            body = await self._compute_and_publish(source, analyzer, params, name, image)
            work.computed = True
        return body

    async def _compute_and_publish(
        self,
        source: ImageSource,
        analyzer: Analyzer,
        params: BaseModel,
        name: str,
        image: StoredImage | None = None,
    ) -> bytes:
        decoded = source
        if image is not None and self.pixels is not None and analyzer.model_backed:
            # The mock `skin` reads no pixels; the others decode a HEIC's rendition, made once
            decoded = ImageSource(source.image_id, await self.pixels(image))
        fresh = await self._lanes.of(analyzer).run(
            analyzer.name,
            self._compute,
            decoded,
            analyzer,
            params,
            wanted=lambda: name in self._waiters or name + _FRESH in self._waiters,
        )
        objects = self.images.objects
        if objects is not None:
            return await self._publish_object(source.image_id, analyzer, params, name, fresh)
        # Publishing (create + fsync) runs on the io pool: analysis threads stay on CPU work.
        return await self._io_pool.run(self._publish, source, analyzer, params, name, fresh)

    def _read_cached(self, image_id: str, analyzer: Analyzer, params: BaseModel, name: str) -> bytes | None:
        return self._validated(self.results.read(name), image_id, analyzer, params, name)

    @staticmethod
    def _validated(
        raw: bytes | None, image_id: str, analyzer: Analyzer, params: BaseModel, name: str
    ) -> bytes | None:
        if raw is None:
            return None
        if _is_valid(raw, image_id, analyzer, params):
            return raw
        logger.warning("cached result %s is corrupt or outdated; recomputing", name)
        return None

    def _compute(self, source: ImageSource, analyzer: Analyzer, params: BaseModel) -> bytes:
        result = analyzer.analyze(source, params)
        return _encode(source.image_id, analyzer, params, result)

    def _publish(
        self, source: ImageSource, analyzer: Analyzer, params: BaseModel, name: str, body: bytes
    ) -> bytes:
        """Store a fresh result; returns the bytes every client must get.

        If an entry is there already, another process published it while we computed (serve
        its bytes, so every client agrees) unless it does not validate (the corrupt entry we
        found on reading): then ours replaces it. ImageNotFound if the image was deleted
        while it was analyzed (nothing stays published for it).
        """
        image_id = source.image_id
        published = self.results.create(name, body)
        # A delete unlinks the image before its results: checked after creating ours, either
        # that delete removes it or this sees the image gone.
        if not source.path.exists():
            self.results.delete_for_image(image_id)
            raise ImageNotFound(f"Image {image_id} not found")
        if not published:
            winner = self.results.read(name)
            if winner is not None and _is_valid(winner, image_id, analyzer, params):
                return winner
            self.results.replace(name, body)
        return body

    async def _publish_object(
        self, image_id: str, analyzer: Analyzer, params: BaseModel, name: str, body: bytes
    ) -> bytes:
        """`_publish` on object storage: first writer wins, a valid winner is served, an invalid
        one replaced (`If-Match`); ImageNotFound if the image was deleted meanwhile."""
        objects = self.images.objects
        assert objects is not None
        winner = await objects.publish_result(
            name, body, lambda raw: _is_valid(raw, image_id, analyzer, params)
        )
        # A delete removes the bytes before the results: checked after creating ours, either
        # that delete's listing removes it or this sees the image gone.
        if not await objects.has_image(image_id):
            await objects.remove(image_id)
            raise ImageNotFound(f"Image {image_id} not found")
        return winner

    def _remember(self, name: str, body: bytes) -> None:
        if self._memory_entries <= 0:
            return
        self._memory[name] = body
        self._memory.move_to_end(name)
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)
