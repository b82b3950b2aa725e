"""The analysis domain's settings section: perceptual reuse, cut from `Settings` in the composition root.

Field names are the settings' own (env var names in lower case), so each reads as its setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.core.config import Settings


@dataclass(frozen=True)
class ReuseSettings:
    """Perceptual reuse (`perceptual_reuse`): how near, whose images, how many candidates."""

    perceptual_reuse_distance: int  # 0: off
    perceptual_reuse_scope: Literal["owner", "any"]
    perceptual_reuse_max_candidates: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReuseSettings:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})
