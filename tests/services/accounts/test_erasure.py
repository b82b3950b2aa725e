"""app.services.accounts.erasure: erasing a user removes their images (files and records) and
the account, leaves other users' data alone, can be run again after a crash, and is refused to a
caller that is not a user (the service of a running app on a tmp data dir)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.core.errors import Unauthorized
from app.services.accounts.erasure import AccountEraser
from app.services.accounts.principals import Principal
from tests.conftest import files_under
from tests.factories import jpeg_bytes
from tests.logins import PASSWORD, SMALL, client_from, running


async def user_with_image(api: httpx.AsyncClient, name: str, color: tuple[int, int, int]) -> tuple[int, str]:
    """A new user's id and the id of an image they uploaded."""
    body = {"username": name, "password": PASSWORD}
    registered = await api.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    token = (await api.post("/api/v1/auth/login", json=body)).json()["access_token"]
    resp = await api.post(
        "/api/v1/upload",
        files={"file": ("me.jpg", jpeg_bytes(color=color), "image/jpeg")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 201, resp.text
    return int(registered.json()["id"]), str(resp.json()["image_id"])


async def test_erasure_removes_the_users_images_and_account_only(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with running(make_settings(**SMALL)) as app, client_from(app, "10.0.0.1") as api:
        alice, alice_image = await user_with_image(api, "alice", (9, 99, 199))
        _, bob_image = await user_with_image(api, "bob", (199, 99, 9))
        eraser: AccountEraser = app.state.services.eraser
        principal = Principal(id=f"user:{alice}", kind="user", user_id=alice)
        await eraser.erase(principal)
        await eraser.erase(principal)  # a retry (after a crash) finds nothing left and succeeds
        files = "\n".join(files_under(data_dir))
        assert alice_image not in files and bob_image in files
        login = await api.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 401
        assert (
            await api.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
        ).is_success
        with pytest.raises(Unauthorized):
            await eraser.erase(Principal(id="anonymous", kind="anonymous"))
