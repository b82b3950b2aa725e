"""Pure analyzers behind one contract, looked up by name in a registry."""

from app.analyzers.base import Analyzer, ImageSource, NoParams
from app.analyzers.registry import DEFAULT_ANALYZER, AnalyzerRegistry, build_registry
from app.analyzers.skin import SkinAnalyzer, SkinResult, skin_analysis

__all__ = [
    "DEFAULT_ANALYZER",
    "Analyzer",
    "AnalyzerRegistry",
    "ImageSource",
    "NoParams",
    "SkinAnalyzer",
    "SkinResult",
    "build_registry",
    "skin_analysis",
]
