"""The closed registry of analyzers, keyed by name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from app.analyzers.base import Analyzer
from app.analyzers.skin import SkinAnalyzer
from app.core.config import Settings
from app.core.errors import AnalyzerUnavailable, UnknownAnalyzer

if TYPE_CHECKING:
    from app.analyzers.facemesh import FaceMesh

logger = logging.getLogger("app.analyzers")

DEFAULT_ANALYZER = "skin"


class AnalyzerRegistry:
    """Analyzer instances by name; built once at start-up."""

    def __init__(self, analyzers: Iterable[Analyzer], unavailable: dict[str, str] | None = None) -> None:
        self._analyzers: dict[str, Analyzer] = {a.name: a for a in analyzers}
        # Analyzers this build knows but could not load (name -> why), for /readyz and 503s.
        self.unavailable: dict[str, str] = dict(unavailable or {})

    def get(self, name: str) -> Analyzer:
        """The analyzer called `name`; AnalyzerUnavailable (503) if it failed to load,
        UnknownAnalyzer (400, naming the available ones) if there is no such analyzer."""
        try:
            return self._analyzers[name]
        except KeyError:
            if name in self.unavailable:
                raise AnalyzerUnavailable(
                    f"Analyzer {name!r} is not loaded: {self.unavailable[name]}"
                ) from None
            available = sorted(self._analyzers)
            raise UnknownAnalyzer(
                f"Unknown analyzer {name!r}; available: {', '.join(available)}",
                extra={"available": available},
            ) from None

    def names(self) -> list[str]:
        """Names of the registered analyzers, sorted."""
        return sorted(self._analyzers)

    def __iter__(self) -> Iterator[Analyzer]:
        return iter(self._analyzers.values())


class _Models:
    """Models that several analyzers share, loaded once per registry on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._mesh: FaceMesh | None = None

    def mesh(self) -> FaceMesh:
        """The BlazeFace + Face Mesh sessions (face and skin-measure share them)."""
        if self._mesh is None:
            from app.analyzers.facemesh import FaceMesh

            self._mesh = FaceMesh(self.settings.model_dir, self.settings.onnx_intra_op_threads)
        return self._mesh


def _load_classifier(models: _Models) -> Analyzer:
    from app.analyzers.classify import OnnxClassifier, find_model

    settings = models.settings
    return OnnxClassifier(find_model(settings.model_dir), intra_op_threads=settings.onnx_intra_op_threads)


def _load_face(models: _Models) -> Analyzer:
    from app.analyzers.face import FaceAnalyzer

    settings = models.settings
    if settings.face_backend == "dlib":
        return FaceAnalyzer(
            "dlib", landmarks_model=settings.face_landmarks, detect_max_side=settings.face_detect_max_side
        )
    return FaceAnalyzer("mesh", mesh=models.mesh())


def _load_skin_measure(models: _Models) -> Analyzer:
    from app.analyzers.skin_measure import SkinMeasureAnalyzer
    from app.analyzers.skin_quality import QualityGate

    return SkinMeasureAnalyzer(models.mesh(), QualityGate.from_settings(models.settings))


_LOADERS: dict[str, Callable[[_Models], Analyzer]] = {
    "classify": _load_classifier,
    "face": _load_face,
    "skin-measure": _load_skin_measure,
}


def build_registry(settings: Settings) -> AnalyzerRegistry:
    """Every analyzer, models loaded once (call at start-up, in a thread).

    Only the model-backed analyzers named in `settings.analyzers` are loaded. One whose
    model cannot be loaded is reported as unavailable (503 on use, failing /readyz)
    instead of stopping the service: `skin` keeps working.
    """
    analyzers: list[Analyzer] = [SkinAnalyzer()]
    unavailable: dict[str, str] = {}
    models = _Models(settings)
    for name, load in _LOADERS.items():
        if name not in settings.analyzers:
            continue
        try:
            analyzers.append(load(models))
        except Exception as exc:  # a missing model file, a broken package: report, keep serving
            logger.error("analyzer %s not loaded: %s", name, exc)
            unavailable[name] = str(exc)
    return AnalyzerRegistry(analyzers, unavailable)
