"""Requests at the edges of what the API accepts: each gets a clear 4xx or a true answer."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from tests.support import Tenant, submit_json, wait_for_status
from tests.test_flow_control import ADMIN, control, iso_in, limit, rows

pytestmark = pytest.mark.anyio

UINT32_MAX = 2**32 - 1  # ClickHouse's row_no type
NOBODY = "00000000-0000-0000-0000-000000000000"


def cursor_of(position: Any) -> str:
    """A cursor as the API writes them (base64url of JSON), with any position in it."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


async def test_summary_counts_every_status(api: httpx.AsyncClient, tenant: Tenant) -> None:
    for _ in range(3):
        await submit_json(api, tenant, rows(1, "later"), scheduled_for=iso_in(3600))
    scheduled = await submit_json(api, tenant, rows(1, "gone"), scheduled_for=iso_in(3600))
    assert (await control(api, tenant, scheduled["id"], "cancel")).status_code == 200
    done = await submit_json(api, tenant, rows(1, "now"))
    await wait_for_status(api, done["id"], tenant, "completed")
    await limit(api, tenant, 600)  # one chunk now, the rest waits: time to pause it
    held = await submit_json(api, tenant, rows(1_500, "held"))
    await wait_for_status(api, held["id"], tenant, "throttled")
    assert (await control(api, tenant, held["id"], "pause")).status_code == 200

    summary = (await api.get("/v1/bulk-actions/summary", headers=tenant.headers)).json()

    assert summary["total"] == 6
    assert summary["by_status"] == {
        "scheduled": 3,
        "queued": 0,
        "running": 0,
        "throttled": 0,
        "paused": 1,
        "completed": 1,
        "cancelled": 1,
        "failed": 0,
    }


async def test_reschedule_authenticates_before_reading_the_body(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    path = f"/v1/bulk-actions/{NOBODY}"
    for body in (b"{not json", b"{}"):
        anonymous = await api.patch(path, content=body)
        assert_error(anonymous, 401, "unauthorized")
    oversized = b'{"scheduled_for": "' + b" " * 1_000_000 + b'"}'
    too_large = await api.patch(path, content=oversized, headers=tenant.headers)
    assert_error(too_large, 413, "payload_too_large")
    broken = await api.patch(path, content=b"{not json", headers=tenant.headers)
    assert_error(broken, 400, "invalid_json")

    action = await submit_json(api, tenant, rows(1, "x"), scheduled_for=iso_in(3600))
    moved = await api.patch(
        f"/v1/bulk-actions/{action['id']}",
        json={"scheduled_for": "2099-01-01T00:00:00+00:00"},
        headers=tenant.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["scheduled_for"].startswith("2099-01-01T00:00:00")


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIyMDI0LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMV0",  # ["2024-01-01T00:00:00+00:00", 1]
        cursor_of(["2024-01-01T00:00:00+00:00", None]),
        cursor_of(["2024-01-01T00:00:00+00:00", {"id": 1}]),
        cursor_of([20240101, NOBODY]),
        cursor_of(["2024-01-01T00:00:00", NOBODY]),  # no offset: which instant?
        cursor_of(["2024-01-01T00:00:00+00:00", NOBODY, "extra"]),
        cursor_of({"created_at": "2024-01-01T00:00:00+00:00"}),
        cursor_of([]),
        "not base64!",
        "é",
    ],
)
async def test_malformed_list_cursor_is_422(
    api: httpx.AsyncClient, tenant: Tenant, cursor: str
) -> None:
    response = await api.get("/v1/bulk-actions", params={"cursor": cursor}, headers=tenant.headers)
    error = assert_error(response, 422, "validation_failed")
    assert error["message"] == "the cursor is not valid"
    assert error["details"][0]["loc"] == ["cursor"]


async def test_list_cursor_round_trips(api: httpx.AsyncClient, tenant: Tenant) -> None:
    for _ in range(2):
        await submit_json(api, tenant, rows(1, "x"), scheduled_for=iso_in(3600))
    first = (await api.get("/v1/bulk-actions", params={"limit": 1}, headers=tenant.headers)).json()
    params = {"limit": 1, "cursor": first["next_cursor"]}
    second = (await api.get("/v1/bulk-actions", params=params, headers=tenant.headers)).json()
    assert second["data"][0]["id"] != first["data"][0]["id"]


@pytest.mark.parametrize(
    "authorization", [b"Bearer \xe9", "Bearer tést-admin-token".encode(), b"Bearer \xff\xfe"]
)
async def test_non_ascii_admin_token_is_401(
    api: httpx.AsyncClient, tenant: Tenant, authorization: bytes
) -> None:
    response = await api.put(
        f"/v1/admin/accounts/{tenant.id}/limits",
        json={"rows_per_minute": 5},
        headers={"authorization": authorization},
    )
    assert_error(response, 401, "unauthorized")
    ok = await api.put(
        f"/v1/admin/accounts/{tenant.id}/limits", json={"rows_per_minute": None}, headers=ADMIN
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "params",
    [
        {"row_from": 4_294_967_297},  # was read as row 1
        {"row_from": UINT32_MAX + 1},
        {"row_to": UINT32_MAX + 1},
        {"cursor": cursor_of([UINT32_MAX + 1])},
        {"cursor": cursor_of([0])},
        {"cursor": cursor_of([-1])},
        {"cursor": cursor_of([True])},
        {"cursor": cursor_of(["5"])},
    ],
)
async def test_row_numbers_beyond_clickhouse_are_422(
    api: httpx.AsyncClient, tenant: Tenant, params: dict[str, Any]
) -> None:
    action = await submit_json(api, tenant, rows(1, "x"))
    path = f"/v1/bulk-actions/{action['id']}/logs"
    response = await api.get(path, params=params, headers=tenant.headers)
    assert_error(response, 422, "validation_failed")
    edge = {"row_from": UINT32_MAX, "row_to": UINT32_MAX, "cursor": cursor_of([UINT32_MAX - 1])}
    in_range = await api.get(path, params=edge, headers=tenant.headers)
    assert in_range.status_code == 200, in_range.text
    assert in_range.json()["data"] == []
