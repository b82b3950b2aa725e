"""The closed registry of analyzers, keyed by name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.analyzers.base import Analyzer
from app.analyzers.skin import SkinAnalyzer
from app.core.errors import AnalyzerUnavailable, UnknownAnalyzer

if TYPE_CHECKING:
    from app.analyzers.face.mesh_models import FaceMesh
    from app.analyzers.settings import AnalyzerSettings

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

    def __init__(self, settings: AnalyzerSettings) -> None:
        self.settings = settings
        self._mesh: FaceMesh | None = None
        # Parts of a loaded analyzer that did not load (e.g. "classify:lite2" -> why)
        self.unavailable: dict[str, str] = {}

    def mesh(self) -> FaceMesh:
        """The BlazeFace + Face Mesh sessions (face and skin-measure share them)."""
        if self._mesh is None:
            from app.analyzers.face.mesh_models import FaceMesh

            self._mesh = FaceMesh(self.settings.model_dir, self.settings.onnx_intra_op_threads)
        return self._mesh


def _load_classifier(models: _Models) -> Analyzer:
    """The default model (MODEL_PATH) and the named ones (MODELS). One that does not load or
    fit is left out and reported as `classify:<name>` (failing /readyz; 503 model_unavailable
    when asked for); only when none loads is `classify` itself unavailable."""
    from app.analyzers.classify.analyzer import Classifiers, OnnxClassifier, find_model
    from app.analyzers.classify.model_spec import ModelMismatch
    from app.core.model_settings import DEFAULT_MODEL

    settings = models.settings.classify
    paths: dict[str, Path | None] = {DEFAULT_MODEL: settings.model_path, **settings.models}
    loaded: dict[str, OnnxClassifier] = {}
    failed: dict[str, str] = {}
    for name, path in paths.items():
        try:
            path = path or find_model(models.settings.model_dir)
            loaded[name] = OnnxClassifier(
                path,
                intra_op_threads=models.settings.onnx_intra_op_threads,
                labels_path=settings.model_labels if name == DEFAULT_MODEL else None,
                defaults=settings.defaults,
            )
        except FileNotFoundError as exc:
            failed[name] = str(exc) if path is None else f"model file {path} not found"
        except ModelMismatch as exc:
            failed[name] = f"{path} does not fit: {exc}"
        except Exception as exc:  # unreadable, a broken package: report, load the rest
            failed[name] = f"{path}: {exc}"
    if not loaded:
        raise RuntimeError("; ".join(failed.values()) if len(failed) > 1 else failed[DEFAULT_MODEL])
    for name, why in failed.items():
        logger.error("classify model %s not loaded: %s", name, why)
        models.unavailable[f"classify:{name}"] = why
    return Classifiers(loaded, failed)


def _load_face(models: _Models) -> Analyzer:
    from app.analyzers.face.analyzer import FaceAnalyzer

    settings = models.settings.face
    if settings.face_backend == "dlib":
        return FaceAnalyzer(
            "dlib", landmarks_model=settings.face_landmarks, detect_max_side=settings.face_detect_max_side
        )
    return FaceAnalyzer("mesh", mesh=models.mesh())


def _load_skin_measure(models: _Models) -> Analyzer:
    from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer

    return SkinMeasureAnalyzer(models.mesh(), models.settings.skin_measure)


_LOADERS: dict[str, Callable[[_Models], Analyzer]] = {
    "classify": _load_classifier,
    "face": _load_face,
    "skin-measure": _load_skin_measure,
}


def build_registry(settings: AnalyzerSettings) -> AnalyzerRegistry:
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
    return AnalyzerRegistry(analyzers, {**unavailable, **models.unavailable})
