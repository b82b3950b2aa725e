"""app.api.deps: who may call what -- `require_admin` (401 without credentials, 403 for anyone
else), `current_user` (a logged-in user), `history_admin` (an admin or ADMIN_TOKEN), and the
`service` dependency's 503 before the lifespan built the services."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.api.deps import require_admin
from app.core.config import Settings
from app.core.errors import Forbidden, Unauthorized
from app.main import create_app
from app.services.accounts.principals import Principal
from tests.conftest import shared_registry
from tests.logins import PASSWORD, SMALL, client_from, running

ADMIN_TOKEN = "history-admin-token-0123456789"


def test_require_admin_refuses_others_by_whether_they_sent_credentials() -> None:
    admin = Principal(id="user:1", kind="admin", user_id=1)
    assert require_admin(admin) is admin
    with pytest.raises(Unauthorized) as anonymous:
        require_admin(Principal(id="anonymous", kind="anonymous"))
    assert anonymous.value.headers["WWW-Authenticate"] == "Bearer"
    for other in (Principal(id="user:2", kind="user", user_id=2), Principal(id="key:k", kind="api_key")):
        with pytest.raises(Forbidden):
            require_admin(other)


async def test_user_and_admin_dependencies_over_http(make_settings: Callable[..., Settings]) -> None:
    async with (
        running(make_settings(**SMALL, admin_token=ADMIN_TOKEN)) as app,
        client_from(app, "10.0.0.1") as c,
    ):
        body = {"username": "alice", "password": PASSWORD}
        assert (await c.post("/api/v1/auth/register", json=body)).status_code == 201
        token = (await c.post("/api/v1/auth/login", json=body)).json()["access_token"]
        user = {"Authorization": f"Bearer {token}"}
        assert (await c.get("/v1/me")).status_code == 401  # current_user: anonymous
        assert (await c.get("/v1/me", headers=user)).status_code == 200
        assert (await c.get("/stats", headers=user)).status_code == 403  # current_admin
        assert (await c.delete("/history", headers=user)).status_code == 403  # history_admin
        assert (
            await c.delete("/history", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        ).status_code == 204


async def test_a_service_is_503_before_the_lifespan_built_it(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), registry=shared_registry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        resp = await c.get("/api/v1/images")
    assert resp.status_code == 503
    assert resp.json()["code"] == "service_unavailable"
