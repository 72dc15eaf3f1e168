"""Completion webhooks: signed, retried with backoff, delivered once, listed per action.

The end-to-end test runs a receiver on 127.0.0.1 (the test server allows
private addresses: ``settings_env``) that checks every signature with the
account's secret and answers 500 to the first two attempts.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from bulkflow import constants, sql
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from ingest_api.accounts import create_account, set_webhook_secret
from ingest_api.actions import ActionStore
from ingest_api.callbacks import (
    SIGNATURE_HEADER,
    AddressRefused,
    check_callback_url,
    refusal,
    resolve,
    sign,
    verify,
)
from ingest_api.errors import ValidationFailed
from ingest_api.webhooks import WebhookDeliverer, backoff
from schemas.bulk_action import ActionOptions, BulkActionRequest
from tests.conftest import ADMIN_TOKEN
from tests.support import Tenant, eventually, new_tenant, submit_json, wait_for_status

pytestmark = pytest.mark.anyio

SECRET = "whsec_test-secret"


# --- signing ---------------------------------------------------------------------


def test_a_signature_verifies_and_any_tampering_fails() -> None:
    body = b'{"id": "a", "status": "completed"}'
    now = 1_800_000_000
    header = sign(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=now)
    assert not verify(SECRET, header, body.replace(b"completed", b"failed"), now=now)
    assert not verify("whsec_another", header, body, now=now)
    digest = header.split("v1=")[1]
    flipped = ("0" if digest[0] != "0" else "1") + digest[1:]
    assert not verify(SECRET, f"t={now},v1={flipped}", body, now=now)
    # The timestamp is signed too: moving it breaks the signature...
    assert not verify(SECRET, f"t={now + 1},v1={digest}", body, now=now)
    # ...and an old (replayed) one is refused even with its own signature.
    late = now + constants.WEBHOOK_TOLERANCE + 1
    assert not verify(SECRET, header, body, now=late)
    assert not verify(SECRET, f"v1={digest}", body, now=now)
    assert not verify(SECRET, "", body, now=now)


def test_the_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(20, 10) == constants.WEBHOOK_RETRY_CAP


# --- where callbacks may go ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:password@example.com/hook",
        "https://token@example.com/hook",
        "http:///no-host",
        "example.com/hook",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "https://example.com/" + "a" * constants.CALLBACK_URL_MAX_CHARS,
    ],
)
def test_a_callback_url_must_be_http_without_credentials(url: str) -> None:
    with pytest.raises(ValueError, match="callback_url"):
        BulkActionRequest.model_validate(
            {"entity": "contact", "action": "upsert", "rows": [{}], "callback_url": url}
        )


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "[::1]",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "localhost",
        "api.localhost",
    ],
)
def test_private_addresses_are_refused_unless_allowed(host: str) -> None:
    with pytest.raises(ValidationFailed):
        check_callback_url(host, allow_private=False)
    check_callback_url(host, allow_private=True)


def test_public_addresses_and_names_pass_at_submit() -> None:
    check_callback_url("93.184.215.14", allow_private=False)
    check_callback_url("hooks.example.com", allow_private=False)  # checked when resolved
    assert refusal(ipaddress.ip_address("2606:4700::1111"), allow_private=False) is None


async def test_a_name_that_resolves_to_a_private_address_is_refused_when_sent() -> None:
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1"):
        await resolve("localhost", 80, allow_private=False)
    assert ipaddress.ip_address("127.0.0.1") in await resolve("localhost", 80, allow_private=True)


# --- a receiver ----------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool
    answered: int


@dataclass
class Receiver:
    """Answers 500 to the first ``failures`` POSTs of each path, then 200."""

    secret: str
    failures: int
    port: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@contextmanager
def receiving(secret: str, failures: int) -> Iterator[Receiver]:
    receiver = Receiver(secret, failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            signed = verify(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
            with receiver.lock:
                earlier = sum(1 for r in receiver.received if r.path == self.path)
                status = 500 if earlier < receiver.failures or not signed else 200
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, signed, status)
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def _secret(api: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await api.post(
        f"/v1/admin/accounts/{tenant.id}/webhook-secret",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    return secret


async def _deliveries(api: httpx.AsyncClient, tenant: Tenant, action_id: str) -> Any:
    response = await api.get(f"/v1/bulk-actions/{action_id}/deliveries", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


# --- end to end ------------------------------------------------------------------------


async def test_a_finished_action_is_delivered_once_signed_after_two_failures(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    secret = await _secret(api, tenant)
    rows = [{"email": f"hook{i}@example.com"} for i in range(5)] + [{"email": "not-an-email"}]
    with receiving(secret, failures=2) as receiver:
        action = await submit_json(api, tenant, rows, callback_url=receiver.url("/hooks/json"))
        assert action["callback_url"] == receiver.url("/hooks/json")
        done = await wait_for_status(api, action["id"], tenant, "completed")

        async def delivered() -> Any:
            attempts = await _deliveries(api, tenant, action["id"])
            return attempts if attempts and attempts[-1]["status"] == "delivered" else None

        attempts = await eventually(delivered, "a delivered attempt")
        calls = receiver.of("/hooks/json")

    assert [(a["attempt"], a["status"], a["response_status"]) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]
    assert attempts[-1]["delivered_at"] is not None
    assert all(a["next_attempt_at"] is None for a in attempts)
    # The receiver saw exactly the three attempts, each signed with the account's secret.
    assert [(c.answered, c.signed) for c in calls] == [(500, True), (500, True), (200, True)]
    assert [c.headers["Bulkflow-Attempt"] for c in calls] == ["1", "2", "3"]
    assert all(c.headers["Content-Type"] == "application/json" for c in calls)
    body = orjson.loads(calls[-1].body)
    assert (body["id"], body["status"]) == (action["id"], "completed")
    assert body["counts"] == done["counts"] == {"succeeded": 5, "failed": 1, "skipped": 0}
    assert body["total_rows"] == 6
    base = f"{str(api.base_url).rstrip('/')}/v1/bulk-actions/{action['id']}"
    assert body["links"] == {
        "self": base,
        "stats": f"{base}/stats",
        "logs": f"{base}/logs",
        "failed_rows": f"{base}/failed-rows.csv",
        "deliveries": f"{base}/deliveries",
    }
    # Nothing is left to send, and Postgres holds one delivered attempt.
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,"
        " count(*) FILTER (WHERE status = 'pending') AS pending, count(*) AS attempts"
        " FROM webhook_deliveries WHERE action_id = $1",
        action["id"],
    )
    assert dict(counts) == {"delivered": 1, "pending": 0, "attempts": 3}

    # Another account sees no such action.
    stranger = await new_tenant(pool)
    response = await api.get(
        f"/v1/bulk-actions/{action['id']}/deliveries", headers=stranger.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_csv_upload_names_its_callback_in_the_query(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    secret = await _secret(api, tenant)
    with receiving(secret, failures=0) as receiver:
        response = await api.post(
            "/v1/bulk-actions",
            params={"entity": "contact", "action": "upsert", "callback_url": receiver.url("/csv")},
            content=b"email\nq1@example.com\nq2@example.com\n",
            headers={**tenant.headers, "content-type": "text/csv"},
        )
        assert response.status_code == 202, response.text
        action_id = response.json()["id"]
        await wait_for_status(api, action_id, tenant, "completed")
        await eventually(lambda: _deliveries(api, tenant, action_id), "a delivery")
        attempts = await eventually(
            _delivered_after(api, tenant, action_id), "the delivery's outcome"
        )
        calls = receiver.of("/csv")
    assert [(a["status"], a["response_status"]) for a in attempts] == [("delivered", 200)]
    assert len(calls) == 1
    assert calls[0].signed
    assert orjson.loads(calls[0].body)["counts"]["succeeded"] == 2


def _delivered_after(api: httpx.AsyncClient, tenant: Tenant, action_id: str) -> Any:
    async def probe() -> Any:
        attempts = await _deliveries(api, tenant, action_id)
        return attempts if attempts and attempts[-1]["status"] != "pending" else None

    return probe


async def test_no_callback_no_delivery_and_bad_callbacks_are_refused(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    action = await submit_json(api, tenant, [{"email": "plain@example.com"}])
    await wait_for_status(api, action["id"], tenant, "completed")
    assert await _deliveries(api, tenant, action["id"]) == []

    # Without a secret to sign with, a callback is refused before anything is queued.
    refused = await api.post(
        "/v1/bulk-actions",
        json={
            "entity": "contact",
            "action": "upsert",
            "rows": [{"email": "a@example.com"}],
            "callback_url": "https://hooks.example.com/bulkflow",
        },
        headers=tenant.headers,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "webhook_secret_missing"

    await _secret(api, tenant)
    for url in ("ftp://example.com/x", "http://user:pw@example.com/x", "not a url"):
        response = await api.post(
            "/v1/bulk-actions",
            json={
                "entity": "contact",
                "action": "upsert",
                "rows": [{"email": "a@example.com"}],
                "callback_url": url,
            },
            headers=tenant.headers,
        )
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert error["details"][0]["loc"] == ["callback_url"]
        csv = await api.post(
            "/v1/bulk-actions",
            params={"entity": "contact", "action": "upsert", "callback_url": url},
            content=b"email\na@example.com\n",
            headers={**tenant.headers, "content-type": "text/csv"},
        )
        assert csv.status_code == 422, (url, csv.text)
        assert csv.json()["error"]["details"][0]["loc"] == ["callback_url"]


# --- the deliverer on its own database: giving up -----------------------------------------


async def test_a_delivery_that_keeps_failing_is_given_up_24_hours_after_the_first(
    isolated: Settings,
) -> None:
    async with connect_pool(isolated, size=2) as pool:
        account = await create_account(pool, "gives-up")
        secret = await set_webhook_secret(pool, account.id)
        assert secret is not None
        store = ActionStore(pool)
        deliverer = WebhookDeliverer(
            store,
            base_url="http://bulkflow.test",
            rows_per_minute=1_000,
            first_retry=0.01,
            allow_private=True,
        )
        with receiving(secret, failures=1_000) as receiver:
            created = await store.create(
                account_id=account.id,
                entity="contact",
                action="upsert",
                source="json",
                options=ActionOptions(),
                total_rows=1,
                columns=["email"],
                callback_url=receiver.url("/gives-up"),
            )
            action_id = created.record["id"]
            # Cancelled before it started: a terminal status, so the first delivery is due.
            assert await pool.fetchval(sql.postgres("bulk_actions_cancel"), action_id, account.id)
            async with deliverer.running():
                assert await deliverer.deliver_due() == 1
                # As if the first attempt had been a day ago: the second is the last.
                await pool.execute(
                    "UPDATE webhook_deliveries SET attempted_at = now() - interval '25 hours'"
                    " WHERE action_id = $1 AND attempt = 1",
                    action_id,
                )
                await pool.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = now()"
                    " WHERE action_id = $1 AND status = 'pending'",
                    action_id,
                )
                assert await deliverer.deliver_due() == 1
                assert await deliverer.deliver_due() == 0
            calls = receiver.of("/gives-up")
        rows = await pool.fetch(
            "SELECT attempt, status, response_status FROM webhook_deliveries"
            " WHERE action_id = $1 ORDER BY attempt",
            action_id,
        )
    assert [tuple(r) for r in rows] == [(1, "failed", 500), (2, "given_up", 500)]
    assert len(calls) == 2
    assert all(c.signed for c in calls)
    assert orjson.loads(calls[0].body)["status"] == "cancelled"
