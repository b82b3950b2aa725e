"""The face analyzer and its backends: detection, landmarks, regions, segmentation."""
