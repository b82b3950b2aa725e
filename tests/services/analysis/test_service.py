"""AnalysisService: cache file names, single-flight, byte-identical repeats, repair of corrupt entries."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from app.analyzers.base import ImageSource, NoParams
from app.core.errors import ImageNotFound, UnknownAnalyzer, ValidationFailed
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL as ANYONE
from app.services.analysis.service import result_name
from tests.factories import CountingSkin, SlowModel, jpeg_bytes, photo_jpeg
from tests.services.conftest import publish, running


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(3, ge=1, le=10)


class EchoResult(BaseModel):
    k: int
    width: int


class Echo:
    """An analyzer with params: echoes `k` and reads the image's size."""

    name: ClassVar[str] = "echo"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "test"
    params_model: ClassVar[type[BaseModel]] = EchoParams
    result_model: ClassVar[type[BaseModel]] = EchoResult
    model_backed: ClassVar[bool] = False

    def __init__(self) -> None:
        self.calls = 0

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        from PIL import Image

        self.calls += 1
        assert isinstance(params, EchoParams)
        with Image.open(source.path) as image:
            return EchoResult(k=params.k, width=image.width)


async def test_fifty_concurrent_requests_compute_once(settings) -> None:
    skin = CountingSkin(delay=0.05)
    async with running(settings, skin) as services:
        image_id = (await publish(services, photo_jpeg())).image_id
        outcomes = await asyncio.gather(*(services.analysis.analyze(image_id, ANYONE) for _ in range(50)))
    assert skin.calls == 1
    assert len({o.body for o in outcomes}) == 1
    assert [o.cached for o in outcomes].count(False) == 1


async def test_repeat_is_a_hit_with_the_same_bytes_also_after_a_restart(settings, data_dir: Path) -> None:
    skin = CountingSkin()
    async with running(settings, skin) as services:
        image_id = (await publish(services, photo_jpeg())).image_id
        first = await services.analysis.analyze(image_id, ANYONE)
        again = await services.analysis.analyze(image_id, ANYONE)
    async with running(settings, skin) as services:
        restarted = await services.analysis.analyze(image_id, ANYONE)
    assert (first.cached, again.cached, restarted.cached) == (False, True, True)
    assert first.body == again.body == restarted.body
    assert (data_dir / "analysis" / f"{image_id}.json").read_bytes() == first.body
    assert skin.calls == 1


async def test_params_name_the_cache_file_and_reach_the_analyzer(settings, data_dir: Path) -> None:
    echo = Echo()
    async with running(settings, CountingSkin(), echo) as services:
        image_id = (await publish(services, jpeg_bytes((40, 30)))).image_id
        default = json.loads((await services.analysis.analyze(image_id, ANYONE, "echo")).body)
        seven = json.loads((await services.analysis.analyze(image_id, ANYONE, "echo", {"k": 7})).body)
        with pytest.raises(ValidationFailed) as bad:
            await services.analysis.analyze(image_id, ANYONE, "echo", {"k": 0})
    assert (default["k"], default["width"], default["params"]) == (3, 40, {"k": 3})
    assert seven["k"] == 7 and echo.calls == 2
    assert bad.value.extra["fields"] == ["params.k"]
    analysis = data_dir / "analysis"
    names = sorted(str(p.relative_to(analysis)) for p in analysis.rglob("*") if p.is_file())
    assert names == sorted([f"{image_id}/echo.json", result_name(image_id, echo, EchoParams(k=7))])
    assert result_name(image_id, echo, EchoParams(k=7)).startswith(f"{image_id}/echo.")


