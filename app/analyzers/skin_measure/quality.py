"""The quality gate of the measured skin analysis: photos it cannot judge are refused (422).

Checked in this order, each with its own stable code and a threshold from the settings:

- `no_face_detected`: no face (BlazeFace), or the mesh says there is none;
- `face_too_small`: the face box's shorter side < SKIN_MIN_FACE_PX (80, original pixels);
- `multiple_faces`: more faces of at least that size than SKIN_MAX_FACES (1);
- `face_out_of_frame`: the share of the measured regions' mesh points outside the image is
  above SKIN_MAX_OUTSIDE_FRACTION (0);
- `head_turned`: abs(yaw) > SKIN_MAX_YAW_DEGREES or abs(pitch) > SKIN_MAX_PITCH_DEGREES (25);
- `image_too_dark`: the median L* of the face regions < SKIN_MIN_BRIGHTNESS (30);
- `image_overexposed`: that median > SKIN_MAX_BRIGHTNESS (90), or the share of face pixels
  with a channel >= 250 above SKIN_MAX_CLIPPED_FRACTION (0.1);
- `image_blurred`: the variance of the Laplacian of the face's luma (0-255) is below
  SKIN_MIN_SHARPNESS (5).

Brightness, clipping and sharpness are measured on the canonical frame (`skin_frame`), so the
sharpness threshold means the same for every face size (Pech-Pacheco et al. 2000 use the
variance of the Laplacian as a focus measure). Exposure is checked before sharpness: a dark
photo also has a weak Laplacian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.analyzers.face.mesh_backend import MeshFace
from app.analyzers.face.mesh_regions import polygons
from app.analyzers.skin_measure.color import srgb_to_lab
from app.analyzers.skin_measure.frame import Frame, erode, laplacian
from app.core.config import Settings
from app.core.errors import (
    FaceOutOfFrame,
    HeadTurned,
    ImageBlurred,
    ImageOverexposed,
    ImageTooDark,
    MultipleFaces,
)


@dataclass(frozen=True)
class QualityGate:
    """Thresholds of the quality gate (defaults: the settings' defaults)."""

    min_face_px: int = 80
    max_faces: int = 1
    max_outside_fraction: float = 0.0
    max_yaw: float = 25.0
    max_pitch: float = 25.0
    min_brightness: float = 30.0
    max_brightness: float = 90.0
    max_clipped_fraction: float = 0.1
    min_sharpness: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityGate:
        """The gate configured by the SKIN_* settings."""
        return cls(
            min_face_px=settings.skin_min_face_px,
            max_faces=settings.skin_max_faces,
            max_outside_fraction=settings.skin_max_outside_fraction,
            max_yaw=settings.skin_max_yaw_degrees,
            max_pitch=settings.skin_max_pitch_degrees,
            min_brightness=settings.skin_min_brightness,
            max_brightness=settings.skin_max_brightness,
            max_clipped_fraction=settings.skin_max_clipped_fraction,
            min_sharpness=settings.skin_min_sharpness,
        )

    def check_face(self, face: MeshFace, size: tuple[int, int], pose: tuple[float, float, float]) -> None:
        """Other faces, framing and head pose (the face's size is checked by `find_face`)."""
        faces = 1 + sum(1 for s in face.other_sizes if s >= self.min_face_px)
        if faces > self.max_faces:
            raise MultipleFaces(
                f"{faces} faces are in the image; at most {self.max_faces} may be",
                extra={"faces": faces, "max_faces": self.max_faces},
            )
        pts = np.concatenate(list(polygons(face.mesh).values()))
        w, h = size
        outside = float(np.mean((pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] > w) | (pts[:, 1] > h)))
        if outside > self.max_outside_fraction:
            raise FaceOutOfFrame(
                f"{outside:.0%} of the measured face is outside the image",
                extra={
                    "outside_fraction": round(outside, 3),
                    "max_outside_fraction": self.max_outside_fraction,
                },
            )
        yaw, pitch, _ = pose
        if abs(yaw) > self.max_yaw or abs(pitch) > self.max_pitch:
            raise HeadTurned(
                f"The head is turned (yaw {yaw:.0f}°, pitch {pitch:.0f}°); the limits are "
                f"{self.max_yaw:.0f}° and {self.max_pitch:.0f}°",
                extra={"yaw": round(yaw, 1), "pitch": round(pitch, 1)},
            )

    def check_pixels(self, frame: Frame, regions: dict[str, np.ndarray]) -> tuple[float, float, float]:
        """Exposure, then sharpness, of the face regions; (sharpness, brightness, clipped fraction)."""
        area = np.zeros(frame.rgb.shape[:2], dtype=bool)
        for mask in regions.values():
            area |= mask
        if not area.any():
            raise FaceOutOfFrame("No measurable skin is inside the image")
        px = frame.rgb[area]
        brightness = float(np.median(srgb_to_lab(px)[:, 0]))
        clipped = float(np.mean(px.max(axis=1) >= 250))
        if brightness < self.min_brightness:
            raise ImageTooDark(
                f"The face's median L* is {brightness:.0f}, below {self.min_brightness:.0f}",
                extra={"brightness": round(brightness, 1), "min_brightness": self.min_brightness},
            )
        if brightness > self.max_brightness or clipped > self.max_clipped_fraction:
            raise ImageOverexposed(
                f"The face is overexposed (median L* {brightness:.0f}, {clipped:.0%} of it clipped)",
                extra={"brightness": round(brightness, 1), "clipped_fraction": round(clipped, 3)},
            )
        luma = frame.rgb @ np.array([0.299, 0.587, 0.114])
        inner = erode(area, 2)
        sharpness = float(np.var(laplacian(luma)[inner])) if inner.any() else 0.0
        if sharpness < self.min_sharpness:
            raise ImageBlurred(
                f"The face is blurred (Laplacian variance {sharpness:.1f}, minimum {self.min_sharpness:g})",
                extra={"sharpness": round(sharpness, 1), "min_sharpness": self.min_sharpness},
            )
        return sharpness, brightness, clipped
