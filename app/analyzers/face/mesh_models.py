"""MediaPipe BlazeFace (full range) + Face Mesh (468 points) on ONNX Runtime, without mediapipe.

The two models come from the PyPI wheel `mediapipe==0.10.21`, converted to ONNX at set-up
(`scripts/fetch_face_mesh.py`); this module only loads them. The pre- and post-processing
follows the wheel's own FaceLandmarkFrontCpu graph (its expanded CalculatorGraphConfig):

- detection (`face_detection_full_range_common.pbtxt`): a square of the image letterboxed
  (aspect kept, centred, zero border) to 192x192, RGB in [-1, 1]; 2304 SSD anchors (one
  layer of 48x48 cells, stride 4, one fixed-size anchor per cell); 16 regressors per anchor
  (box centre and size, 6 keypoints: eyes, nose tip, mouth, ears) in 192-px units; score =
  sigmoid(clip(logit, +-100)) >= 0.6; weighted non-maximum suppression at IoU 0.3 (a box
  is the score-weighted mean of those it absorbs). On its own (the whole image at once) it
  finds faces down to ~10 % of the image's long side (a face of ~19 px in the 192-px input);
- tiles (`detect(..., tiles=True)`): the whole image, then overlapping square tiles of
  TILE_FRACTION (0.45) of the long side, each overlapping the next by TILE_OVERLAP (0.15)
  of it, so that a face of 5 % of the long side is ~21 px in a tile's input and every face
  the whole-image pass can miss lies whole in one tile. A tile's detection that touches a
  tile edge inside the image is dropped (that face is whole in another tile or the whole
  image); the rest are merged by the same weighted NMS, in image pixels. Tiles smaller than
  the 192-px input are not run (they would only be magnified);
- region of interest: the detection box made square on its long side, scaled by 1.5, rotated
  so that the eye keypoints are level;
- mesh: that rotated square resampled to 192x192 (bilinear after an integer box reduction,
  edges replicated), RGB in [0, 1]; 468 (x, y, z) points in crop pixels mapped back to the
  image; a face-presence logit (sigmoid >= 0.5 keeps the face). z has the scale of x,
  negative towards the camera.

Licence: both models are Apache-2.0 (MediaPipe; the wheel's LICENSE is copied beside them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

DETECTOR_FILE = "face_detection_full_range.onnx"
MESH_FILE = "face_landmark.onnx"
DET_SIZE = 192
MESH_SIZE = 192
MIN_SCORE = 0.6
NMS_IOU = 0.3
ROI_SCALE = 1.5
MIN_PRESENCE = 0.5
TILE_FRACTION = 0.45  # tile side / the image's long side
TILE_OVERLAP = 0.15  # overlap of neighbouring tiles / the image's long side
EDGE_MARGIN = 0.02  # a tile's detection this close to an inner tile edge (share of the tile) is cut


def _anchors(strides: tuple[int, ...] = (4,), per_layer: int = 1) -> np.ndarray:
    """SSD anchor centres (fixed size), in the order of MediaPipe's SsdAnchorsCalculator
    (`per_layer` anchors per cell and layer: 1 without an interpolated scale, else 2)."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = per_layer * (j - i)
        fm = math.ceil(DET_SIZE / strides[i])
        out += [
            ((x + 0.5) / fm, (y + 0.5) / fm) for y in range(fm) for x in range(fm) for _ in range(per_cell)
        ]
        i = j
    return np.asarray(out, dtype=np.float64)


ANCHORS = _anchors()


@dataclass(frozen=True)
class Detection:
    """A detected face in image pixels: score, box (x0, y0, x1, y1), 6 keypoints (6, 2)."""

    score: float
    box: np.ndarray
    keypoints: np.ndarray


@dataclass(frozen=True)
class Roi:
    """A rotated square: centre, side (pixels) and rotation (radians, y down)."""

    cx: float
    cy: float
    size: float
    rotation: float


def letterbox(
    image: Image.Image, box: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The detector input (1, 192, 192, 3) in [-1, 1] of `image` (or of its region `box`,
    x0, y0, x1, y1) and the map back to the region's pixels (sx, sy, ox, oy)."""
    x0, y0, x1, y1 = box or (0, 0, *image.size)
    w, h = x1 - x0, y1 - y0
    s = DET_SIZE / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = image.resize((nw, nh), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=3.0)
    ox, oy = (DET_SIZE - nw) // 2, (DET_SIZE - nh) // 2
    canvas = np.zeros((DET_SIZE, DET_SIZE, 3), np.float32)
    canvas[oy : oy + nh, ox : ox + nw] = np.asarray(small, np.float32)
    return (canvas * (2.0 / 255.0) - 1.0)[None], (w / nw, h / nh, ox, oy)


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile origins covering [0, length): evenly spread, none further apart than `step`."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_boxes(
    size: tuple[int, int], fraction: float = TILE_FRACTION, overlap: float = TILE_OVERLAP
) -> list[tuple[int, int, int, int]]:
    """Square tiles (x0, y0, x1, y1) of `fraction` of the long side (at most the short side),
    overlapping by at least `overlap` of it, covering an image of `size`. None where a tile
    would be smaller than the detector's input (it would only be magnified)."""
    w, h = size
    side = min(round(fraction * max(w, h)), w, h)
    if fraction >= 1 or side < DET_SIZE:
        return []
    step = max(1, side - round(overlap * max(w, h)))
    return [(x, y, x + side, y + side) for y in _starts(h, side, step) for x in _starts(w, side, step)]


