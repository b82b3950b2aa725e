"""The validation domain's settings section: the structure walk's bounds, cut from `Settings`."""

from __future__ import annotations

from app.core.config import Settings
from app.services.validation.limits import IntegrityLimits


def integrity_limits(settings: Settings) -> IntegrityLimits:
    """The bounds of the structure walk; each is the setting of the same name."""
    return IntegrityLimits(**{name: getattr(settings, name) for name in IntegrityLimits.__dataclass_fields__})


# The settings' defaults, for walks that are not given limits (tests, tools).
DEFAULT_LIMITS = integrity_limits(Settings.model_construct())
