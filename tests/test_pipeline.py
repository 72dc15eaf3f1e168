"""End to end through the running server: HTTP -> Kafka -> agents -> Postgres -> ClickHouse."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from bulkflow import constants
from bulkflow.settings import Settings
from schemas.messages import Chunk
from tests.support import (
    Tenant,
    chunk_topic_size,
    new_tenant,
    produce_raw,
    submit_json,
    wait_for_stats,
    wait_for_status,
)

pytestmark = pytest.mark.anyio


def contacts(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"email": f"person{i}@example.com", "first_name": f"P{i}", "lead_score": i % 100}
        for i in range(start, start + n)
    ]


async def test_submit_to_completed_with_exact_counts(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    rows = [
        *contacts(1200),  # three chunks
        {"email": "not-an-email", "first_name": "X"},
        {"email": "PERSON7@example.com"},  # same contact as row 8, other case
        {"first_name": "no email"},
    ]
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": rows},
        headers=tenant.headers,
    )
    assert response.status_code == 202
    created = response.json()
    assert response.headers["location"] == f"/v1/bulk-actions/{created['id']}"
    assert created["status"] in ("queued", "running", "completed")
    assert created["total_rows"] == 1203

    done = await wait_for_status(api, created["id"], tenant)
    assert done["status"] == "completed"
    assert done["counts"] == {"succeeded": 1200, "failed": 2, "skipped": 1}
    progress = done["progress"]
    assert (progress["processed"], progress["total"], progress["percent"]) == (1203, 1203, 100.0)
    assert progress["rows_per_second"] > 0
    assert progress["eta_seconds"] is None
    assert done["started_at"] is not None
    assert done["finished_at"] is not None

    stored = await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", tenant.id)
    assert stored == 1200
    score = await pool.fetchval(
        "SELECT lead_score FROM contacts WHERE account_id = $1 AND email = $2",
        tenant.id,
        "person42@example.com",
    )
    assert score == 42

    stats = await wait_for_stats(api, created["id"], tenant, 1203)
    assert stats["recorded_rows"] == 1203
    assert stats["counts"] == done["counts"]
    assert stats["operations"] == {"created": 1200}
    assert stats["reasons"] == {"invalid_email": 1, "missing_email": 1, "duplicate": 1}


async def test_second_upsert_updates_and_reports_unchanged(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await submit_json(api, tenant, contacts(10))
    await wait_for_status(api, first["id"], tenant)
    changed = contacts(10)
    changed[0]["first_name"] = "Renamed"
    second = await submit_json(api, tenant, changed)
    done = await wait_for_status(api, second["id"], tenant)
    assert done["counts"] == {"succeeded": 10, "failed": 0, "skipped": 0}
    stats = await wait_for_stats(api, second["id"], tenant, 10)
    assert stats["operations"] == {"updated": 1, "unchanged": 9}


async def test_redelivered_chunk_doubles_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings, tenant: Tenant
) -> None:
    rows = contacts(300)
    action = await submit_json(api, tenant, rows)
    before = await wait_for_status(api, action["id"], tenant)
    await wait_for_stats(api, action["id"], tenant, 300)
    updated_at = await pool.fetchval(
        "SELECT max(updated_at) FROM contacts WHERE account_id = $1", tenant.id
    )

    # Kafka delivers at least once: send the very same chunk again.
    chunk = Chunk(
        action_id=action["id"],
        account_id=tenant.id,
        entity="contact",
        action="upsert",
        chunk_no=0,
        first_row_no=1,
        rows=rows,
        options=before["options"],
    )
    await produce_raw(database, constants.CHUNKS_TOPIC, tenant.id.encode(), chunk.to_bytes())
    # A later action of the same account is consumed after the redelivered
    # chunk (same key, same partition): once it completes, the chunk was seen.
    marker = await submit_json(api, tenant, contacts(1, start=10_000))
    await wait_for_status(api, marker["id"], tenant)

    after = await wait_for_status(api, action["id"], tenant)
    assert after["counts"] == before["counts"] == {"succeeded": 300, "failed": 0, "skipped": 0}
    assert after["progress"]["processed"] == 300
    assert (
        await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", tenant.id) == 301
    )
    assert (
        await pool.fetchval(
            "SELECT max(updated_at) FROM contacts WHERE account_id = $1 AND email <> $2",
            tenant.id,
            "person10000@example.com",
        )
        == updated_at
    )
    await wait_for_stats(api, marker["id"], tenant, 1)
    stats = await wait_for_stats(api, action["id"], tenant, 300)
    assert stats["recorded_rows"] == 300
    assert stats["operations"] == {"created": 300}


async def test_csv_upload_streams_to_completion(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    lines = ["E-mail,Given Name,Favourite"] + [
        f'csv{i}@example.com,Name {i},"blue, green"' for i in range(1100)
    ]
    response = await api.post(
        "/v1/bulk-actions",
        params={
            "entity": "contact",
            "action": "upsert",
            "mapping": '{"E-mail": "email", "Given Name": "first_name"}',
        },
        content="\r\n".join(lines).encode(),
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["source"] == "csv"
    done = await wait_for_status(api, response.json()["id"], tenant)
    assert done["total_rows"] == 1100
    assert done["counts"] == {"succeeded": 1100, "failed": 0, "skipped": 0}
    row = await pool.fetchrow(
        "SELECT first_name, custom_fields FROM contacts WHERE account_id = $1 AND email = $2",
        tenant.id,
        "csv5@example.com",
    )
    assert row["first_name"] == "Name 5"
    assert row["custom_fields"] == {"Favourite": "blue, green"}


BAD_REQUESTS = [
    pytest.param(b"{not json", "application/json", 400, "invalid_json", id="invalid-json"),
    pytest.param(
        b'{"entity": "invoice", "action": "upsert", "rows": [{}]}',
        "application/json",
        422,
        "validation_failed",
        id="unknown-entity",
    ),
    pytest.param(
        b'{"entity": "contact", "action": "merge", "rows": [{}]}',
        "application/json",
        422,
        "validation_failed",
        id="unknown-action",
    ),
    pytest.param(
        b'{"entity": "contact", "action": "upsert", "rows": []}',
        "application/json",
        422,
        "validation_failed",
        id="empty-rows",
    ),
    pytest.param(
        b'{"entity": "contact", "action": "upsert", "rows": "a@b.co"}',
        "application/json",
        422,
        "validation_failed",
        id="rows-not-a-list",
    ),
    pytest.param(
        b'{"entity": "contact", "action": "upsert", "rows": [1, 2]}',
        "application/json",
        422,
        "validation_failed",
        id="rows-not-objects",
    ),
    pytest.param(
        b'{"entity": 7, "action": "upsert", "rows": [{}]}',
        "application/json",
        422,
        "validation_failed",
        id="entity-wrong-type",
    ),
    pytest.param(b"[]", "application/json", 422, "validation_failed", id="body-not-object"),
    pytest.param(
        b'{"entity": "contact", "action": "upsert", "rows": [{}], "account_id": "x"}',
        "application/json",
        422,
        "validation_failed",
        id="account-in-body",
    ),
    pytest.param(
        b'{"entity": "contact", "action": "upsert", "rows": [{}],'
        b' "options": {"mapping": {"E": "nosuchfield"}}}',
        "application/json",
        422,
        "validation_failed",
        id="mapping-to-unknown-field",
    ),
    pytest.param(b"email\n", "text/plain", 415, "unsupported_media_type", id="wrong-type"),
    pytest.param(b"name\nx\n", "text/csv", 422, "missing_identifier_column", id="csv-no-email"),
    pytest.param(b"", "text/csv", 422, "empty_file", id="csv-empty"),
    pytest.param(b"email\n\n", "text/csv", 422, "empty_file", id="csv-header-only"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), BAD_REQUESTS)
async def test_bad_input_is_rejected_and_nothing_is_published(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    database: Settings,
    tenant: Tenant,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    published = await chunk_topic_size(database)
    params = {"entity": "contact", "action": "upsert"} if content_type == "text/csv" else {}
    response = await api.post(
        "/v1/bulk-actions",
        content=body,
        params=params,
        headers={**tenant.headers, "content-type": content_type},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error) == {"code", "message", "details"}
    assert (
        await pool.fetchval("SELECT count(*) FROM bulk_actions WHERE account_id = $1", tenant.id)
        == 0
    )
    assert await chunk_topic_size(database) == published


async def test_too_many_rows_is_rejected(api: httpx.AsyncClient, tenant: Tenant) -> None:
    rows = [{"email": f"r{i}@example.com"} for i in range(constants.MAX_JSON_ROWS + 1)]
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": rows},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["type"] == "too_long"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer bf_not-a-real-key", "Bearer " + "x" * 46],
)
async def test_missing_or_bad_key_is_401(api: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    for method, path in [
        ("POST", "/v1/bulk-actions"),
        ("GET", "/v1/bulk-actions"),
        ("GET", "/v1/bulk-actions/summary"),
    ]:
        response = await api.request(
            method,
            path,
            headers=headers,
            json={"entity": "contact", "action": "upsert", "rows": [{}]},
        )
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_another_accounts_action_is_404(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    action = await submit_json(api, tenant, contacts(1))
    other = await new_tenant(pool)
    for suffix in ("", "/stats", "/logs", "/failed-rows.csv"):
        response = await api.get(f"/v1/bulk-actions/{action['id']}{suffix}", headers=other.headers)
        assert response.status_code == 404, suffix
        assert response.json()["error"]["code"] == "not_found"
    missing = await api.get("/v1/bulk-actions/not-a-uuid", headers=tenant.headers)
    assert missing.status_code == 404
