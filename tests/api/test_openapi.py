"""app.api.openapi: the OpenAPI document follows the settings -- each operation's security from
what its dependencies demand and the access mode, the metrics token when set, 400
`validation_error` instead of 422, 401 where credentials are read. (Schemathesis checks the
whole document against the running app in tests/api/test_schemathesis.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.core.config import Settings
from app.main import create_app
from tests.conftest import shared_registry

API_KEY = "schemathesis-key-0123456789"
MODES: dict[str, dict[str, Any]] = {
    "open": {},
    "api_keys": {"api_keys": [API_KEY]},
    "accounts": {"anonymous_access": False},
}


@pytest.mark.parametrize(
    ("mode", "caller", "api_key"),
    [("open", [{"OAuth2PasswordBearer": []}, {}], False), ("api_keys", [], True), ("accounts", [], False)],
)
def test_openapi_security_follows_the_settings(
    mode: str, caller: list[dict[str, list[str]]], api_key: bool, make_settings: Callable[..., Settings]
) -> None:
    spec = create_app(make_settings(**MODES[mode]), registry=shared_registry()).openapi()
    paths = spec["paths"]
    bearer: list[dict[str, list[str]]] = [{"OAuth2PasswordBearer": []}]
    expected = caller or ([{"APIKeyHeader": []}] if api_key else []) + bearer
    for path, method in (
        ("/api/v1/upload", "post"),
        ("/api/v1/images/{image_id}", "delete"),
        ("/forward", "post"),
    ):
        operation = paths[path][method]
        assert operation["security"] == expected, (path, method)
        assert "401" in operation["responses"]
    for path, method in (("/v1/me", "get"), ("/history", "delete"), ("/stats", "get")):
        assert paths[path][method]["security"] == bearer, (path, method)
    assert paths["/register"]["post"]["security"][-1] == {}  # credentials optional: only an admin's matter
    assert "security" not in paths["/health"]["get"] and "security" not in paths["/v1/login"]["post"]
    content = paths["/api/v1/images/{image_id}/content"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"image/jpeg", "image/png", "image/webp", "image/heic", "image/avif"}
    assert "422" not in paths["/api/v1/images"]["get"]["responses"]
    assert "validation_error" in str(paths["/api/v1/images"]["get"]["responses"]["400"])
    assert "HTTPValidationError" not in str(spec)


def test_openapi_declares_the_metrics_token_when_set(make_settings: Callable[..., Settings]) -> None:
    spec = create_app(make_settings(metrics_token="m" * 24), registry=shared_registry()).openapi()
    assert spec["paths"]["/metrics"]["get"]["security"] == [{"MetricsToken": []}]
    assert spec["components"]["securitySchemes"]["MetricsToken"]["scheme"] == "bearer"
    open_spec = create_app(make_settings(), registry=shared_registry()).openapi()
    assert "security" not in open_spec["paths"]["/metrics"]["get"]
