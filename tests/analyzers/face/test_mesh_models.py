"""The face mesh's pure geometry: detector tiles, letterbox, anchors' decoding, weighted NMS, the
mesh's region of interest, its crop and the landmarks' way back to image pixels (the ONNX
sessions themselves are exercised through the face and skin analyzers' tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from app.analyzers.face.mesh_models import (
    ANCHORS,
    DET_SIZE,
    MESH_SIZE,
    ROI_SCALE,
    Detection,
    Roi,
    decode_detections,
    letterbox,
    project_landmarks,
    roi_from_detection,
    tile_boxes,
    warp_roi,
    weighted_nms,
)


def test_tiles_overlap_and_cover_the_image() -> None:
    tiles = tile_boxes((1000, 750))
    assert len(tiles) == 6 and all(t[2] - t[0] == t[3] - t[1] == 450 for t in tiles)
    covered = np.zeros((750, 1000), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 450 - 150 for a, b in zip(xs, xs[1:], strict=False))  # overlap >= 0.15 L
    assert tile_boxes((300, 200)) == []  # a tile would be smaller than the 192-px input


def test_letterbox_keeps_the_aspect_ratio_and_maps_back() -> None:
    image = Image.new("RGB", (384, 192), (255, 0, 0))
    tensor, (sx, sy, ox, oy) = letterbox(image)
    assert tensor.shape == (1, DET_SIZE, DET_SIZE, 3) and tensor.dtype == np.float32
    assert (sx, sy, ox, oy) == (2.0, 2.0, 0, 48)  # 384 x 192 -> 192 x 96, centred vertically
    assert tensor[0, 48, 0].tolist() == [1.0, -1.0, -1.0]  # red in [-1, 1]
    assert tensor[0, 47, 0].tolist() == [-1.0, -1.0, -1.0]  # the letterbox band is black
    _, (sx, sy, ox, oy) = letterbox(image, (0, 0, 96, 192))  # a region: 96 x 192 -> 96 x 192
    assert (sx, sy, ox, oy) == (1.0, 1.0, 48, 0)


def test_decode_detections_reads_boxes_and_keypoints_relative_to_their_anchor() -> None:
    regressors = np.zeros((len(ANCHORS), 16), np.float32)
    logits = np.full(len(ANCHORS), -10.0, np.float32)
    i = len(ANCHORS) // 2
    regressors[i, :4] = (9.6, -9.6, 48.0, 24.0)  # centre offset and size, in input pixels
    regressors[i, 4:6] = (-19.2, 0.0)  # keypoint 0
    logits[i] = 5.0
    found = decode_detections(regressors, logits)
    assert len(found) == 1
    score, box, kps = found[0]
    assert score == pytest.approx(1 / (1 + math.exp(-5.0)))
    cx, cy = ANCHORS[i][0] + 0.05, ANCHORS[i][1] - 0.05
    assert box == pytest.approx([cx - 0.125, cy - 0.0625, cx + 0.125, cy + 0.0625])
    assert kps[0] == pytest.approx([ANCHORS[i][0] - 0.1, ANCHORS[i][1]])
    assert decode_detections(regressors, np.full(len(ANCHORS), -10.0, np.float32)) == []


def test_weighted_nms_merges_overlaps_by_score_and_keeps_apart_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    kps = np.zeros((3, 6, 2))
    kps[1] += 3.0
    found = weighted_nms(np.array([0.9, 0.3, 0.6]), boxes, kps)
    assert [round(score, 2) for score, _, _ in found] == [0.9, 0.6]
    merged_box, merged_kps = found[0][1], found[0][2]
    assert merged_box == pytest.approx([0.25, 0, 10.25, 10])  # (0.9 * 0 + 0.3 * 1) / 1.2
    assert merged_kps[0] == pytest.approx([0.75, 0.75])
    assert found[1][1] == pytest.approx(boxes[2])


def test_the_roi_is_the_long_side_enlarged_with_the_eyes_level() -> None:
    keypoints = np.zeros((6, 2))
    keypoints[0], keypoints[1] = (40, 50), (60, 50)
    level = roi_from_detection(Detection(0.9, np.array([20.0, 30.0, 80.0, 110.0]), keypoints))
    assert level == Roi(50.0, 70.0, 80.0 * ROI_SCALE, 0.0)
    keypoints[1] = (40, 70)  # the second eye straight below the first: rotated a quarter turn
    turned = roi_from_detection(Detection(0.9, np.array([20.0, 30.0, 80.0, 110.0]), keypoints))
    assert turned.rotation == pytest.approx(math.pi / 2)


def test_warp_roi_and_project_landmarks_are_inverse() -> None:
    y, x = np.mgrid[0:300, 0:300]
    image = Image.fromarray(np.stack([x % 256, y % 256, np.zeros_like(x)], -1).astype(np.uint8))
    roi = Roi(150.0, 140.0, 96.0, math.radians(30))
    crop = np.asarray(warp_roi(image, roi, out=MESH_SIZE))
    assert crop.shape == (MESH_SIZE, MESH_SIZE, 3)
    raw = np.zeros((468, 3))
    raw[0] = (MESH_SIZE / 2, MESH_SIZE / 2, 0)  # the crop's centre is the roi's centre
    raw[1] = (MESH_SIZE * 0.75, MESH_SIZE / 2, 19.2)  # a quarter crop to the right, along the roi
    points = project_landmarks(raw.reshape(-1), roi)
    assert points[0] == pytest.approx([150.0, 140.0, 0.0])
    assert points[1] == pytest.approx(
        [150.0 + 24 * math.cos(math.radians(30)), 140.0 + 24 * math.sin(math.radians(30)), 9.6]
    )
    # the crop's pixel there shows the image's pixel at the projected point
    px, py = points[1][:2]
    r, g, _ = crop[MESH_SIZE // 2, int(MESH_SIZE * 0.75)].astype(int)
    assert abs(r - px) <= 2 and abs(g - py) <= 2