async def test_unknown_image_or_analyzer(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        with pytest.raises(ImageNotFound):
            await services.analysis.analyze("3fa85f64-5717-4562-b3fc-2c963f66afa6", ANYONE)
        image_id = (await publish(services, photo_jpeg())).image_id
        with pytest.raises(UnknownAnalyzer):
            await services.analysis.analyze(image_id, ANYONE, "tarot")
    assert not any((data_dir / "analysis").iterdir())


async def test_a_failed_analysis_caches_nothing(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin(fail_with=RuntimeError("boom"))) as services:
        image_id = (await publish(services, photo_jpeg())).image_id
        with pytest.raises(RuntimeError):
            await services.analysis.analyze(image_id, ANYONE)
    assert not any((data_dir / "analysis").iterdir())


@pytest.mark.parametrize(
    "corruption",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw.replace(b'"confidence":', b'"confidence":1', 1),
        lambda raw: b"",
        lambda raw: b"\x00\xff garbage",
        lambda raw: json.dumps({**json.loads(raw), "skin_type": "Scaly"}).encode(),
        lambda raw: json.dumps({**json.loads(raw), "analyzer_version": "0"}, separators=(",", ":")).encode(),
    ],
)
async def test_corrupt_cache_is_recomputed_and_replaced(
    settings, data_dir: Path, caplog: pytest.LogCaptureFixture, corruption
) -> None:
    skin = CountingSkin()
    async with running(settings, skin) as services:
        image_id = (await publish(services, photo_jpeg())).image_id
        first = await services.analysis.analyze(image_id, ANYONE)
    cache_file = data_dir / "analysis" / f"{image_id}.json"
    cache_file.write_bytes(corruption(cache_file.read_bytes()))
    logging.getLogger("app").propagate = True
    async with running(settings, skin) as services:  # a restart: nothing in memory
        with caplog.at_level(logging.WARNING, logger="app.analysis"):
            again = await services.analysis.analyze(image_id, ANYONE)
    assert not again.cached and again.body == first.body
    assert cache_file.read_bytes() == first.body
    assert skin.calls == 2
    assert any("corrupt" in r.getMessage() for r in caplog.records)


async def test_another_process_publishing_first_wins(settings, data_dir: Path) -> None:
    slow = SlowModel()  # model-backed: computes in a lane thread, held until released
    async with running(settings, CountingSkin(), slow) as services:
        image_id = (await publish(services, photo_jpeg())).image_id
        pending = asyncio.ensure_future(services.analysis.analyze(image_id, ANYONE, "slow"))
        while not slow.started:  # ours is computing
            await asyncio.sleep(0.01)
        # Another worker process publishes a (valid, different) result while ours computes.
        winner = json.dumps(
            {"image_id": image_id, "ok": False, "analyzer": "slow", "analyzer_version": "1"},
            separators=(",", ":"),
        ).encode()
        path = data_dir / "analysis" / result_name(image_id, slow, NoParams())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(winner)
        slow.release.set()
        outcome = await pending
    assert outcome.body == winner  # every client agrees on the first published bytes
    assert path.read_bytes() == winner


async def test_run_unstored_leaves_nothing(settings, data_dir: Path, tmp_path: Path) -> None:
    echo = Echo()
    source = tmp_path / "loose.jpg"
    source.write_bytes(jpeg_bytes((20, 10)))
    async with running(settings, CountingSkin(), echo) as services:
        result = await services.analysis.run_unstored(source, "echo", {"k": 2})
    assert result == EchoResult(k=2, width=20)
    assert not any((data_dir / "analysis").iterdir())


async def test_an_image_deleted_while_it_is_analyzed_keeps_no_result(settings, data_dir: Path) -> None:
    slow = SlowModel()
    async with running(settings, CountingSkin(), slow) as services:
        image_id = (await publish(services, jpeg_bytes())).image_id
        analysis = asyncio.ensure_future(services.analysis.analyze(image_id, ANYONE, "slow"))
        while not slow.started:
            await asyncio.sleep(0.01)
        await services.images.delete(image_id, ANYONE)  # while the analyzer runs
        slow.release.set()
        with pytest.raises(ImageNotFound):
            await analysis
    assert list((data_dir / "analysis").iterdir()) == []
