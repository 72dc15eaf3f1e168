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
    account,
    auth,
    chunk_topic_size,
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
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    acct = account()
    rows = [
        *contacts(1200),  # three chunks
        {"email": "not-an-email", "first_name": "X"},
        {"email": "PERSON7@example.com"},  # same contact as row 8, other case
        {"first_name": "no email"},
    ]
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": rows},
        headers=auth(acct),
    )
    assert response.status_code == 202
    created = response.json()
    assert response.headers["location"] == f"/v1/bulk-actions/{created['id']}"
    assert created["status"] in ("queued", "running", "completed")
    assert created["total_rows"] == 1203

    done = await wait_for_status(api, created["id"], acct)
    assert done["status"] == "completed"
    assert done["counts"] == {"succeeded": 1200, "failed": 2, "skipped": 1}
    assert done["progress"] == {"processed": 1203, "total": 1203, "percent": 100.0}
    assert done["started_at"] is not None
    assert done["finished_at"] is not None

    stored = await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", acct)
    assert stored == 1200
    score = await pool.fetchval(
        "SELECT lead_score FROM contacts WHERE account_id = $1 AND email = $2",
        acct,
        "person42@example.com",
    )
    assert score == 42

    stats = await wait_for_stats(api, created["id"], acct, 1203)
    assert stats["recorded_rows"] == 1203
    assert stats["counts"] == done["counts"]
    assert stats["operations"] == {"created": 1200}
    assert stats["reasons"] == {"invalid_email": 1, "missing_email": 1, "duplicate": 1}


async def test_second_upsert_updates_and_reports_unchanged(api: httpx.AsyncClient) -> None:
    acct = account()
    first = await submit_json(api, acct, contacts(10))
    await wait_for_status(api, first["id"], acct)
    changed = contacts(10)
    changed[0]["first_name"] = "Renamed"
    second = await submit_json(api, acct, changed)
    done = await wait_for_status(api, second["id"], acct)
    assert done["counts"] == {"succeeded": 10, "failed": 0, "skipped": 0}
    stats = await wait_for_stats(api, second["id"], acct, 10)
    assert stats["operations"] == {"updated": 1, "unchanged": 9}


async def test_redelivered_chunk_doubles_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings
) -> None:
    acct = account()
    rows = contacts(300)
    action = await submit_json(api, acct, rows)
    before = await wait_for_status(api, action["id"], acct)
    await wait_for_stats(api, action["id"], acct, 300)
    updated_at = await pool.fetchval(
        "SELECT max(updated_at) FROM contacts WHERE account_id = $1", acct
    )

    # Kafka delivers at least once: send the very same chunk again.
    chunk = Chunk(
        action_id=action["id"],
        account_id=acct,
        entity="contact",
        action="upsert",
        chunk_no=0,
        first_row_no=1,
        rows=rows,
        options=before["options"],
    )
    await produce_raw(database, constants.CHUNKS_TOPIC, acct.encode(), chunk.to_bytes())
    # A later action of the same account is consumed after the redelivered
    # chunk (same key, same partition): once it completes, the chunk was seen.
    marker = await submit_json(api, acct, contacts(1, start=10_000))
    await wait_for_status(api, marker["id"], acct)

    after = await wait_for_status(api, action["id"], acct)
    assert after["counts"] == before["counts"] == {"succeeded": 300, "failed": 0, "skipped": 0}
    assert after["progress"]["processed"] == 300
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", acct) == 301
    assert (
        await pool.fetchval(
            "SELECT max(updated_at) FROM contacts WHERE account_id = $1 AND email <> $2",
            acct,
            "person10000@example.com",
        )
        == updated_at
    )
    await wait_for_stats(api, marker["id"], acct, 1)
    stats = await wait_for_stats(api, action["id"], acct, 300)
    assert stats["recorded_rows"] == 300
    assert stats["operations"] == {"created": 300}


async def test_csv_upload_streams_to_completion(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    acct = account()
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
        headers={**auth(acct), "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["source"] == "csv"
    done = await wait_for_status(api, response.json()["id"], acct)
    assert done["total_rows"] == 1100
    assert done["counts"] == {"succeeded": 1100, "failed": 0, "skipped": 0}
    row = await pool.fetchrow(
        "SELECT first_name, custom_fields FROM contacts WHERE account_id = $1 AND email = $2",
        acct,
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
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    acct = account()
    published = await chunk_topic_size(database)
    params = {"entity": "contact", "action": "upsert"} if content_type == "text/csv" else {}
    response = await api.post(
        "/v1/bulk-actions",
        content=body,
        params=params,
        headers={**auth(acct), "content-type": content_type},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error) == {"code", "message", "details"}
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions WHERE account_id = $1", acct) == 0
    assert await chunk_topic_size(database) == published


async def test_too_many_rows_is_rejected(api: httpx.AsyncClient) -> None:
    rows = [{"email": f"r{i}@example.com"} for i in range(constants.MAX_JSON_ROWS + 1)]
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": rows},
        headers=auth(account()),
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["type"] == "too_long"


async def test_account_comes_from_credentials(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/bulk-actions", json={"entity": "contact", "action": "upsert", "rows": [{}]}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"

    owner = account()
    action = await submit_json(api, owner, contacts(1))
    other = await api.get(f"/v1/bulk-actions/{action['id']}", headers=auth(account()))
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    stats = await api.get(f"/v1/bulk-actions/{action['id']}/stats", headers=auth(account()))
    assert stats.status_code == 404
    missing = await api.get("/v1/bulk-actions/not-a-uuid", headers=auth(owner))
    assert missing.status_code == 404