def _iou(b: np.ndarray, bs: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(b[2], bs[:, 2]) - np.maximum(b[0], bs[:, 0]), 0, None)
    iy = np.clip(np.minimum(b[3], bs[:, 3]) - np.maximum(b[1], bs[:, 1]), 0, None)
    inter = ix * iy
    union = (b[2] - b[0]) * (b[3] - b[1]) + (bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, min_score: float = MIN_SCORE
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(score, box xyxy, keypoints (6, 2)) per face in [0, 1] letterbox units, best first."""
    with np.errstate(over="ignore"):
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100.0, 100.0)))
    keep = np.nonzero(scores >= min_score)[0]
    r = regressors.reshape(-1, 16)[keep].astype(np.float64) / DET_SIZE
    a = ANCHORS[keep]
    xc, yc, w, h = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1], r[:, 2], r[:, 3]
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], 1)
    kps = r[:, 4:].reshape(-1, 6, 2) + a[:, None, :]
    return weighted_nms(scores[keep], boxes, kps)


def weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, kps: np.ndarray
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression at NMS_IOU; (score, box, keypoints), best first."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:  # weighted NMS: the top box absorbs every box overlapping it by > 0.3
        top = order[0]
        sim = _iou(boxes[top], boxes[order])
        cand = order[sim > NMS_IOU] if (sim > NMS_IOU).any() else order[:1]
        wts = scores[cand][:, None]
        box = (boxes[cand] * wts).sum(0) / wts.sum()
        kp = (kps[cand] * wts[:, :, None]).sum(0) / wts.sum()
        out.append((float(scores[top]), box, kp))
        order = order[sim <= NMS_IOU]
    return out


def roi_from_detection(det: Detection) -> Roi:
    """The mesh's region of interest: square on the long side x 1.5, eyes level."""
    x0, y0, x1, y1 = det.box
    (ex0, ey0), (ex1, ey1) = det.keypoints[0], det.keypoints[1]
    rot = (math.atan2(ey1 - ey0, ex1 - ex0) + math.pi) % (2 * math.pi) - math.pi
    return Roi(float(x0 + x1) / 2, float(y0 + y1) / 2, float(max(x1 - x0, y1 - y0)) * ROI_SCALE, rot)


def warp_roi(image: Image.Image, roi: Roi, out: int = MESH_SIZE) -> Image.Image:
    """The rotated square `roi` of `image` resampled to out x out pixels (same mode).

    The axis-aligned bounding region is cut first (edges replicated where it leaves the
    image), box-reduced by an integer factor against aliasing, then warped bilinearly.
    """
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    half = roi.size / 2 * (abs(c) + abs(s)) + 2
    rx0, ry0 = math.floor(roi.cx - half), math.floor(roi.cy - half)
    rx1, ry1 = math.ceil(roi.cx + half), math.ceil(roi.cy + half)
    w, h = image.size
    cx0, cy0, cx1, cy1 = max(rx0, 0), max(ry0, 0), min(rx1, w), min(ry1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return Image.new(image.mode, (out, out))
    region = image.crop((cx0, cy0, cx1, cy1))
    if (cx0, cy0, cx1, cy1) != (rx0, ry0, rx1, ry1):
        pad = ((cy0 - ry0, ry1 - cy1), (cx0 - rx0, rx1 - cx1), (0, 0))
        region = Image.fromarray(np.pad(np.asarray(region), pad, mode="edge"))
    f = max(1, int(roi.size / out))
    if f >= 2:
        region = region.reduce(f)
    k = roi.size / out / f
    ox, oy = (roi.cx - rx0) / f, (roi.cy - ry0) / f
    a, b, d, e = c * k, -s * k, s * k, c * k
    coeffs = (a, b, ox - (a + b) * out / 2, d, e, oy - (d + e) * out / 2)
    return region.transform((out, out), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)


def crop_roi(image: Image.Image, roi: Roi, out: int = MESH_SIZE) -> np.ndarray:
    """The mesh input: `warp_roi` of an RGB image as (1, out, out, 3) float32 in [0, 1]."""
    return (np.asarray(warp_roi(image, roi, out), np.float32) * (1.0 / 255.0))[None]


def project_landmarks(raw: np.ndarray, roi: Roi) -> np.ndarray:
    """Mesh output (1404 values, crop pixels) -> (468, 3) image pixels."""
    p = raw.reshape(468, 3).astype(np.float64) / MESH_SIZE
    x, y = p[:, 0] - 0.5, p[:, 1] - 0.5
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    out = np.empty_like(p)
    out[:, 0] = roi.cx + (c * x - s * y) * roi.size
    out[:, 1] = roi.cy + (s * x + c * y) * roi.size
    out[:, 2] = p[:, 2] * roi.size
    return out


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning intra-op threads compete with decoding and numpy on few cores: off.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def find_models(model_dir: Path) -> tuple[Path, Path]:
    """The detector and mesh ONNX files in `model_dir`, or FileNotFoundError saying how to make them."""
    paths = (Path(model_dir) / DETECTOR_FILE, Path(model_dir) / MESH_FILE)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Face mesh models {missing} not found; create them with "
            f"`python scripts/fetch_face_mesh.py --model-dir {model_dir}` (or `make install`)"
        )
    return paths


class FaceMesh:
    """BlazeFace + Face Mesh sessions (thread-safe: ONNX Runtime sessions may run concurrently)."""

    def __init__(self, model_dir: Path, intra_op_threads: int = 1) -> None:
        det_path, mesh_path = find_models(model_dir)
        self._det = _session(det_path, intra_op_threads)
        self._mesh = _session(mesh_path, intra_op_threads)
        self._det_in = self._det.get_inputs()[0].name
        self._mesh_in = self._mesh.get_inputs()[0].name
        # Outputs by size: regressors (896x16) before scores; landmarks (1404) before presence.
        self._det_out = [
            o.name for o in sorted(self._det.get_outputs(), key=lambda o: -int(np.prod(o.shape)))
        ]
        self._mesh_out = [
            o.name for o in sorted(self._mesh.get_outputs(), key=lambda o: -int(np.prod(o.shape)))
        ]

    def _detect_region(
        self, image: Image.Image, region: tuple[int, int, int, int], min_score: float
    ) -> list[Detection]:
        """Faces found in `region` of `image` (one model run), in image pixels."""
        x, (sx, sy, ox, oy) = letterbox(image, region)
        reg, logits = self._det.run(self._det_out, {self._det_in: x})
        out = []
        for score, box, kp in decode_detections(reg, logits, min_score):
            b, k = box * DET_SIZE, kp * DET_SIZE
            b = np.array([(b[0] - ox) * sx, (b[1] - oy) * sy, (b[2] - ox) * sx, (b[3] - oy) * sy])
            k = np.stack([(k[:, 0] - ox) * sx, (k[:, 1] - oy) * sy], 1)
            dx, dy = region[0], region[1]
            out.append(Detection(score, b + [dx, dy, dx, dy], k + [dx, dy]))
        return out

    def detect(
        self,
        image: Image.Image,
        min_score: float = MIN_SCORE,
        *,
        tiles: bool = False,
        tile_fraction: float = TILE_FRACTION,
        tile_overlap: float = TILE_OVERLAP,
        whole: list[Detection] | None = None,
    ) -> list[Detection]:
        """Faces of an RGB image in image pixels, most confident first: the whole image (or
        `whole`, its detections found before), and with `tiles` also overlapping tiles (smaller
        faces; see the module docstring)."""
        if whole is None:
            whole = self._detect_region(image, (0, 0, *image.size), min_score)
        if not tiles:
            return whole
        found = list(whole)
        w, h = image.size
        for t in tile_boxes(image.size, tile_fraction, tile_overlap):
            m = EDGE_MARGIN * (t[2] - t[0])
            for d in self._detect_region(image, t, min_score):
                x0, y0, x1, y1 = d.box
                cut = (
                    (t[0] > 0 and x0 < t[0] + m)
                    or (t[1] > 0 and y0 < t[1] + m)
                    or (t[2] < w and x1 > t[2] - m)
                    or (t[3] < h and y1 > t[3] - m)
                )
                if not cut:
                    found.append(d)
        if len(found) <= 1:
            return found
        merged = weighted_nms(
            np.array([d.score for d in found]),
            np.stack([d.box for d in found]),
            np.stack([d.keypoints for d in found]),
        )
        return [Detection(score, box, kp) for score, box, kp in merged]

    def landmarks(self, image: Image.Image, det: Detection) -> tuple[np.ndarray, float]:
        """The 468 mesh points (468, 3) of a detected face, in image pixels, and face presence."""
        roi = roi_from_detection(det)
        raw, flag = self._mesh.run(self._mesh_out, {self._mesh_in: crop_roi(image, roi)})
        presence = 1.0 / (1.0 + math.exp(-float(np.asarray(flag).reshape(-1)[0])))
        return project_landmarks(np.asarray(raw).reshape(-1), roi), presence
