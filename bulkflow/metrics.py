"""Prometheus metrics of every role, defined once; each process exposes its own.

Each ``bulkflow serve`` process counts in its own registry and serves it:
the API process on its own port at ``/metrics``, any process on
``BULKFLOW_METRICS_PORT`` when that is set. Prometheus scrapes every process
and sums across them (``sum by (...)``), which is what makes the numbers
right with several agent replicas; nothing is shared between processes.

Nothing here is counted per row: the agents count a batch's or a chunk's rows
at once (``str.count`` over its outcome codes), the API counts a body's bytes
per block it receives.

Label sets are bounded:

- ``reason`` is one of bulkflow's outcome codes (``invalid_email``,
  ``duplicate``, ``check_violation``...): a fixed vocabulary, never free text;
- ``route`` is the route's path template (``/v1/bulk-actions/{action_id}``),
  ``unmatched`` for any other path;
- ``partition`` is a partition of bulkflow's own topics (12 by default);
- ``account`` is an account id for at most ``ACCOUNT_LABELS`` accounts and
  ``other`` for the rest: the backlog gauge names the accounts with the
  deepest backlogs at each sample; the deferral counter names the first
  accounts a process defers and counts every later one as ``other``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

#: Accounts named in per-account labels, per process; the others are "other".
ACCOUNT_LABELS: Final = 20
OTHER: Final = "other"

# --- agents ---------------------------------------------------------------------

ROWS = Counter(
    "bulkflow_rows",
    "Rows given an outcome by this process's agents, by outcome and reason",
    ["outcome", "reason"],
)
BATCH_SECONDS = Histogram(
    "bulkflow_batch_apply_seconds",
    "Seconds to apply one batch of chunks to Postgres (one transaction, retries included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_ROWS = Histogram(
    "bulkflow_batch_rows",
    "Rows per applied batch",
    buckets=(1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 20_000),
)
INSERTS = Counter(
    "bulkflow_insert_statements",
    "The insert fast path's statements: plain (rows known to be new), refusable "
    "(ON CONFLICT DO NOTHING), plain_refused (a plain one met a taken key; redone refusable)",
    ["kind"],
)
BATCH_RETRIES = Counter(
    "bulkflow_batch_retries", "Batch attempts that failed transiently and were retried"
)
BATCH_RESTARTS = Counter(
    "bulkflow_batch_restarts",
    "Batches that wrote ahead of the batch before and started again once it settled "
    "(it failed an attempt, or changed what they had read)",
)
DEAD_LETTERS = Counter(
    "bulkflow_dead_letters",
    "Messages sent to the dead-letter topic: chunks whose batch failed for good "
    "(or were held behind one), or messages that could not be decoded",
    ["kind"],
)
BACKLOG_CHUNKS = Gauge(
    "bulkflow_backlog_chunks",
    "Chunks waiting in the Postgres backlog, by account (top accounts, the rest as 'other')",
    ["account"],
)
THROTTLE_DEFERRALS = Counter(
    "bulkflow_throttle_deferrals",
    "Chunks put in the backlog: refused by the account's row bucket (rate_limited), "
    "or queued behind its waiting or paused chunks (queued)",
    ["account", "reason"],
)
CONSUMER_LAG = Gauge(
    "bulkflow_consumer_lag",
    "Messages of a partition not yet committed by this process's consumer",
    ["topic", "partition"],
)

# --- sink ------------------------------------------------------------------------

SINK_MESSAGES = Counter(
    "bulkflow_sink_messages",
    "Chunks' outcomes (a JSON line each of an outcome message) written to ClickHouse by the sink",
)
SINK_INSERT_SECONDS = Histogram(
    "bulkflow_sink_insert_seconds",
    "Seconds to write one batch of outcome messages to ClickHouse",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- API --------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "bulkflow_http_requests",
    "API requests by route, method and status",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "bulkflow_http_request_seconds",
    "Seconds from a request's start to its response's start, by route",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RATE_LIMITED = Counter(
    "bulkflow_rate_limited",
    "Requests refused with 429, by the limit that refused them "
    "(address, auth_failures, write, read)",
    ["limit"],
)
UPLOAD_BYTES = Counter(
    "bulkflow_upload_bytes", "Bytes of bulk action bodies received, by kind (json, csv)", ["kind"]
)
ACTIONS_SUBMITTED = Counter(
    "bulkflow_actions_submitted",
    "Bulk actions accepted (202), by entity and action",
    ["entity", "action"],
)
WEBHOOK_DELIVERIES = Counter(
    "bulkflow_webhook_deliveries",
    "Webhook delivery attempts by result (delivered, failed: retried later, given_up)",
    ["result"],
)

# --- helpers -------------------------------------------------------------------------


class AccountLabels:
    """The first ``limit`` accounts seen get their own label; the others share ``other``."""

    def __init__(self, limit: int = ACCOUNT_LABELS) -> None:
        self._limit = limit
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, account_id: str) -> str:
        if account_id in self._named:
            return account_id
        with self._lock:
            if len(self._named) < self._limit:
                self._named.add(account_id)
                return account_id
        return OTHER


def top_accounts(depths: dict[str, int], limit: int = ACCOUNT_LABELS) -> dict[str, int]:
    """The ``limit`` largest values by account, the rest summed under ``other``."""
    ranked = sorted(depths.items(), key=lambda item: (-item[1], item[0]))
    top = dict(ranked[:limit])
    rest = sum(value for _, value in ranked[limit:])
    if rest:
        top[OTHER] = top.get(OTHER, 0) + rest
    return top


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus' text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


@contextmanager
def serving(host: str, port: int) -> Iterator[None]:
    """This process's metrics on ``http://host:port/metrics`` (a thread), inside the block."""
    server, thread = start_http_server(port, addr=host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
