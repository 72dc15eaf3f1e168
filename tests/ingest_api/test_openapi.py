"""The OpenAPI document: built from the route table, served with Swagger UI, and true.

Schemathesis runs against the live session server over every operation with a
valid key: no 5xx, and every response conforms to the document. Swagger UI is
loaded in Debian's headless Chromium, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio.to_thread
import asyncpg
import httpx
import pytest
from selenium import webdriver
from starlette.routing import Route

from ingest_api.openapi import OPERATIONS, build_document
from tests.support import new_tenant, submit_json, wait_for_status

#: Examples per operation and phase: enough to reach every parameter and media
#: type, few enough that the run takes about a minute.
MAX_EXAMPLES = 15
pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


async def _noop(request: object) -> None:  # pragma: no cover - never called
    raise AssertionError


def test_a_route_without_an_operation_is_an_error() -> None:
    routes = [Route("/v1/bulk-actions", _noop, methods=["GET"]), Route("/nope", _noop)]
    with pytest.raises(LookupError, match="GET /nope"):
        build_document(list(routes), OPERATIONS)


async def test_the_document_covers_every_route(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations == set(OPERATIONS)
    create = document["paths"]["/v1/bulk-actions"]["post"]
    assert set(create["requestBody"]["content"]) == {
        "application/json",
        "text/csv",
        "multipart/form-data",
    }
    assert {p["name"] for p in create["parameters"]} >= {"entity", "mapping", "Idempotency-Key"}
    assert "RateLimit-Remaining" in create["responses"]["202"]["headers"]
    assert "Retry-After" in create["responses"]["429"]["headers"]
    assert "ErrorBody" in document["components"]["schemas"]
    root = await api.get("/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (307, "/docs")


async def test_schemathesis_finds_no_server_error_and_no_drift(
    server: str, api: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant = await new_tenant(pool)
    # A real action of the key's account, so the id routes reach their logic, not only 404.
    action = await submit_json(api, tenant, [{"email": f"st{i}@example.com"} for i in range(5)])
    await wait_for_status(api, action["id"], tenant)
    # ... and a contact of its, for the entity API's id routes.
    contact = await api.post(
        "/v1/contacts", json={"email": "st@example.com"}, headers=tenant.headers
    )
    assert contact.status_code == 201, contact.text
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[parameters]\n"path.action_id" = "{action["id"]}"\n'
        f'"path.entity_id" = "{contact.json()["id"]}"\n'
    )
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{server}/openapi.json",
        "--header",
        f"Authorization: Bearer {tenant.key}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261124",
        "--request-timeout",
        "30",
        "--workers",
        "2",
        "--no-color",
    ]
    result = await anyio.to_thread.run_sync(_run, command, tmp_path)
    summary = result.stdout[-6000:]
    print(summary)
    assert result.returncode == 0, summary + result.stderr[-3000:]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.ingest_api.schemathesis_hooks",
        },
    )


def test_swagger_ui_renders_offline_in_chromium(
    server: str, tmp_path: Path, browser: webdriver.Chrome
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.set_window_size(1280, 1800)
    browser.get(f"{server}/docs")
    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary"))
    )
    text = browser.find_element(By.ID, "swagger-ui").text
    assert "/v1/bulk-actions/{action_id}/events" in text
    assert "Submit a bulk action" in text
    shot = Path(os.environ.get("BULKFLOW_DOCS_SCREENSHOT") or tmp_path / "docs.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
