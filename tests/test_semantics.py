"""Bulk action semantics through the API: CSV dialects, actions, matching, reads, safety."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.support import Tenant, submit_json, wait_for_stats, wait_for_status

pytestmark = pytest.mark.anyio


async def upload_csv(
    api: httpx.AsyncClient, tenant: Tenant, data: bytes, **params: str
) -> dict[str, Any]:
    response = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert", **params},
        content=data,
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def finished(
    api: httpx.AsyncClient, tenant: Tenant, action: dict[str, Any]
) -> dict[str, Any]:
    done = await wait_for_status(api, action["id"], tenant)
    await wait_for_stats(api, action["id"], tenant, done["total_rows"])
    return done


async def logs(api: httpx.AsyncClient, tenant: Tenant, action_id: str, **params: Any) -> list[Any]:
    response = await api.get(
        f"/v1/bulk-actions/{action_id}/logs",
        params={"limit": 1000, **params},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()["data"]
    return rows


async def test_csv_dialect_and_broken_rows(api: httpx.AsyncClient, tenant: Tenant) -> None:
    body = (
        b"\xef\xbb\xbfEMAIL ;First_Name;Note\r\n"
        b'ok1@example.com;Ann;"multi\r\nline; with ""quotes"""\r\n'
        b"\r\n"
        b"ok2@example.com;Bob;x;extra\r\n"
        b"not-an-email;Cy;x\r\n"
        b"ok3@example.com;" + b"z" * 70_000 + b";x\r\n"
        b"ok4@example.com;Zo\xc3\xab;x\r\n"
    )  # a BOM, CRLF, a quoted newline, a blank line, a ragged row, an oversized field
    action = await upload_csv(api, tenant, body, delimiter=";")
    done = await finished(api, tenant, action)
    assert done["total_rows"] == 5
    assert done["counts"] == {"succeeded": 2, "failed": 3, "skipped": 0}
    by_row = {r["row_no"]: r for r in await logs(api, tenant, action["id"])}
    assert [by_row[n]["outcome"] for n in range(1, 6)] == [
        "succeeded",
        "failed",
        "failed",
        "failed",
        "succeeded",
    ]
    assert by_row[2]["reason"] == "too_many_fields"
    assert by_row[3]["reason"] == "invalid_email"
    assert by_row[4]["reason"] == "field_too_long"
    assert by_row[1]["key"] == "ok1@example.com"


