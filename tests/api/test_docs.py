"""OpenAPI and offline docs: Swagger UI and ReDoc work without a CDN."""

from __future__ import annotations

import re

import httpx
import pytest


async def test_docs_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, page
        assert not [u for u in urls if u.startswith(("http://", "https://", "//"))], urls
        for url in urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url


@pytest.mark.filterwarnings("error")  # e.g. FastAPI's duplicate-operation-id warning
async def test_openapi_describes_upload_as_file_picker(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/upload", "/api/v1/upload"):
        op = spec["paths"][path]["post"]
        schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert schema["properties"]["file"]["format"] == "binary"
        assert schema["required"] == ["file"]
        assert {"201", "400", "401", "413"} <= set(op["responses"])
        assert "Idempotency-Key" in {p["name"] for p in op["parameters"]}
    assert "X-API-KEY" in str(spec["components"]["securitySchemes"])
    analyze = spec["paths"]["/api/v1/analyze"]["post"]
    assert {"200", "400", "404"} <= set(analyze["responses"])
    examples = analyze["responses"]["400"]["content"]["application/problem+json"]["examples"]
    assert "unknown_analyzer" in examples
    assert {t["name"] for t in spec["tags"]} >= {"images", "analyses", "health"}
