"""The analyzer contract: a name, a version, a params model and a pure `analyze`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

# What an analyzer's result for one image may answer for a near-duplicate (perceptual reuse):
# nothing; a result of an image of the same upright pixel size (pixel coordinates); any size.
ReuseScope = Literal["none", "same_size", "any_size"]


class NoParams(BaseModel):
    """Params model of analyzers that take none: any given param is an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ImageSource:
    """What an analyzer may look at: the image id and its stored bytes."""

    image_id: str
    path: Path


class Analyzer(Protocol):
    """A pure, synchronous, CPU-bound analysis. Never touches HTTP, files it was not given, or the DB."""

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]
    # Runs a model (costs a metered caller one credit when computed); the mock skin does not.
    model_backed: ClassVar[bool]
    # Whose results may answer for a near-duplicate image (see `ReuseScope`; absent: "none").
    reuse: ClassVar[ReuseScope]

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """The result for one image; the same input always gives the same result."""
        ...


def analysis_version(analyzer: Analyzer, params: BaseModel) -> str:
    """The version of what `analyzer` runs for `params` (stored with each result, which is
    recomputed when it differs): `analyzer.version`, unless the analyzer picks a model by its
    params (`version_for`; classify: that model file's SHA-256, UnknownModel for a bad name)."""
    version_for = getattr(analyzer, "version_for", None)
    return str(version_for(params)) if version_for is not None else analyzer.version


def reuse_scope(analyzer: Analyzer) -> ReuseScope:
    """What `analyzer` declares it may reuse ("none" when it declares nothing)."""
    return getattr(analyzer, "reuse", "none")
