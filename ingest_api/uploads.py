"""Uploads in progress: a lease their process renews, and how one that broke off ends.

An upload is the API turning a request's rows into chunks on Kafka (or in
Postgres, for a scheduled action). Until it ends, the action's total is not
final and the action cannot complete. Two things make sure it ends:

- **A lease.** The uploading process renews ``upload_lease_until`` every few
  seconds. If it dies, the lease lapses and a reaper, which runs in every
  API and agents process, ends the upload as ``upload_interrupted``. A process
  that finds its lease taken (it stalled past it) stops publishing.
- **An end-of-upload marker.** Which rows reached Kafka before the upload
  broke off only the chunk topic knows, so an upload that broke off (reaped,
  or abandoned by its own process) ends with a marker chunk without rows,
  stored with the action's scheduled chunks: the scheduler publishes it to
  the account's partition, behind every chunk the upload published. When the
  agents reach it, the ledger holds each of those chunks: their rows are the
  action's total, and the action ends (``failed``, with the upload's error)
  only once every one of them has its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from bulkflow import constants, sql
from bulkflow.background import background, poll_forever
from bulkflow.database import ping
from schemas.cells import Cells
from schemas.messages import Chunk

log = logging.getLogger(__name__)

INTERRUPTED = {
    "code": "upload_interrupted",
    "message": "the process receiving the upload stopped before its end; the rows it had "
    "queued are applied, and retrying with the same Idempotency-Key uploads again",
}
_REAP_AT_ONCE = 100  # actions ended per reaper transaction


class UploadLost(Exception):
    """A reaper ended this upload: its lease lapsed while the process stalled."""


class UploadLease:
    """Held by the process streaming an action's rows, renewed in the background."""

    def __init__(self, pool: asyncpg.Pool, action_id: uuid.UUID) -> None:
        self._pool = pool
        self._action_id = action_id
        self._lost = asyncio.Event()

    @classmethod
    @asynccontextmanager
    async def held(cls, pool: asyncpg.Pool, action_id: uuid.UUID) -> AsyncIterator[UploadLease]:
        """Renew the lease (taken when the action was created) for the block's duration."""
        lease = cls(pool, action_id)
        async with background(lease._renew_forever(), name=f"lease-{action_id}"):
            yield lease

    def check(self) -> None:
        """Raise :class:`UploadLost` if a reaper ended the upload."""
        if self._lost.is_set():
            raise UploadLost(f"the upload of {self._action_id} was ended by a reaper")

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(constants.UPLOAD_LEASE_RENEW)
            try:
                renewed = await self._pool.fetchval(
                    sql.postgres("bulk_actions_renew_upload"),
                    self._action_id,
                    constants.UPLOAD_LEASE,
                )
            except Exception as exc:
                # Postgres is away: the upload goes on (it needs Kafka only) and
                # the lease may lapse; if a reaper then ends it, we learn here.
                log.warning("could not renew the upload lease of %s: %r", self._action_id, exc)
                continue
            if renewed is None:
                self._lost.set()
                return


async def end_upload(pool: asyncpg.Pool, action_id: uuid.UUID, error: dict[str, Any]) -> bool:
    """End an upload that broke off with ``error``; False if a reaper ended it first."""
    async with pool.acquire() as conn, conn.transaction():
        ended = await conn.fetch(sql.postgres("bulk_actions_fail"), action_id, error)
        await _queue_end_markers(conn, ended)
    return bool(ended)


class UploadReaper:
    """Ends the uploads whose process stopped renewing their lease.

    A lease that lapsed is ended only if it is still the same a whole lease
    period after the reaper first saw it lapsed: Postgres answered all that
    time (the reaper saw it twice), so a living uploader would have renewed
    it. An upload whose renewals were only held up by an outage goes on.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        confirm_after: float = constants.UPLOAD_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._confirm_after = confirm_after
        self._clock = clock
        self._lapsed: dict[uuid.UUID, tuple[datetime, float]] = {}  # lease seen, when

    def running(self) -> AbstractAsyncContextManager[None]:
        return background(self._run(), name="upload-reaper")

    async def _run(self) -> None:
        await poll_forever(
            "reaping lapsed uploads",
            self.reap_once,
            idle=constants.UPLOAD_REAP_EVERY,
            probe=lambda: ping(self._pool),
        )

    async def reap_once(self) -> int:
        """End every upload whose lease lapsed and stayed so; return how many."""
        now = self._clock()
        seen = await self._pool.fetch(sql.postgres("bulk_actions_lapsed_uploads"), _REAP_AT_ONCE)
        self._lapsed = {
            r["id"]: self._lapsed.get(r["id"], (r["upload_lease_until"], now)) for r in seen
        }
        due = [
            (action_id, lease)
            for action_id, (lease, since) in self._lapsed.items()
            if now - since >= self._confirm_after
        ]
        if not due:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            ended = await conn.fetch(
                sql.postgres("bulk_actions_reap_uploads"),
                INTERRUPTED,
                [action_id for action_id, _ in due],
                [lease for _, lease in due],
            )
            await _queue_end_markers(conn, ended)
        for record in ended:
            log.warning("upload of bulk action %s interrupted: its lease lapsed", record["id"])
        return len(ended)


async def _queue_end_markers(conn: asyncpg.Connection, ended: list[asyncpg.Record]) -> None:
    """Store each ended upload's marker where the scheduler publishes it from."""
    if not ended:
        return
    markers = [_marker(record) for record in ended]
    await conn.execute(
        sql.postgres("scheduled_chunks_add"),
        [m.action_id for m in markers],
        [m.chunk_no for m in markers],
        [m.to_bytes() for m in markers],
    )


def _marker(record: asyncpg.Record) -> Chunk:
    return Chunk(
        action_id=str(record["id"]),
        account_id=record["account_id"],
        entity=record["entity"],
        action=record["action"],
        chunk_no=constants.END_OF_UPLOAD_CHUNK_NO,
        first_row_no=0,
        rows=Cells.from_rows([]),
        options=record["options"],
        ends_upload=True,
    )
