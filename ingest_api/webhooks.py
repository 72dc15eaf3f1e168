"""Completion webhooks: the deliverer, and the list of an action's attempts.

When an action ends (completed, failed, cancelled) with a ``callback_url``, a
trigger (``sql/010_webhooks.sql``) writes its first delivery, whoever ended it.
:class:`WebhookDeliverer` runs in every API process: it claims due
deliveries (``FOR UPDATE SKIP LOCKED``, so replicas share them), POSTs the
action as ``GET /v1/bulk-actions/{id}`` shows it plus ``links``, signed
(``ingest_api/callbacks.py``), and records the attempt. A 2xx is delivered;
anything else is retried after a backoff that doubles from
``BULKFLOW_WEBHOOK_FIRST_RETRY`` up to an hour, until 24 h after the first
attempt: the last one is then ``given_up``. A receiver may see an attempt
twice (a process that dies after the POST, before recording it): the action's
``id`` tells repeats apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import asyncpg
import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkflow import constants, metrics, sql
from bulkflow.background import background, poll_forever
from bulkflow.database import ping
from ingest_api.actions import ActionStore, view
from ingest_api.callbacks import SIGNATURE_HEADER, AddressRefused, resolve, sign
from ingest_api.errors import JsonResponse
from ingest_api.routes import caller, owned
from schemas.webhook import DeliveryPage, WebhookDelivery

log = logging.getLogger(__name__)

USER_AGENT = "bulkflow-webhooks/1"


def backoff(attempt: int, first_retry: float) -> float:
    """Seconds between attempt ``attempt`` (1-based) and the next."""
    return float(min(first_retry * 2 ** (attempt - 1), constants.WEBHOOK_RETRY_CAP))


def links(base_url: str, action_id: uuid.UUID) -> dict[str, str]:
    action = f"{base_url}/v1/bulk-actions/{action_id}"
    return {
        "self": action,
        "stats": f"{action}/stats",
        "logs": f"{action}/logs",
        "failed_rows": f"{action}/failed-rows.csv",
        "deliveries": f"{action}/deliveries",
    }


class WebhookDeliverer:
    def __init__(
        self,
        store: ActionStore,
        *,
        base_url: str,
        rows_per_minute: int,
        first_retry: float,
        allow_private: bool,
    ) -> None:
        self._store = store
        self._pool: asyncpg.Pool = store.pool
        self._base_url = base_url
        self._rows_per_minute = rows_per_minute
        self._first_retry = first_retry
        self._allow_private = allow_private
        self._client: httpx.AsyncClient | None = None

    def running(self) -> AbstractAsyncContextManager[None]:
        return self._running()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=constants.WEBHOOK_TIMEOUT,
                    follow_redirects=False,  # a redirect could lead anywhere: not followed
                    headers={"User-Agent": USER_AGENT},
                )
            )
            await stack.enter_async_context(background(self._run(), name="webhooks"))
            yield

    async def _run(self) -> None:
        await poll_forever(
            "delivering webhooks",
            self.deliver_due,
            idle=constants.WEBHOOK_POLL,
            probe=lambda: ping(self._pool),
        )

    async def deliver_due(self) -> int:
        """Attempt every due delivery (up to a batch) at once; return how many."""
        claims = await self._pool.fetch(
            sql.postgres("webhook_deliveries_claim"),
            constants.WEBHOOK_BATCH,
            constants.WEBHOOK_LEASE,
        )
        results = await asyncio.gather(*map(self._deliver, claims), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # logged by poll_forever; the lease makes it due again
        return len(claims)

    async def _deliver(self, claim: asyncpg.Record) -> None:
        status, error = await self._attempt(claim)
        if status is not None and 200 <= status < 300:
            await self._pool.fetchval(
                sql.postgres("webhook_deliveries_delivered"), claim["id"], status
            )
            result = "delivered"
        else:
            result = (
                await self._pool.fetchval(
                    sql.postgres("webhook_deliveries_failed"),
                    claim["id"],
                    claim["action_id"],
                    status,
                    error,
                    backoff(claim["attempt"], self._first_retry),
                    constants.WEBHOOK_GIVE_UP_AFTER,
                )
                or "failed"
            )
        metrics.WEBHOOK_DELIVERIES.labels(result).inc()
        log.info(
            "webhook of %s, attempt %d: %s (%s)",
            claim["action_id"],
            claim["attempt"],
            result,
            status if status is not None else error,
        )

    async def _attempt(self, claim: asyncpg.Record) -> tuple[int | None, str | None]:
        """The receiver's HTTP status, or why there was none."""
        secret = claim["webhook_secret"]
        if secret is None:
            return None, "the account has no webhook secret"
        record = await self._store.get(claim["account_id"], claim["action_id"])
        if record is None:
            return None, "the action is gone"
        body = orjson.dumps(
            {
                **view(record, self._rows_per_minute).model_dump(mode="json"),
                "links": links(self._base_url, record["id"]),
            }
        )
        try:
            async with asyncio.timeout(constants.WEBHOOK_TIMEOUT):
                return await self._post(claim["callback_url"], secret, body, claim["attempt"]), None
        except AddressRefused as exc:
            return None, str(exc)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    async def _post(self, callback_url: str, secret: str, body: bytes, attempt: int) -> int:
        assert self._client is not None, "deliver inside running()"
        url = httpx.URL(callback_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await resolve(url.host, port, self._allow_private)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            "Bulkflow-Attempt": str(attempt),
        }
        if url.scheme == "http":
            # Connect to the address just checked, not to a second lookup's
            # answer. (https keeps the name: the certificate must match it.)
            headers["Host"] = url.netloc.decode("ascii")
            url = url.copy_with(host=str(addresses[0]))
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            return response.status_code  # the body is not read


async def list_deliveries(request: Request) -> Response:
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    rows = await resources.store.pool.fetch(sql.postgres("webhook_deliveries_of"), record["id"])
    page = DeliveryPage(data=[WebhookDelivery.model_validate(dict(r)) for r in rows])
    return JsonResponse(page.model_dump(mode="json"))


webhook_routes = [
    Route("/v1/bulk-actions/{action_id}/deliveries", list_deliveries, methods=["GET"]),
]