async def test_legacy_encoding(api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    body = "email,first_name\nzoe@example.com,Zoë\n".encode("cp1252")
    action = await upload_csv(api, tenant, body, encoding="cp1252")
    assert (await finished(api, tenant, action))["counts"]["succeeded"] == 1
    name = await pool.fetchval("SELECT first_name FROM contacts WHERE account_id = $1", tenant.id)
    assert name == "Zoë"


async def test_headers_name_fields_as_people_write_them(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    body = b"E-Mail Address,First Name,LEAD-SCORE,Favorite Color\nada@example.com,Ada,7,teal\n"
    action = await upload_csv(api, tenant, body, mapping='{"e mail address": "Email"}')
    assert (await finished(api, tenant, action))["counts"]["succeeded"] == 1
    stored = await pool.fetchrow(
        "SELECT first_name, lead_score, custom_fields FROM contacts WHERE account_id = $1",
        tenant.id,
    )
    assert (stored["first_name"], stored["lead_score"]) == ("Ada", 7)
    assert stored["custom_fields"] == {"Favorite Color": "teal"}

    refused = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert"},
        content=b"email,First Name,first_name\nbo@example.com,Bo,Bo\n",
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_header"
    # Two columns that name one field only through the mapping.
    mapped = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert", "mapping": '{"E-mail": "email"}'},
        content=b"E-mail,Email\nbo@example.com,other@example.com\n",
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert mapped.status_code == 422, mapped.text
    assert mapped.json()["error"]["code"] == "invalid_header"
    assert "E-mail, Email" in mapped.json()["error"]["message"]


async def test_json_rows_that_give_a_field_twice_are_refused(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    rows = [
        {"email": "a@example.com", "Email": "b@example.com"},
        {"email": "c@example.com", "First Name": "C"},  # another row's key: no collision
        {"Email": "d@example.com", "first_name": "D"},
    ]
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": rows},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == [{"loc": ["rows", 0], "msg": "columns email, Email name one field"}]


async def test_duplicates_across_chunks(api: httpx.AsyncClient, tenant: Tenant) -> None:
    lines = ["email"] + [f"p{i}@example.com" for i in range(1, 700)] + ["P1@EXAMPLE.COM"]
    action = await upload_csv(api, tenant, "\n".join(lines).encode())
    done = await finished(api, tenant, action)
    assert done["counts"] == {"succeeded": 699, "failed": 0, "skipped": 1}
    [dup] = await logs(api, tenant, action["id"], outcome="skipped")
    assert (dup["row_no"], dup["reason"], dup["related_row"]) == (700, "duplicate", 1)


async def test_ignore_empty_null_and_clear_token(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    seed = await submit_json(
        api,
        tenant,
        [
            {"email": "a@example.com", "first_name": "A", "phone": "1", "company": "C"},
            {"email": "b@example.com", "first_name": "B", "phone": "2", "company": "D"},
        ],
    )
    await finished(api, tenant, seed)
    json_update = await submit_json(api, tenant, [{"email": "a@example.com", "phone": None}])
    await finished(api, tenant, json_update)
    csv_update = await upload_csv(
        api,
        tenant,
        b"email,first_name,phone,company\nb@example.com,,<clear>,\n",
        clear_token="<clear>",
    )
    await finished(api, tenant, csv_update)
    rows = await pool.fetch(
        "SELECT email, first_name, phone, company FROM contacts"
        " WHERE account_id = $1 ORDER BY email",
        tenant.id,
    )
    assert [tuple(r) for r in rows] == [
        ("a@example.com", "A", None, "C"),  # absent keys kept, null cleared
        ("b@example.com", "B", None, "D"),  # empty cells kept, the token cleared
    ]


async def test_actions_report_their_operation(api: httpx.AsyncClient, tenant: Tenant) -> None:
    async def run(action: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        done = await finished(api, tenant, await submit_json(api, tenant, rows, action=action))
        stats = await api.get(f"/v1/bulk-actions/{done['id']}/stats", headers=tenant.headers)
        result: dict[str, Any] = stats.json()
        return result

    created = await run("create", [{"email": "x@example.com"}, {"email": "y@example.com"}])
    assert created["operations"] == {"created": 2}
    again = await run("create", [{"email": "x@example.com"}])
    assert again["top_skip_reasons"] == [{"reason": "already_exists", "rows": 1}]
    update = await run(
        "update",
        [
            {"email": "x@example.com", "status": "customer"},
            {"email": "nobody@example.com", "status": "lead"},
        ],
    )
    assert update["operations"] == {"updated": 1}
    assert update["top_failure_reasons"] == [{"reason": "not_found", "rows": 1}]
    delete = await run("delete", [{"email": "y@example.com"}, {"email": "nobody@example.com"}])
    assert delete["operations"] == {"deleted": 1}
    assert delete["top_skip_reasons"] == [{"reason": "not_found", "rows": 1}]


async def test_match_on_external_id(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    seed = await submit_json(api, tenant, [{"email": "e1@example.com", "external_id": "crm-1"}])
    await finished(api, tenant, seed)
    renamed = await submit_json(
        api,
        tenant,
        [{"external_id": "crm-1", "email": "new@example.com"}],
        action="update",
        options={"match_on": "external_id"},
    )
    assert (await finished(api, tenant, renamed))["counts"]["succeeded"] == 1
    email = await pool.fetchval(
        "SELECT email FROM contacts WHERE account_id = $1 AND external_id = 'crm-1'", tenant.id
    )
    assert email == "new@example.com"
    bad = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        json={
            "entity": "contact",
            "action": "create",
            "rows": [{"id": 1}],
            "options": {"match_on": "id"},
        },
    )
    assert bad.status_code == 422


async def test_company_entity(api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    response = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        json={
            "entity": "company",
            "action": "upsert",
            "rows": [
                {"domain": "https://www.Acme.com/about", "name": "Acme", "employee_count": "120"},
                {"domain": "acme.com", "industry": "Anvils"},
                {"domain": "not a domain", "name": "X"},
                {"domain": "globex.io", "employee_count": -1},
            ],
        },
    )
    assert response.status_code == 202, response.text
    done = await finished(api, tenant, response.json())
    assert done["counts"] == {"succeeded": 1, "failed": 2, "skipped": 1}
    row = await pool.fetchrow(
        "SELECT domain, name, employee_count FROM companies WHERE account_id = $1", tenant.id
    )
    assert tuple(row) == ("acme.com", "Acme", 120)


async def test_list_with_cursor_to_the_end_and_summary(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = [
        (await submit_json(api, tenant, [{"email": f"l{i}@example.com"}]))["id"] for i in range(5)
    ]
    for action_id in ids:
        await wait_for_status(api, action_id, tenant)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/bulk-actions", params=params, headers=tenant.headers)).json()
        seen += [a["id"] for a in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]  # newest first, each once
    assert pages == 3
    filtered = await api.get(
        "/v1/bulk-actions", params={"status": "running"}, headers=tenant.headers
    )
    assert filtered.json()["data"] == []
    bad = await api.get("/v1/bulk-actions", params={"limit": 201}, headers=tenant.headers)
    assert bad.status_code == 422
    summary = (await api.get("/v1/bulk-actions/summary", headers=tenant.headers)).json()
    assert summary == {
        "total": 5,
        "by_status": {
            "scheduled": 0,
            "queued": 0,
            "running": 0,
            "throttled": 0,
            "paused": 0,
            "completed": 5,
            "cancelled": 0,
            "failed": 0,
        },
    }


async def test_logs_paginate_and_stream(api: httpx.AsyncClient, tenant: Tenant) -> None:
    rows = [{"email": f"g{i}@example.com"} for i in range(250)] + [{"email": "bad"}]
    action = await finished(api, tenant, await submit_json(api, tenant, rows))
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (
            await api.get(
                f"/v1/bulk-actions/{action['id']}/logs", params=params, headers=tenant.headers
            )
        ).json()
        seen += [r["row_no"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 252))
    window = await logs(api, tenant, action["id"], row_from=10, row_to=12)
    assert [r["row_no"] for r in window] == [10, 11, 12]
    [failed] = await logs(api, tenant, action["id"], outcome="failed")
    assert (failed["row_no"], failed["reason"]) == (251, "invalid_email")
    async with api.stream(
        "GET",
        f"/v1/bulk-actions/{action['id']}/logs",
        headers={**tenant.headers, "accept": "application/x-ndjson"},
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) async for line in response.aiter_lines() if line]
    assert [line["row_no"] for line in lines] == list(range(1, 252))


async def test_failed_rows_csv_round_trip(api: httpx.AsyncClient, tenant: Tenant) -> None:
    original = (
        b"Email,First Name,Score\n"
        b"good@example.com,Good,10\n"
        b"broken-at-example.com,Fix Me,20\n"
        b"fine@example.com,Fine,500\n"
        b"good@example.com,Dup,1\n"
    )
    first = await finished(
        api,
        tenant,
        await upload_csv(
            api,
            tenant,
            original,
            mapping='{"First Name": "first_name", "Score": "lead_score"}',
        ),
    )
    assert first["counts"] == {"succeeded": 1, "failed": 2, "skipped": 1}

    response = await api.get(
        f"/v1/bulk-actions/{first['id']}/failed-rows.csv", headers=tenant.headers
    )
    assert response.headers["content-type"].startswith("text/csv")
    failed = list(csv.reader(io.StringIO(response.text)))
    assert failed[0] == ["Email", "First Name", "Score", "row_no", "error"]
    assert [(r[0], r[3], r[4].split(":")[0]) for r in failed[1:]] == [
        ("broken-at-example.com", "2", "invalid_email"),
        ("fine@example.com", "3", "invalid_lead_score"),
    ]
    with_skipped = await api.get(
        f"/v1/bulk-actions/{first['id']}/failed-rows.csv",
        params={"include": "skipped"},
        headers=tenant.headers,
    )
    assert len(list(csv.reader(io.StringIO(with_skipped.text)))) == 4

    fixed = response.text.replace("broken-at-example.com", "broken@example.com")
    fixed = fixed.replace("Fine,500", "Fine,50")
    second = await finished(
        api,
        tenant,
        await upload_csv(
            api,
            tenant,
            fixed.encode(),
            mapping='{"First Name": "first_name", "Score": "lead_score"}',
        ),
    )
    assert second["counts"] == {"succeeded": 2, "failed": 0, "skipped": 0}


async def test_idempotent_retry(api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    body = {"entity": "contact", "action": "upsert", "rows": [{"email": "i@example.com"}]}
    headers = {**tenant.headers, "idempotency-key": "retry-1"}
    first = await api.post("/v1/bulk-actions", json=body, headers=headers)
    retry = await api.post("/v1/bulk-actions", json=body, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["idempotent-replayed"] == "true"
    changed = await api.post(
        "/v1/bulk-actions",
        headers=headers,
        json={**body, "rows": [{"email": "other@example.com"}]},
    )
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_conflict"

    csv_headers = {**tenant.headers, "idempotency-key": "csv-1", "content-type": "text/csv"}
    params = {"entity": "contact", "action": "upsert"}
    one = await api.post(
        "/v1/bulk-actions", params=params, content=b"email\nc@example.com\n", headers=csv_headers
    )
    two = await api.post(
        "/v1/bulk-actions", params=params, content=b"email\nc@example.com\n", headers=csv_headers
    )
    assert one.json()["id"] == two.json()["id"]
    actions = await pool.fetchval(
        "SELECT count(*) FROM bulk_actions WHERE account_id = $1", tenant.id
    )
    assert actions == 2


async def test_multipart_upload(api: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        data={"entity": "contact", "action": "upsert"},
        files={"file": ("contacts.csv", b"email\nm1@example.com\nm2@example.com\n", "text/csv")},
    )
    assert response.status_code == 202, response.text
    done = await finished(api, tenant, response.json())
    assert done["counts"]["succeeded"] == 2
    missing = await api.post(
        "/v1/bulk-actions",
        headers=tenant.headers,
        data={"entity": "contact", "action": "upsert"},
        files={"other": ("x.csv", b"email\n", "text/csv")},
    )
    assert missing.status_code == 422


async def test_opportunity_entity(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    seed = await submit_json(api, tenant, [{"email": "ada@example.com"}])
    await finished(api, tenant, seed)

    async def submit(action: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        response = await api.post(
            "/v1/bulk-actions",
            headers=tenant.headers,
            json={"entity": "opportunity", "action": action, "rows": rows},
        )
        assert response.status_code == 202, response.text
        done = await finished(api, tenant, response.json())
        stats = await api.get(f"/v1/bulk-actions/{done['id']}/stats", headers=tenant.headers)
        return {"done": done, "stats": stats.json()}

    created = await submit(
        "upsert",
        [
            {
                "external_id": "D-1",
                "name": "Anvils",
                "amount": "1200.50",
                "stage": "Negotiation",
                "close_date": "2026-12-31",
                "contact_email": "Ada@Example.com",
                "region": "EMEA",  # not a field: kept in custom_fields
            },
            {"external_id": "D-2", "contact_email": "nobody@example.com"},
            {"external_id": "D-3", "amount": "-1"},
            {"external_id": "D-4", "stage": "won-ish"},
            {"external_id": "D-5", "close_date": "31/12/2026"},
            {"name": "no identifier"},
            {"external_id": "D-1", "name": "again"},
        ],
    )
    assert created["done"]["counts"] == {"succeeded": 1, "failed": 5, "skipped": 1}
    assert created["stats"]["operations"] == {"created": 1}
    assert created["stats"]["reasons"] == {
        "contact_not_found": 1,
        "invalid_amount": 1,
        "invalid_stage": 1,
        "invalid_close_date": 1,
        "missing_external_id": 1,
        "duplicate": 1,
    }
    row = await pool.fetchrow(
        "SELECT o.name, o.amount::text, o.stage, o.close_date::text, c.email, o.custom_fields"
        " FROM opportunities o JOIN contacts c ON c.id = o.contact_id"
        " WHERE o.account_id = $1",
        tenant.id,
    )
    assert tuple(row) == (
        "Anvils",
        "1200.50",
        "negotiation",
        "2026-12-31",
        "ada@example.com",
        {"region": "EMEA"},
    )
    updated = await submit(
        "update",
        [
            {"external_id": "D-1", "stage": "closed_won"},
            {"external_id": "D-1x", "stage": "closed_won"},
        ],
    )
    assert updated["stats"]["operations"] == {"updated": 1}
    assert updated["stats"]["top_failure_reasons"] == [{"reason": "not_found", "rows": 1}]
    logs_ = await logs(api, tenant, updated["done"]["id"], outcome="failed")
    assert [(r["key"], r["message"]) for r in logs_] == [
        ("D-1x", "no opportunity with this external_id")
    ]


async def test_opportunity_csv(api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    data = b"External ID,Name,Amount,Stage,Close Date\nD-7,Rockets,99.9,Closed Lost,2027-01-15\n"
    action = await upload_csv(api, tenant, data, entity="opportunity")
    assert (await finished(api, tenant, action))["counts"]["succeeded"] == 1
    stored = await pool.fetchrow(
        "SELECT name, amount::text, stage FROM opportunities WHERE account_id = $1", tenant.id
    )
    assert tuple(stored) == ("Rockets", "99.90", "closed_lost")
    no_id = await api.post(
        "/v1/bulk-actions",
        params={"entity": "opportunity", "action": "upsert"},
        content=b"name\nX\n",
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert no_id.status_code == 422
    assert no_id.json()["error"]["code"] == "missing_identifier_column"
