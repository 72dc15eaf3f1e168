"""add_tags and remove_tags through the whole pipeline: the API, limits, outcomes, stats."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import Tenant, submit_json, wait_for_stats, wait_for_status

pytestmark = pytest.mark.anyio


async def done_with_stats(
    api: httpx.AsyncClient, tenant: Tenant, action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    done = await wait_for_status(api, action["id"], tenant)
    stats = await wait_for_stats(api, action["id"], tenant, done["total_rows"])
    return done, stats


async def tags(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, list[str] | None]:
    rows = await pool.fetch("SELECT email, tags FROM contacts WHERE account_id = $1", tenant.id)
    return {r["email"]: r["tags"] for r in rows}


async def test_tags_are_added_and_removed_as_a_set(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    seed = await submit_json(api, tenant, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    await wait_for_status(api, seed["id"], tenant)

    added, stats = await done_with_stats(
        api,
        tenant,
        await submit_json(
            api,
            tenant,
            [
                {"email": "a@example.com", "tags": ["VIP", "Churn risk", "vip"]},
                {"email": "nobody@example.com", "tags": ["VIP"]},
                {"email": "A@example.com", "tags": ["other"]},  # the same contact again
                {"email": "b@example.com"},  # no tags
            ],
            action="add_tags",
        ),
    )
    assert added["counts"] == {"succeeded": 1, "failed": 2, "skipped": 1}
    assert stats["operations"] == {"updated": 1}
    assert stats["reasons"] == {"not_found": 1, "duplicate": 1, "missing_tags": 1}

    # A CSV lists tags with ';' in one cell; other columns are not this action's.
    csv = b"Email,Tags,First Name\na@example.com,vip; CHURN RISK,Ann\nb@example.com,vip;new,Bob\n"
    response = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "add_tags"},
        content=csv,
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    _, stats = await done_with_stats(api, tenant, response.json())
    assert stats["operations"] == {"unchanged": 1, "updated": 1}
    assert await tags(pool, tenant) == {
        "a@example.com": ["VIP", "Churn risk"],
        "b@example.com": ["vip", "new"],
    }
    names = await pool.fetch("SELECT first_name FROM contacts WHERE account_id = $1", tenant.id)
    assert {r["first_name"] for r in names} == {None}

    removed, stats = await done_with_stats(
        api,
        tenant,
        await submit_json(
            api,
            tenant,
            [
                {"email": "a@example.com", "tags": "churn risk"},
                {"email": "b@example.com", "tags": ["absent"]},
                {"email": "nobody@example.com", "tags": ["vip"]},
            ],
            action="remove_tags",
        ),
    )
    assert removed["counts"] == {"succeeded": 2, "failed": 1, "skipped": 0}
    assert stats["operations"] == {"updated": 1, "unchanged": 1}
    assert stats["top_failure_reasons"] == [{"reason": "not_found", "rows": 1}]
    assert await tags(pool, tenant) == {"a@example.com": ["VIP"], "b@example.com": ["vip", "new"]}


async def test_tag_actions_are_refused_for_other_entities(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        json={"entity": "company", "action": "add_tags", "rows": [{"domain": "a.com"}]},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == [{"loc": ["action"], "msg": "add_tags applies to: contact"}]
    unknown = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        json={"entity": "contact", "action": "tag_everything", "rows": [{"email": "a@b.co"}]},
    )
    assert unknown.status_code == 422


async def test_tags_wait_for_the_account_row_limit(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    emails = [{"email": f"t{i}@example.com"} for i in range(1_000)]
    await wait_for_status(api, (await submit_json(api, tenant, emails))["id"], tenant)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/v1/admin/accounts/{tenant.id}/limits"
    assert (await api.put(path, json={"rows_per_minute": 600}, headers=admin)).status_code == 200

    action = await submit_json(
        api, tenant, [{**e, "tags": ["bulk"]} for e in emails], action="add_tags"
    )
    throttled = await wait_for_status(api, action["id"], tenant, "throttled")
    assert throttled["progress"]["processed"] < 1_000
    assert (await api.put(path, json={"rows_per_minute": None}, headers=admin)).status_code == 200

    done, stats = await done_with_stats(api, tenant, action)
    assert done["counts"] == {"succeeded": 1_000, "failed": 0, "skipped": 0}
    assert stats["operations"] == {"updated": 1_000}
    tagged = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE account_id = $1 AND tags = '{bulk}'", tenant.id
    )
    assert tagged == 1_000
