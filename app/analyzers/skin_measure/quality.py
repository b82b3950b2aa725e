"""The quality gate of the measured skin analysis: photos it cannot judge are refused (422).

Checked in this order, each with its own stable code and a threshold from the settings:

- `no_face_detected`: no face (BlazeFace), or the mesh says there is none;
- `face_too_small`: the face box's shorter side < SKIN_MIN_FACE_PX (80, original pixels);
- `multiple_faces`: more faces than SKIN_MAX_FACES (1), counting those of at least that size
  and SKIN_OTHER_FACE_RATIO (0.75) of the measured (largest) face's size: a much smaller face
  is a bystander, not a doubt about whose skin is measured;
- `face_out_of_frame`: the share of the measured regions' mesh points outside the image is
  above SKIN_MAX_OUTSIDE_FRACTION (0);
- `head_turned`: abs(yaw) > SKIN_MAX_YAW_DEGREES or abs(pitch) > SKIN_MAX_PITCH_DEGREES (25);
- `image_too_dark`: the photo's highlights (99th percentile L* of the whole photo) are below
  SKIN_MIN_HIGHLIGHT_L (45): nothing in it is bright (also asked when no face is found, so
  that a dark photo gets this rather than `no_face_detected`); or the eyes' whites (90th percentile L*
  inside the eye openings, when they are open) are below SKIN_MIN_EYE_WHITE_L (45): the face
  is in shadow or the photo under-exposed;
- `image_overexposed`: the eyes' whites are above SKIN_MAX_EYE_WHITE_L (90), or the share of
  skin pixels with a channel saturated (255) is above SKIN_MAX_CLIPPED_FRACTION (0.5: from
  there the median skin colour is a clipped value). Saturated, not "near white": the lightest
  Monk swatches' own red channel is 243-247, so "a channel >= 250" read 46-52 % of their
  well-exposed skin as clipped (docs/skin-methods.md, "Clipping");
- `image_blurred`: the variance of the Laplacian of the luma (0-255) of the eyes and brows
  (grown by 3 px) is below SKIN_MIN_SHARPNESS (40).

Exposure and sharpness are judged from what does not depend on the skin's own colour: the
skin's lightness *is* what is measured, so a gate on it (the median L* of the face) refused the
darkest Monk tones (L* 15-21) as "too dark" and the lightest (L* 92-94) as "overexposed", and
a Laplacian of skin texture reads 5x lower on Monk 10 than on Monk 5 at the same focus. The
eyes' whites are lit like the skin but are near-white on every face (a white reference the
subject brings along); the photo's highlights say whether anything in it is bright; the edges of eyes,
lashes and brows have high contrast on every skin tone. Measured on the canonical frame
(`skin_frame`), so the thresholds mean the same for every face size (Pech-Pacheco et al. 2000
use the variance of the Laplacian as a focus measure). Exposure is checked before sharpness: a
dark photo also has a weak Laplacian.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from app.analyzers.face.mesh_backend import MeshFace
from app.analyzers.face.mesh_regions import polygons
from app.analyzers.skin_measure.color import srgb_to_lab
from app.analyzers.skin_measure.frame import Frame, laplacian
from app.core.errors import (
    FaceOutOfFrame,
    HeadTurned,
    ImageBlurred,
    ImageOverexposed,
    ImageTooDark,
    MultipleFaces,
)

SATURATED = 255  # a channel at the top of its range: the true value is unknown (clipped)
MIN_EYE_PIXELS = 60  # canonical pixels of both eye openings (~600 when open) to read their whites


@dataclass(frozen=True)
class PixelQuality:
    """What the gate measured on the pixels (each passed its threshold)."""

    sharpness: float
    brightness: float  # median L* of the face regions (reported, not gated)
    clipped: float  # share of face-region pixels with a channel saturated (255)
    highlights: float  # 99th percentile L* of the whole photo
    eye_white: float | None  # 90th percentile L* inside the eye openings; None: eyes closed


@dataclass(frozen=True)
class QualityGate:
    """Thresholds of the quality gate (defaults: the settings' defaults; `app.analyzers.settings`
    builds it from the SKIN_* settings)."""

    min_face_px: int = 80
    max_faces: int = 1
    max_outside_fraction: float = 0.0
    max_yaw: float = 25.0
    max_pitch: float = 25.0
    min_highlight_l: float = 45.0
    min_eye_white_l: float = 45.0
    max_eye_white_l: float = 90.0
    max_clipped_fraction: float = 0.5
    min_sharpness: float = 40.0
    other_face_ratio: float = 0.75

    def check_face(self, face: MeshFace, size: tuple[int, int], pose: tuple[float, float, float]) -> None:
        """Other faces, framing and head pose (the face's size is checked by `find_face`)."""
        least = max(self.min_face_px, self.other_face_ratio * face.size_px)
        faces = 1 + sum(1 for s in face.other_sizes if s >= least)
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

    def check_photo_exposure(self, photo: np.ndarray) -> None:
        """ImageTooDark if nothing in the photo is bright (its highlights, the 99th percentile
        L* of `photo`, the whole photo's Lab): asked when no face was found, so that an
        under-exposed photo is told "more light", not "no face"."""
        highlights = float(np.percentile(photo[..., 0], 99))
        if highlights < self.min_highlight_l:
            raise ImageTooDark(
                f"The photo is too dark: its highlights reach L* {highlights:.0f}, below "
                f"{self.min_highlight_l:.0f}",
                extra={"highlights": round(highlights, 1), "min_highlight_l": self.min_highlight_l},
            )

    def check_pixels(
        self,
        frame: Frame,
        regions: dict[str, np.ndarray],
        eyes: tuple[np.ndarray, np.ndarray],
        photo: np.ndarray,
    ) -> PixelQuality:
        """Exposure, then sharpness; `eyes` from `eye_masks`, `photo` the whole photo's Lab (..., 3)."""
        area = np.zeros(frame.rgb.shape[:2], dtype=bool)
        for mask in regions.values():
            area |= mask
        if not area.any():
            raise FaceOutOfFrame("No measurable skin is inside the image")
        px = frame.rgb[area]
        q = PixelQuality(
            sharpness=0.0,
            brightness=float(np.median(srgb_to_lab(px)[:, 0])),
            clipped=float(np.mean(px.max(axis=1) >= SATURATED)),
            highlights=float(np.percentile(photo[..., 0], 99)),
            eye_white=eye_white(frame, eyes[0]),
        )
        self.check_photo_exposure(photo)
        if q.eye_white is not None and q.eye_white < self.min_eye_white_l:
            raise ImageTooDark(
                f"The face is too dark: the eyes' whites reach L* {q.eye_white:.0f}, below "
                f"{self.min_eye_white_l:.0f}",
                extra={"eye_white": round(q.eye_white, 1), "min_eye_white_l": self.min_eye_white_l},
            )
        bright_eyes = q.eye_white is not None and q.eye_white > self.max_eye_white_l
        if bright_eyes or q.clipped > self.max_clipped_fraction:
            raise ImageOverexposed(
                f"The face is overexposed (eyes' whites at L* {q.eye_white or 0:.0f}, {q.clipped:.0%} of the "
                f"skin clipped; limits {self.max_eye_white_l:.0f} and {self.max_clipped_fraction:.0%})",
                extra={
                    "eye_white": None if q.eye_white is None else round(q.eye_white, 1),
                    "clipped_fraction": round(q.clipped, 3),
                },
            )
        luma = frame.rgb @ np.array([0.299, 0.587, 0.114])
        sharpness = float(np.var(laplacian(luma)[eyes[1]])) if eyes[1].any() else 0.0
        if sharpness < self.min_sharpness:
            raise ImageBlurred(
                f"The face is blurred (Laplacian variance {sharpness:.1f}, minimum {self.min_sharpness:g})",
                extra={"sharpness": round(sharpness, 1), "min_sharpness": self.min_sharpness},
            )
        return replace(q, sharpness=sharpness)


def eye_white(frame: Frame, openings: np.ndarray) -> float | None:
    """The eyes' whites: the 90th percentile L* inside the eye openings of the frame; None when
    they hold fewer than MIN_EYE_PIXELS pixels (eyes closed or hidden)."""
    if int(openings.sum()) < MIN_EYE_PIXELS:
        return None
    return float(np.percentile(srgb_to_lab(frame.rgb[openings])[:, 0], 90))
