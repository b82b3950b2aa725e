"""The measured skin analysis's shared fixtures: the face mesh models, the analyzer over them,
and scikit-image's astronaut (loaded once per module)."""

from __future__ import annotations

import pytest
from PIL import Image
from skimage import data

from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer
from tests.conftest import MODEL_DIR


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(MODEL_DIR)


@pytest.fixture(scope="module")
def analyzer(mesh: FaceMesh) -> SkinMeasureAnalyzer:
    return SkinMeasureAnalyzer(mesh)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())
