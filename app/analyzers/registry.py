"""The closed registry of analyzers, keyed by name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from app.analyzers.base import Analyzer
from app.analyzers.skin import SkinAnalyzer
from app.core.config import Settings
from app.core.errors import AnalyzerUnavailable, UnknownAnalyzer

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


def _load_classifier(settings: Settings) -> Analyzer:
    from app.analyzers.classify import OnnxClassifier, find_model

    return OnnxClassifier(find_model(settings.model_dir), intra_op_threads=settings.onnx_intra_op_threads)


def _load_face(settings: Settings) -> Analyzer:
    from app.analyzers.face import FaceAnalyzer

    return FaceAnalyzer(
        landmarks_model=settings.face_landmarks, detect_max_side=settings.face_detect_max_side
    )


_LOADERS: dict[str, Callable[[Settings], Analyzer]] = {
    "classify": _load_classifier,
    "face": _load_face,
}


def build_registry(settings: Settings) -> AnalyzerRegistry:
    """Every analyzer, models loaded once (call at start-up, in a thread).

    Only the model-backed analyzers named in `settings.analyzers` are loaded. One whose
    model cannot be loaded is reported as unavailable (503 on use, failing /readyz)
    instead of stopping the service: `skin` keeps working.
    """
    analyzers: list[Analyzer] = [SkinAnalyzer()]
    unavailable: dict[str, str] = {}
    for name, load in _LOADERS.items():
        if name not in settings.analyzers:
            continue
        try:
            analyzers.append(load(settings))
        except Exception as exc:  # a missing model file, a broken package: report, keep serving
            logger.error("analyzer %s not loaded: %s", name, exc)
            unavailable[name] = str(exc)
    return AnalyzerRegistry(analyzers, unavailable)
