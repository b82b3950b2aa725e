"""The closed registry of analyzers, keyed by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from app.analyzers.base import Analyzer
from app.analyzers.skin import SkinAnalyzer
from app.core.errors import UnknownAnalyzer

DEFAULT_ANALYZER = "skin"


class AnalyzerRegistry:
    """Analyzer instances by name; built once at start-up."""

    def __init__(self, analyzers: Iterable[Analyzer]) -> None:
        self._analyzers: dict[str, Analyzer] = {a.name: a for a in analyzers}

    def get(self, name: str) -> Analyzer:
        """The analyzer called `name`, or UnknownAnalyzer naming the available ones."""
        try:
            return self._analyzers[name]
        except KeyError:
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


def default_registry() -> AnalyzerRegistry:
    """The analyzers this build ships."""
    return AnalyzerRegistry([SkinAnalyzer()])
