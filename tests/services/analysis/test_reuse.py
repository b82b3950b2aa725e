"""app.services.analysis.reuse: near-duplicates of an uploaded image among the catalog's images
(scikit-image photos, through a running app) -- nearest first, the same upright size only for
analyzers whose results are pixel coordinates, none for analyzers that reuse nothing, the hash
computed once when first needed; the threshold is a setting a request may only tighten; a reused
body answers for the new image and says so."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from PIL import Image
from skimage import data

from app.core.config import Settings
from app.core.errors import ValidationFailed
from app.services.accounts.principals import Principal
from app.services.analysis.reuse import Candidate, PerceptualReuse, Reuse, reused_body
from tests.factories import encode
from tests.logins import client_from, running

ANONYMOUS = Principal(id="anonymous", kind="anonymous")
ASTRONAUT = Image.fromarray(data.astronaut())


async def upload(api: httpx.AsyncClient, body: bytes) -> str:
    resp = await api.post("/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


def test_a_reused_body_answers_for_the_new_image_and_says_so() -> None:
    raw = json.dumps({"image_id": "old", "labels": ["cat"]}).encode()
    body = json.loads(reused_body(raw, "new", Reuse("old", 3)))
    assert body == {"image_id": "new", "labels": ["cat"], "reused_from": {"image_id": "old", "distance": 3}}


async def test_near_duplicates_are_found_by_size_as_the_analyzer_needs(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        running(make_settings(perceptual_reuse_distance=20)) as app,
        client_from(app, "10.0.0.1") as api,
    ):
        first = await upload(api, encode(ASTRONAUT, "JPEG", quality=95))
        half = await upload(api, encode(ASTRONAUT.resize((256, 256)), "JPEG", quality=85))
        other = await upload(api, encode(Image.fromarray(data.chelsea()), "JPEG", quality=95))
        again = await upload(api, encode(ASTRONAUT, "JPEG", quality=60))
        services = app.state.services
        reuse: PerceptualReuse = services.analysis.reuse
        image = await services.images.get(first, ANONYMOUS)
        assert image.metadata.perceptual_hash is None  # not hashed at upload (the default)
        hashed = await reuse.hash_of(image)  # computed once, stored in the row
        assert hashed is not None
        assert (await services.images.get(first, ANONYMOUS)).metadata.perceptual_hash == hashed
        for earlier in (half, other):
            assert await reuse.hash_of(await services.images.get(earlier, ANONYMOUS)) is not None
        image = await services.images.get(again, ANONYMOUS)
        classify, face, skin = (services.registry.get(name) for name in ("classify", "face", "skin"))

        labels = await reuse.candidates(image, classify, reuse.max_distance(classify, None))
        assert {c.image_id for c in labels} == {first, half}  # any size; not the other photo
        assert [c.distance for c in labels] == sorted(c.distance for c in labels)  # nearest first
        contours = await reuse.candidates(image, face, reuse.max_distance(face, None))
        assert [c.image_id for c in contours] == [first]  # same pixel size only
        assert all(isinstance(c, Candidate) and c.distance <= 20 for c in labels)
        assert reuse.max_distance(skin, None) == 0
        assert await reuse.candidates(image, skin, 0) == []

        assert reuse.max_distance(classify, 5) == 5
        with pytest.raises(ValidationFailed):
            reuse.max_distance(classify, 21)
