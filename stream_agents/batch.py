"""Apply a batch of chunks to Postgres: effectively once, set-based, per-row outcomes.

One transaction per batch, or two (see ``_halves``):

1. look up the chunks in ``chunk_ledger``: a chunk found there was applied
   before (Kafka redelivered it) and its recorded outcomes are replayed;
2. validate every row of the other chunks; invalid rows fail with a reason;
3. stage the valid rows and apply them with the entity's one-statement SQL
   (rows repeating a key within the batch: same action -> skipped as
   ``duplicate``; another action -> a later round, keeping submission order),
   new rows first through the entity's insert fast path; a batch goes in parts,
   and the parts after the first are validated and staged on a worker thread
   while Postgres applies the ones before them;
4. record the chunks in the ledger and add their counts to their actions.

A chunk is never half-applied: its rows, its ledger entry and its counts commit
in one transaction. A batch of one action per account may go in two: the later
parts on a second connection, their new rows inserted while the first
transaction applies the earlier parts, recorded and committed after it. The
agent's next batch goes the same way behind the whole batch: its new rows
while this one finishes, the rest once it has settled (``stream_agents/turn.py``).
While Postgres is unreachable the batch waits for it, however long; transient
failures while it answers retry the batch at a fixed interval
(``bulkflow/retry.py``), the chunks a first transaction committed replayed from
the ledger.
A batch that fails for good fails its rows, and its chunks are dead-lettered
for replay; the chunks of those actions that come later are held behind them
(failed as ``held_for_replay`` and dead-lettered too), so that a replay applies
every row in file order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import accumulate, chain, compress, count, groupby, islice, repeat
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, TypeVar

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from bulkflow import constants, metrics, sql
from bulkflow.binary_copy import Repeated
from bulkflow.database import ping
from bulkflow.retry import Failure, until_answers
from schemas.action import ACTIONS, ActionType
from schemas.cells import Cells, JsonRow
from schemas.column_reader import FieldValues, ReadRows, read_chunks
from schemas.entity import ENTITIES, MATCH_EXTERNAL_ID, MATCH_ID, Entity
from schemas.messages import CODES, Chunk, Outcome, OutcomeBatch, RowProblem
from schemas.options import ActionOptions
from stream_agents.errors import (
    ConcurrentWrite,
    RetriesExhausted,
    failure,
    is_transient,
    row_reason,
)
from stream_agents.fresh_keys import FreshKeys
from stream_agents.lookahead import Lookahead
from stream_agents.plain_insert import NOTHING, CopyRefused, NewRows, PlainInsert, Staged
from stream_agents.turn import Overtaken, Turn

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Selects a round's rows of a part from one of its columns (_picker).
Picker = Callable[[list[Any]], Sequence[Any]]
ChunkKey = tuple[str, int]
#: Statements a round's rows get again when their write lost to another (see _apply_round).
_REAPPLY = 2


@dataclass(slots=True)
class ChunkResult:
    codes: list[str]
    problems: dict[int, RowProblem] = field(default_factory=dict)
    #: Each row's match value as given, when the rows were read (else worked out later).
    keys: list[str] | None = None
    #: When the chunk was applied: a replay reports the original time, so its
    #: outcome rows are identical to the first delivery's.
    #: Seconds since the epoch, to the millisecond (as stored).
    processed_at: float = field(default_factory=lambda: round(time.time(), 3))

    def fail(self, index: int, problem: RowProblem, code: str = "f") -> None:
        self.codes[index] = code
        self.problems[index] = problem


class _Part(NamedTuple):
    """A chunk's valid rows as read (columns), and what every one of them shares."""

    chunk: ChunkKey
    account_id: str
    action_id: str
    op: str
    first_row_no: int
    rows: ReadRows


#: Rows of one round: parts, each with the positions of its rows in the round
#: (indexes into ``part.rows.valid``, ``part.rows.key`` ...).
_Round = list[tuple[_Part, list[int]]]


class _Group(NamedTuple):
    """Parts of consecutive chunks with one entity, match field and statement."""

    entity: str
    match_on: str
    query: str  # the action's apply statement for the entity (ActionType.apply_query)
    parts: list[_Part]


class _Split(NamedTuple):
    """A round's creating rows: for the plain INSERT (staged), and for the
    refusable one (staged when it runs: usually there are none)."""

    plain: _Round
    refusable: _Round
    staged: Staged


class _Prepared(NamedTuple):
    """A group's rows in rounds, the first one split ahead unless applied row by row."""

    group: _Group
    rounds: list[_Round]
    split: _Split | None


class _SecondHalf:
    """A batch's later parts on a second connection (_halves): when they may go on."""

    def __init__(self) -> None:
        #: Every earlier part is prepared: their keys are in the filters.
        self.prepared = asyncio.Event()
        #: The earlier parts' transaction committed: the later parts' other rows
        #: and their counts may go on.
        self.committed = asyncio.Event()
        self.later: asyncio.Task[dict[ChunkKey, ChunkResult]] | None = None

    async def after_commit(self) -> dict[ChunkKey, ChunkResult]:
        """The later parts' results, once their transaction commits too."""
        self.committed.set()
        return {} if self.later is None else await self.later

    async def cancel(self) -> None:
        """The batch failed: the later parts' transaction rolls back too (a retry
        replays what the first committed from the ledger, and applies the rest)."""
        if self.later is not None:
            self.later.cancel()
            await asyncio.gather(self.later, return_exceptions=True)


class DeadLetters(Protocol):
    """Where chunks that failed for good are kept (``stream_agents.dead_letters``)."""

    async def send_chunks(self, chunks: Sequence[Chunk], error: BaseException) -> None: ...


class _State(NamedTuple):
    """What a batch needs to know of an action (``bulk_actions_chunk_states.sql``)."""

    status: str
    total_rows: int | None
    held_after: int | None

    def holds(self, chunk: Chunk) -> bool:
        """A chunk behind the action's dead-lettered one waits for the replay.

        Not the end-of-upload marker: it only settles the total, which counts
        the held rows as failed until a replay applies them.
        """
        return (
            self.held_after is not None
            and chunk.chunk_no > self.held_after
            and not chunk.ends_upload
        )

    def beyond(self, chunk: Chunk) -> bool:
        """Rows past the sealed total: published by an upload a reaper had ended."""
        return (
            self.total_rows is not None
            and bool(chunk.rows)
            and chunk.first_row_no > self.total_rows
        )

    def verdict(self, chunk: Chunk) -> tuple[bool, bool, bool, bool]:
        """What the state decides of a chunk: skipped as cancelled, held, releasing
        its action, beyond the total (not whether its action is queued or running)."""
        return (
            self.status == "cancelled",
            self.holds(chunk),
            self.held_after == chunk.chunk_no,
            self.beyond(chunk),
        )


class BatchProcessor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dead_letters: DeadLetters,
        *,
        entities: dict[str, Entity] = ENTITIES,
        actions: dict[str, ActionType] = ACTIONS,
        attempts: int = constants.RETRY_ATTEMPTS,
        interval: float = constants.RETRY_INTERVAL,
    ) -> None:
        self._pool = pool
        self._dead_letters = dead_letters
        self._entities = entities
        self._actions = actions
        self._attempts = attempts
        self._interval = interval
        self._inserts = _InsertFirst()
        self._fresh = FreshKeys()
        self._plain = {name: PlainInsert(entity) for name, entity in entities.items()}

    async def process(
        self, chunks: Sequence[Chunk], *, turn: Turn | None = None, after: Turn | None = None
    ) -> list[OutcomeBatch]:
        """Apply the chunks; return the outcomes of every row of every known action.

        A permanent database error (one not worth retrying, such as a constraint
        a row violates) does not fail the batch: the chunks are applied again
        with each row in a savepoint of its own, so that only the rows at
        fault fail, each with the database's reason.

        ``after``: the turn of the batch before, which may not have settled
        yet: this one then writes ahead of it as far as that is safe
        (``stream_agents/turn.py``). ``turn``: this batch's, told when its rows
        are prepared and when an attempt fails.
        """
        unique = _first_of_each(chunks)
        turn = turn or Turn()
        turn.take(unique)
        if after is not None and not turn.may_write_ahead_of(after):
            await after.settled.wait()
            after = None
        try:
            results = await self._with_retries(unique, isolate=False, turn=turn, after=after)
        except asyncpg.PostgresError as exc:
            if is_transient(exc):
                raise
            log.warning("batch failed with %s; applying row by row", type(exc).__name__)
            results = await self._with_retries(unique, isolate=True, turn=turn)
        return self._outcomes([c for c in unique if c.key in results], results)

    async def fail(self, chunks: Sequence[Chunk], exc: BaseException) -> list[OutcomeBatch]:
        """Fail every row of chunks that could not be applied, dead-letter and record them.

        The dead letters go first: if this process dies before the failure is
        recorded, the batch is redelivered and applied after all, and a replay
        then finds nothing to take back. Recording is retried, outages waited
        out, until it commits: the batch must not be acknowledged before.
        Chunks another consumer recorded meanwhile keep their recorded outcomes.
        """
        cause = exc.cause if isinstance(exc, RetriesExhausted) else exc
        reason = "retries_exhausted" if isinstance(exc, RetriesExhausted) else "internal_error"
        problem = RowProblem(reason, f"{type(cause).__name__}: {cause}"[:500])
        unique = _first_of_each(chunks)
        await self._dead_letters.send_chunks(unique, cause)
        results = {c.key: _failed(c, problem) for c in unique}
        recorded = await self._until_committed(
            "recording a failed batch", lambda: self._record_failure(unique, results)
        )
        results.update(recorded)
        return self._outcomes(unique, results)

    async def _record_failure(
        self, chunks: list[Chunk], results: dict[ChunkKey, ChunkResult]
    ) -> dict[ChunkKey, ChunkResult]:
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await self._recorded(conn, chunks)
            states = await self._states(conn, chunks)
            fresh = [c for c in chunks if c.key not in recorded and c.action_id in states]
            await self._record(conn, fresh, results, dead_lettered=True)
            # A marker has no rows to replay: its upload ends, the failed rows
            # counted, rather than wait for a replay that is not needed.
            await _end_uploads(conn, fresh)
        return recorded

    async def _until_committed(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step until it commits: outages waited out, other errors retried."""
        while True:
            try:
                return await step()
            except Exception as exc:
                if not await self._waited_out(exc):
                    log.exception("%s failed; retrying", what)
                    await asyncio.sleep(self._interval)

    async def _with_retries(
        self, chunks: list[Chunk], *, isolate: bool, turn: Turn, after: Turn | None = None
    ) -> dict[ChunkKey, ChunkResult]:
        attempt = 0
        while True:
            try:
                return await self._apply_once(chunks, isolate=isolate, turn=turn, after=after)
            except Exception as exc:
                turn.faltered.set()
                if after is not None:
                    # It wrote ahead of the batch before: rolled back, it goes
                    # again once that one has settled.
                    metrics.BATCH_RESTARTS.inc()
                    await after.settled.wait()
                    after = None
                    if isinstance(exc, Overtaken):
                        continue  # no attempt spent
                if failure(exc) is Failure.PERMANENT:
                    raise
                if await self._waited_out(exc):
                    continue  # an outage spends no attempt
                attempt += 1
                if attempt == self._attempts:
                    raise RetriesExhausted(attempt, exc) from exc
                log.warning("batch attempt %d failed (%s), retrying", attempt, type(exc).__name__)
                metrics.BATCH_RETRIES.inc()
                await asyncio.sleep(self._interval)

    async def _waited_out(self, exc: BaseException) -> bool:
        """If Postgres does not answer, wait until it does; whether it was away."""
        try:
            await ping(self._pool)
        except Exception:
            log.warning("Postgres is unreachable (%r); the batch waits for it", exc)
            await until_answers(lambda: ping(self._pool), "Postgres", interval=self._interval)
            return True
        return False

    async def _apply_once(
        self, chunks: list[Chunk], *, isolate: bool, turn: Turn, after: Turn | None
    ) -> dict[ChunkKey, ChunkResult]:
        """One attempt; ``after``: the batch before, which this one writes ahead of."""
        turns = _SecondHalf()
        loop = asyncio.get_running_loop()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                recorded = await self._recorded(conn, chunks)
                states = await self._states(conn, chunks)
                fresh = [c for c in chunks if c.key not in recorded and self._known(c, states)]
                if not fresh:
                    turn.prepared.set()
                    return recorded
                # The chunk an action is held behind, replayed: the chunks behind it
                # in this batch were replayed behind it too.
                released = {
                    c.action_id for c in fresh if states[c.action_id].held_after == c.chunk_no
                }
                held = [
                    c for c in fresh if states[c.action_id].holds(c) and c.action_id not in released
                ]
                if held and after is not None:
                    # Held by a state the batch before may change: not ahead of it.
                    raise Overtaken()
                holding = {c.key for c in held}
                applied = [c for c in fresh if c.key not in holding]
                results = {c.key: _failed(c, _held(states[c.action_id])) for c in held}
                if held:
                    # Inside the transaction: if the process dies before it commits,
                    # the redelivered batch holds them again; no letter is lost.
                    await self._dead_letters.send_chunks(held, HeldForReplay())
                first, rest = _halves(applied, isolate)

                def prepared() -> None:  # on a worker thread
                    loop.call_soon_threadsafe(turn.prepared.set)

                def first_prepared() -> None:  # on a worker thread
                    loop.call_soon_threadsafe(turns.prepared.set)
                    if not rest:
                        prepared()

                if rest:
                    turns.later = asyncio.create_task(
                        self._apply_later(rest, states, isolate, turns, prepared)
                    )
                gate = None
                if after is not None:
                    gate = partial(self._settled_before, conn, after, chunks, recorded, states)
                try:
                    results |= await self._apply(
                        conn, first, states, isolate=isolate, then=first_prepared, rest=gate
                    )
                finally:
                    turns.prepared.set()  # the second must not wait for ever
                await self._record(conn, first, results)
                await self._record(conn, held, results, dead_lettered=True)
                await _release_and_end(conn, first, states)
            results |= await turns.after_commit()
        except BaseException:
            await turns.cancel()
            raise
        return {**recorded, **results}

    async def _apply_later(
        self,
        chunks: list[Chunk],
        states: dict[str, _State],
        isolate: bool,
        turns: _SecondHalf,
        then: Callable[[], object],
    ) -> dict[ChunkKey, ChunkResult]:
        """The batch's later parts, in a transaction of their own on a second
        connection (see _halves): their new rows while the first transaction
        applies the earlier parts; the rest, the ledger and the counts once it
        has committed. ``then``: called once they are prepared."""
        # Not before: its worker thread must not wait for the first one's, which
        # may itself be waiting for a free worker of the same thread pool.
        await turns.prepared.wait()
        async with self._pool.acquire() as conn, conn.transaction():
            results = await self._apply(
                conn, chunks, states, isolate=isolate, then=then, rest=turns.committed.wait
            )
            await self._record(conn, chunks, results)
            await _release_and_end(conn, chunks, states)
        return results

    async def _settled_before(
        self,
        conn: asyncpg.Connection,
        before: Turn,
        chunks: list[Chunk],
        recorded: dict[ChunkKey, ChunkResult],
        states: dict[str, _State],
    ) -> None:
        """Once the batch before has settled: raise :class:`Overtaken` unless what
        this attempt read at its start still holds."""
        await before.outcome()
        if (await self._recorded(conn, chunks)).keys() != recorded.keys():
            raise Overtaken()
        now = await self._states(conn, chunks)
        if _verdicts(chunks, now) != _verdicts(chunks, states):
            raise Overtaken()

    def _known(self, chunk: Chunk, states: dict[str, _State]) -> bool:
        state = states.get(chunk.action_id)
        if state is None:
            log.error("dropping chunk %s of unknown action", chunk.key)
            return False
        if state.beyond(chunk):
            log.warning("dropping chunk %s: past the total of an upload that was ended", chunk.key)
            return False
        return True

    async def _recorded(
        self, conn: asyncpg.Connection, chunks: list[Chunk]
    ) -> dict[ChunkKey, ChunkResult]:
        rows = await conn.fetch(
            sql.postgres("chunk_ledger_fetch"),
            [c.action_id for c in chunks],
            [c.chunk_no for c in chunks],
        )
        return {
            (r["action_id"], r["chunk_no"]): ChunkResult(
                list(r["codes"]),
                {int(i): RowProblem.from_json(p) for i, p in r["reasons"].items()},
                processed_at=r["processed_at"].timestamp(),
            )
            for r in rows
        }

    async def _states(self, conn: asyncpg.Connection, chunks: list[Chunk]) -> dict[str, _State]:
        """The state of each chunk's action; an unknown action is absent."""
        ids = sorted({c.action_id for c in chunks})
        rows = await conn.fetch(sql.postgres("bulk_actions_chunk_states"), ids)
        return {r["id"]: _State(r["status"], r["total_rows"], r["held_after"]) for r in rows}

    async def _apply(
        self,
        conn: asyncpg.Connection,
        chunks: list[Chunk],
        states: dict[str, _State],
        *,
        isolate: bool,
        then: Callable[[], object] | None = None,
        rest: Callable[[], Awaitable[object]] | None = None,
    ) -> dict[ChunkKey, ChunkResult]:
        """``then``: called once every part is prepared (on the worker thread);
        ``rest``: the parts wait for something before them (the earlier half of
        their batch, see _halves, or the batch before, see ``stream_agents/turn.py``):
        all prepared on the thread, each one's new rows inserted first and the
        rest once ``rest()`` returns."""
        results = {c.key: ChunkResult(["?"] * len(c.rows)) for c in chunks}
        if not chunks:
            return results
        parts = [
            chunks[start : start + constants.STATEMENT_CHUNKS]
            for start in range(0, len(chunks), constants.STATEMENT_CHUNKS)
        ]
        # Parts in order, one after the other (same connection, same
        # transaction). Between statements the event loop should only send and
        # receive: the first part is read and prepared here while a worker
        # thread reads the rest of the batch (in one call: a column kernel's
        # cost is mostly per call), then prepares each later part (rounds, key
        # filter split, its insert rows encoded) while Postgres applies the
        # parts before it. Each later part prepared on the loop instead, while
        # Postgres applied the previous one, measured slower (README, "tried
        # and not kept"); on the thread, in-process, wall time fell from 1.64 to
        # 1.50 times Postgres' own CPU (README).
        if rest is not None:
            ahead = Lookahead(
                lambda: self._ahead(parts, chunks, states, results, isolate, then=then)
            )
            async with ahead:
                await self._write_later(conn, ahead, results, isolate, rest)
            return results
        split = threading.Event()  # the first part's keys are in the filters
        later = [chunk for part in parts[1:] for chunk in part]
        ahead = Lookahead(
            lambda: self._ahead(parts[1:], later, states, results, isolate, split, then)
        )
        async with ahead:
            try:
                reads = self._read(parts[0], states, results)
                first = self._prepare(parts[0], reads, results, isolate)
            finally:
                split.set()
            await self._write(conn, first, results, isolate)
            async for prepared in ahead:
                await self._write(conn, prepared, results, isolate)
        return results

    async def _write_later(
        self,
        conn: asyncpg.Connection,
        ahead: AsyncIterable[list[_Prepared]],
        results: dict[ChunkKey, ChunkResult],
        isolate: bool,
        rest: Callable[[], Awaitable[object]],
    ) -> None:
        """The new rows of every part as it is prepared, the rest once ``rest()`` returns."""
        left = [await self._insert_ahead(conn, prepared, results) async for prepared in ahead]
        await rest()
        for prepared in left:
            await self._write(conn, prepared, results, isolate)

    async def _insert_ahead(
        self,
        conn: asyncpg.Connection,
        prepared: list[_Prepared],
        results: dict[ChunkKey, ChunkResult],
    ) -> list[_Prepared]:
        """The plain INSERT of each group's first round; what is left to write."""
        left = []
        for group, rounds, split in prepared:
            if split is None or not split.plain:
                left.append(_Prepared(group, rounds, split))
                continue
            entity = self._entities[group.entity]
            rows, refusable = await self._insert_plain(conn, entity, rounds[0], split, results)
            if rows:
                left.append(_Prepared(group, [rows, *rounds[1:]], _refusable_only(refusable)))
            elif rounds[1:]:
                left.append(_Prepared(group, rounds[1:], None))
        return left

    def _ahead(
        self,
        parts: list[list[Chunk]],
        chunks: list[Chunk],
        states: dict[str, _State],
        results: dict[ChunkKey, ChunkResult],
        isolate: bool,
        after: threading.Event | None = None,
        then: Callable[[], object] | None = None,
    ) -> Generator[list[_Prepared], None, None]:
        """On a worker thread: read ``chunks`` (the parts' chunks), then prepare each
        part once the part before them is (``after``): the key filters see the
        rows in file order. ``then`` is called once the last part is prepared
        (not if one fails: a successor must not prepare before this one has).

        It touches only these chunks' results, and the key filters under their lock.
        """
        reads = self._read(chunks, states, results)
        if after is not None:
            after.wait()
        for part in parts:
            yield self._prepare(part, reads, results, isolate)
        if then is not None:
            then()

    def _read(
        self, chunks: list[Chunk], states: dict[str, _State], results: dict[ChunkKey, ChunkResult]
    ) -> dict[ChunkKey, tuple[Entity, str, str, ReadRows]]:
        """Read every row: the chunks of one action whose columns match, all at once.

        A column kernel costs about as much called on 500 rows as on 10,000:
        reading a run of chunks together spreads that over many more rows.
        The invalid rows fail here; the valid ones, by chunk, with their
        entity, match field and statement.
        """
        reads: dict[ChunkKey, tuple[Entity, str, str, ReadRows]] = {}
        for run in _runs(chunks):
            first = run[0]
            if states[first.action_id].status == "cancelled":
                for chunk in run:
                    for index in range(len(chunk.rows)):
                        results[chunk.key].fail(index, _CANCELLED, code="s")
                continue
            entity = self._entities.get(first.entity)
            action = self._actions.get(first.action)
            if entity is None or action is None or entity.name not in action.entities:
                problem = (
                    RowProblem("unknown_entity", f"no entity named {first.entity!r}")
                    if entity is None
                    else RowProblem(
                        "unknown_action", f"no action {first.action!r} for {entity.name}"
                    )
                )
                for chunk in run:
                    for index in range(len(chunk.rows)):
                        results[chunk.key].fail(index, problem)
                continue
            options = ActionOptions.model_validate(first.options)
            match_on = options.match_on or entity.identifier
            query = action.apply_query(entity)
            reader = action.chunk_reader(entity, options)
            for chunk, read in zip(run, read_chunks(reader, run), strict=True):
                result = results[chunk.key]
                result.keys = read.display_keys
                for index, problem in read.problems.items():
                    result.fail(index, problem)
                reads[chunk.key] = (entity, match_on, query, read)
        return reads

    def _prepare(
        self,
        chunks: list[Chunk],
        reads: dict[ChunkKey, tuple[Entity, str, str, ReadRows]],
        results: dict[ChunkKey, ChunkResult],
        isolate: bool,
    ) -> list[_Prepared]:
        """The chunks' valid rows in rounds, a group per run of chunks with one entity,
        match field and statement; each group's first round split and encoded for
        the plain INSERT.

        Runs, not one group per entity and match field: the groups are applied
        one after the other, and a later action's rows must not go first.
        """
        groups: list[_Group] = []
        for chunk in chunks:
            if chunk.key not in reads:
                continue  # cancelled, or of an unknown entity or action: failed already
            entity, match_on, query, read = reads[chunk.key]
            if not groups or groups[-1][:3] != (entity.name, match_on, query):
                groups.append(_Group(entity.name, match_on, query, []))
            groups[-1].parts.append(
                _Part(
                    chunk.key,
                    chunk.account_id,
                    chunk.action_id,
                    chunk.action,
                    chunk.first_row_no,
                    read,
                )
            )
        prepared = []
        for group in groups:
            entity = self._entities[group.entity]
            for part in group.parts:
                _, chunk_no = part.chunk
                if chunk_no == 0 and part.op in _CREATING:
                    self._fresh.start(part.action_id)  # its keys are known from row one
            rounds = _rounds(group.parts, results, entity)
            split = None
            if rounds and not isolate and self._inserts.worth_trying(rounds[0], group.match_on):
                split = self._split(entity, group.match_on, rounds[0])
            prepared.append(_Prepared(group, rounds, split))
        return prepared

    async def _write(
        self,
        conn: asyncpg.Connection,
        prepared: list[_Prepared],
        results: dict[ChunkKey, ChunkResult],
        isolate: bool,
    ) -> None:
        for group, rounds, split in prepared:
            entity = self._entities[group.entity]
            for number, rows in enumerate(rounds):
                if isolate:
                    for part, positions in rows:
                        for position in positions:
                            await self._apply_alone(
                                conn, entity, group, [(part, [position])], results
                            )
                else:
                    first = split if number == 0 else None
                    await self._apply_round(conn, entity, group, rows, results, split=first)

    async def _apply_alone(
        self,
        conn: asyncpg.Connection,
        entity: Entity,
        group: _Group,
        row: _Round,
        results: dict[ChunkKey, ChunkResult],
    ) -> None:
        """One row in a savepoint: a permanent error fails this row only."""
        try:
            async with conn.transaction():
                await self._apply_round(conn, entity, group, row, results)
        except asyncpg.PostgresError as exc:
            if is_transient(exc):
                raise
            reason = row_reason(exc)
            # str(exc) would add the DETAIL on a line of its own: one line, each once.
            detail = getattr(exc, "detail", None)
            message = getattr(exc, "message", None) or str(exc)
            message += f" ({detail})" if detail else ""
            [(part, [position])] = row
            index = part.rows.valid[position]
            results[part.chunk].fail(index, RowProblem(reason, message[:500]))

    async def _apply_round(
        self,
        conn: asyncpg.Connection,
        entity: Entity,
        group: _Group,
        rows: _Round,
        results: dict[ChunkKey, ChunkResult],
        again: int = _REAPPLY,
        *,
        split: _Split | None = None,
    ) -> None:
        """``split``: these rows split for the insert statements ahead of time."""
        if self._inserts.worth_trying(rows, group.match_on):
            split = split or self._split(entity, group.match_on, rows)
            rows = await self._insert_new(conn, entity, rows, split, results)
            if not rows:
                return
        picks = [_picker(part, positions) for part, positions in rows]
        staged_rows = list(
            zip(
                count(),  # seq
                _runs_of(rows, lambda part: part.account_id),
                _runs_of(rows, lambda part: part.action_id),
                _row_nos_of(rows, picks),
                _runs_of(rows, lambda part: part.op),
                _picked(rows, picks, lambda part: part.rows.match_id),
                _picked(rows, picks, lambda part: part.rows.mask),
                *_round_values(rows, picks),
            )
        )
        where = [(part, position) for part, positions in rows for position in positions]
        query = sql.postgres(group.query)
        lost: _Round = []
        for record in await conn.fetch(query, staged_rows, group.match_on):
            part, position = where[record["seq"]]
            code, reason = record["code"], record["reason"]
            if code == "r":
                if lost and lost[-1][0] is part:
                    lost[-1][1].append(position)
                else:
                    lost.append((part, [position]))
                continue
            index = part.rows.valid[position]
            result = results[part.chunk]
            result.codes[index] = code
            if reason:
                related = record["related_row"]
                result.problems[index] = RowProblem(
                    reason, _message(entity, reason, related), related
                )
        if lost:
            # Their write lost to one the statement's snapshot did not show: a row
            # of the same statement (two new rows sharing a unique value besides
            # the match key) or another consumer's commit. The next statement
            # sees it and decides (a conflict, or an update), before later rounds.
            if again == 0:
                part, [position, *_] = lost[0]
                shown = results[part.chunk].keys or []
                key = shown[part.rows.valid[position]] if shown else part.rows.key[position]
                raise ConcurrentWrite(f"{entity.name} {key} keeps changing")
            await self._apply_round(conn, entity, group, lost, results, again - 1)

    async def _insert_new(
        self,
        conn: asyncpg.Connection,
        entity: Entity,
        rows: _Round,
        split: _Split,
        results: dict[ChunkKey, ChunkResult],
    ) -> _Round:
        """Insert the rows that create what no unique index refuses; return the others.

        Rows their action's filter knows to be new go through the plain INSERT,
        rows it may have seen straight to the apply statement, and the rest
        through the refusable INSERT. If a row the filter let through was not
        new after all, the round is inserted the refusable way
        (``stream_agents/fresh_keys.py``).
        """
        rows, refusable = await self._insert_plain(conn, entity, rows, split, results)
        if not refusable:
            return rows
        new_rows = _insert_rows(refusable)
        record = await conn.fetchrow(sql.postgres(entity.insert_query), new_rows)
        metrics.INSERTS.labels("refusable").inc()
        self._inserts.record(refusable, len(new_rows), len(record["row_nos"]))
        return _not_inserted(rows, record, results)

    async def _insert_plain(
        self,
        conn: asyncpg.Connection,
        entity: Entity,
        rows: _Round,
        split: _Split,
        results: dict[ChunkKey, ChunkResult],
    ) -> tuple[_Round, _Round]:
        """The plain INSERT of the split's plain rows: the round's rows it did not
        create, and those left for the refusable INSERT."""
        plain, refusable = split.plain, split.refusable
        if not plain:
            return rows, refusable
        try:
            try:
                await self._insert_staged(conn, entity, split.staged)
            except CopyRefused:
                await self._insert_staged(conn, entity, split.staged.by_statement())
        except (asyncpg.UniqueViolationError, _NotAllInserted):
            metrics.INSERTS.labels("plain_refused").inc()
            for part, _ in plain:
                self._fresh.forget(part.action_id)
            return rows, [(part, pos) for part, pos in rows if part.op in _CREATING]
        metrics.INSERTS.labels("plain").inc()
        return _created(rows, plain, results), refusable

    async def _insert_staged(
        self, conn: asyncpg.Connection, entity: Entity, staged: Staged
    ) -> None:
        """Every staged row in a savepoint, or none."""
        async with conn.transaction():  # a savepoint
            inserted = await self._plain[entity.name].insert(conn, staged)
            if inserted != staged.rows:
                # A row without its key, or naming what does not exist.
                raise _NotAllInserted(f"{inserted} of {staged.rows}")

    def _split(self, entity: Entity, match_on: str, rows: _Round) -> _Split:
        """The round's creating rows for the plain INSERT, and for the refusable one.

        Plain: rows matched on the identifier whose key and external id their
        action surely never had. In neither list: rows with a value a filter
        may hold; the apply statement decides them.
        """
        creating = [(part, positions) for part, positions in rows if part.op in _CREATING]
        if match_on != entity.identifier:
            return _Split([], creating, NOTHING)
        other = (
            entity.fields.index(MATCH_EXTERNAL_ID)
            if entity.identifier != MATCH_EXTERNAL_ID and MATCH_EXTERNAL_ID in entity.fields
            else None
        )
        plain: _Round = []
        refusable: _Round = []
        # One filter call for an action's parts: numpy's cost is mostly per call.
        for action_id, run in groupby(creating, key=lambda item: item[0].action_id):
            parts = list(run)
            picks = [_picker(part, positions) for part, positions in parts]
            keys = [pick(part.rows.key) for (part, _), pick in zip(parts, picks, strict=True)]
            held = self._fresh.add(action_id, match_on, list(chain.from_iterable(keys)))
            if held is None:
                refusable += parts
                continue
            if other is not None:
                values = (
                    pick(part.rows.values[other])
                    for (part, _), pick in zip(parts, picks, strict=True)
                )
                held |= self._held_values(action_id, list(chain.from_iterable(values)))
            ends = list(accumulate(map(len, keys)))
            for (part, positions), part_held in zip(parts, np.split(held, ends[:-1]), strict=True):
                # Iterating numpy's bools costs ~0.1 us each; their list, none.
                new = (
                    list(compress(positions, (~part_held).tolist()))
                    if part_held.any()
                    else positions
                )
                if new:
                    plain.append((part, new))
        return _Split(plain, refusable, self._stage(entity, plain))

    def _stage(self, entity: Entity, plain: _Round) -> Staged:
        """The plain rows staged for their INSERT: by parts, in file order."""
        if not plain:
            return NOTHING
        picks = [(part, _picker(part, positions)) for part, positions in plain]
        counts = [len(positions) for _, positions in plain]

        def values() -> list[list[object]]:
            return [
                list(chain.from_iterable(pick(part.rows.values[field]) for part, pick in picks))
                for field in range(len(entity.fields))
            ]

        plain_insert = self._plain[entity.name]
        arrays = None
        batches = [part.rows.columns for part, _ in plain]
        # The arrays serve only the COPY: the statement takes Python values.
        if plain_insert.by_copy and all(batch is not None for batch in batches):
            # One take over the parts together: each take is a call per column.
            starts = accumulate((batch.num_rows for batch in batches), initial=0)  # type: ignore[union-attr]
            picked = np.fromiter(
                chain.from_iterable(
                    map(start.__add__, positions)
                    for start, (_, positions) in zip(starts, plain, strict=False)
                ),
                np.int64,
                sum(counts),
            )
            table = pa.Table.from_batches(batches).take(picked)
            arrays = [column.combine_chunks() for column in table.columns]
        return plain_insert.stage(
            NewRows(
                Repeated([part.account_id for part, _ in plain], counts),
                Repeated([part.action_id for part, _ in plain], counts),
                list(chain.from_iterable(_row_nos(part, pick) for part, pick in picks)),
                values,
                arrays,
            )
        )

    def _held_values(self, action_id: str, values: Sequence[object]) -> npt.NDArray[np.bool_]:
        """Which rows give an external id the action's filter may hold, or one an
        earlier row of these gives."""
        held = np.zeros(len(values), np.bool_)
        if values.count(None) == len(values):
            return held
        first: dict[str, int] = {}
        given = []
        for position, value in enumerate(values):
            if value is None:
                continue
            key = str(value)
            if key in first:
                held[position] = True
            else:
                first[key] = position
                given.append(position)
        taken = self._fresh.add(action_id, MATCH_EXTERNAL_ID, list(first))
        held[given] = True if taken is None else taken
        return held

    async def _record(
        self,
        conn: asyncpg.Connection,
        chunks: list[Chunk],
        results: dict[ChunkKey, ChunkResult],
        *,
        dead_lettered: bool = False,
    ) -> None:
        """Ledger rows and counts; dead-lettered chunks also hold their actions' later ones."""
        if not chunks:
            return
        codes = {c.key: "".join(results[c.key].codes) for c in chunks}
        await conn.execute(
            sql.postgres("chunk_ledger_record"),
            [c.action_id for c in chunks],
            [c.chunk_no for c in chunks],
            [codes[c.key] for c in chunks],
            [{str(i): p.to_json() for i, p in results[c.key].problems.items()} for c in chunks],
            [datetime.fromtimestamp(results[c.key].processed_at, UTC) for c in chunks],
            [dead_lettered] * len(chunks),
        )
        if dead_lettered:
            first: dict[str, int] = {}
            for c in chunks:
                first[c.action_id] = min(first.get(c.action_id, c.chunk_no), c.chunk_no)
            await conn.execute(sql.postgres("bulk_actions_hold"), list(first), list(first.values()))
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for chunk in chunks:
            total = totals[chunk.action_id]
            total[0] += len(chunk.rows)
            for code in codes[chunk.key]:
                total[1 + _COUNTER[code]] += 1
        ids = sorted(totals)  # a fixed lock order across concurrent consumers
        await conn.execute(
            sql.postgres("bulk_actions_progress"),
            ids,
            *([totals[i][column] for i in ids] for column in range(4)),
        )

    def _outcomes(
        self, chunks: list[Chunk], results: dict[ChunkKey, ChunkResult]
    ) -> list[OutcomeBatch]:
        """Each chunk's outcomes, with the input of the rows that did not succeed."""
        picks = [(chunk.rows, list(results[chunk.key].problems)) for chunk in chunks]
        echoed = iter(Cells.rows_of(picks))
        return [
            self._outcome(
                chunk,
                results[chunk.key],
                dict(zip(indexes, islice(echoed, len(indexes)), strict=True)),
            )
            for chunk, (_, indexes) in zip(chunks, picks, strict=True)
        ]

    def _outcome(self, chunk: Chunk, result: ChunkResult, rows: dict[int, JsonRow]) -> OutcomeBatch:
        return OutcomeBatch(
            action_id=chunk.action_id,
            account_id=chunk.account_id,
            entity=chunk.entity,
            action=chunk.action,
            chunk_no=chunk.chunk_no,
            first_row_no=chunk.first_row_no,
            codes="".join(result.codes),
            problems=result.problems,
            keys=result.keys or self._keys(chunk),
            rows=rows,
            processed_at=result.processed_at,
        )

    def _keys(self, chunk: Chunk) -> list[str]:
        entity = self._entities.get(chunk.entity)
        action = self._actions.get(chunk.action)
        if entity is None or action is None or entity.name not in action.entities:
            return [""] * len(chunk.rows)
        reader = action.reader(entity, ActionOptions.model_validate(chunk.options))
        return [reader.display_key(row) for row in chunk.rows]


class _InsertFirst:
    """Whether a round's creating rows go through the insert fast path first.

    Worth it while most such rows are new (an import); when most were refused
    (upserts of existing entities), the action's next rounds skip it.

    Past ``remembered`` actions, the one consulted least recently is forgotten.
    Not all at once: a batch's later transaction must decide as its first did
    (``_halves``). Had the action been forgotten between the two, the later
    one's plain rows, split by a key filter the first never filled, could
    take a key the first then writes, and each would wait for the other until
    the statement timeout.
    """

    def __init__(self, remembered: int = 10_000) -> None:
        self._remembered = remembered
        self._skipping: OrderedDict[str, None] = OrderedDict()  # least recently consulted first
        self._lock = threading.Lock()  # consulted from the loop and the worker threads

    def worth_trying(self, rows: _Round, match_on: str) -> bool:
        if match_on == MATCH_ID or not any(part.op in _CREATING for part, _ in rows):
            return False
        action_id = rows[0][0].action_id
        with self._lock:
            if action_id in self._skipping:
                self._skipping.move_to_end(action_id)
                return False
        return True

    def record(self, tried: _Round, rows: int, inserted: int) -> None:
        if inserted * 2 >= rows:
            return
        with self._lock:
            for part, _ in tried:
                self._skipping[part.action_id] = None
                self._skipping.move_to_end(part.action_id)
            while len(self._skipping) > self._remembered:
                self._skipping.popitem(last=False)


class _NotAllInserted(Exception):
    """The plain INSERT left rows out: its savepoint is rolled back."""


class HeldForReplay(Exception):
    """The chunk waits behind an earlier dead-lettered chunk of its action."""

    def __str__(self) -> str:
        return "held behind an earlier dead-lettered chunk of its action"


def _verdicts(
    chunks: list[Chunk], states: dict[str, _State]
) -> list[tuple[bool, bool, bool, bool] | None]:
    return [
        None if (state := states.get(c.action_id)) is None else state.verdict(c) for c in chunks
    ]


def _held(state: _State) -> RowProblem:
    return RowProblem(
        "held_for_replay",
        f"an earlier chunk of this bulk action (chunk {state.held_after}) was dead-lettered; "
        "`bulkflow dead-letters replay` applies this row after it, in file order",
    )


def _failed(chunk: Chunk, problem: RowProblem) -> ChunkResult:
    rows = range(len(chunk.rows))
    return ChunkResult(["f"] * len(chunk.rows), dict.fromkeys(rows, problem))


async def _release_and_end(
    conn: asyncpg.Connection, applied: list[Chunk], states: dict[str, _State]
) -> None:
    """Let a held action's later chunks through once the chunk it waited behind is
    applied; end the uploads whose end-of-upload marker came through."""
    released = [c for c in applied if states[c.action_id].held_after == c.chunk_no]
    if released:
        await conn.execute(
            sql.postgres("bulk_actions_release"),
            [c.action_id for c in released],
            [c.chunk_no for c in released],
        )
    await _end_uploads(conn, applied)


async def _end_uploads(conn: asyncpg.Connection, chunks: list[Chunk]) -> None:
    """The uploads whose end-of-upload marker is among ``chunks`` end now: the chunks
    before it are in the ledger (applied, or failed and dead-lettered)."""
    if ends := [c.action_id for c in chunks if c.ends_upload]:
        await conn.execute(sql.postgres("bulk_actions_end_upload"), ends)


#: The actions whose rows may create: the insert fast path is worth trying for them.
_CREATING = frozenset(name for name, action in ACTIONS.items() if action.creates)
_CANCELLED = RowProblem("cancelled", "the bulk action was cancelled before this row")
_COUNTER = {code: list(Outcome).index(outcome) for code, (outcome, _) in CODES.items()}


def _halves(chunks: list[Chunk], isolate: bool) -> tuple[list[Chunk], list[Chunk]]:
    """The batch's earlier parts, and the later ones a second connection applies in a
    transaction of its own (none, unless it is safe and may pay).

    The second transaction inserts its parts' new rows while the first applies
    the earlier parts: Postgres works on two cores instead of waiting for the
    agent between statements. That is safe because those rows are new to their
    action, by its key filter, which has seen every earlier row of the action
    (the earlier parts are prepared first): no earlier row has their key or
    external id, so nothing the first transaction writes waits for them. The
    second writes its other rows, its ledger rows and its counts only once the
    first has committed: its statements then see every earlier row, as one
    transaction would (the apply statement decides a repeat from the contact
    it reads; read before the first commits, a repeat of a contact the first
    updated would be taken for an update), and the two never wait for each
    other's locks. An account with two actions in the batch could write one
    key in both halves, so such a batch, a batch without creating actions, and
    one applied row by row are applied whole.
    """
    parts = -(-len(chunks) // constants.STATEMENT_CHUNKS)
    actions = {(c.account_id, c.action_id) for c in chunks}
    if (
        isolate
        or parts < 2
        or len(actions) != len({account for account, _ in actions})
        or not any(c.action in _CREATING for c in chunks)
    ):
        return chunks, []
    cut = -(-parts // 2) * constants.STATEMENT_CHUNKS
    return chunks[:cut], chunks[cut:]


def _refusable_only(refusable: _Round) -> _Split:
    """A split whose plain rows are inserted already."""
    return _Split([], refusable, NOTHING)


def _first_of_each(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks in order, a chunk delivered twice in one batch kept once."""
    return list({chunk.key: chunk for chunk in chunks}.values())


def _runs(chunks: list[Chunk]) -> list[list[Chunk]]:
    """Consecutive chunks of one action whose rows have the same columns."""
    runs: list[list[Chunk]] = []
    for chunk in chunks:
        if runs and _same_run(runs[-1][-1], chunk):
            runs[-1].append(chunk)
        else:
            runs.append([chunk])
    return runs


def _same_run(one: Chunk, other: Chunk) -> bool:
    return (
        one.action_id == other.action_id
        and one.rows.kind is other.rows.kind
        and one.rows.batch.schema.equals(other.rows.batch.schema)
    )


def _picker(part: _Part, positions: list[int]) -> Callable[[list[T]], Sequence[T]]:
    """Selects a round's rows of a part from one of its columns."""
    if len(positions) == len(part.rows.valid):
        return lambda column: column
    if len(positions) == 1:
        [position] = positions
        return lambda column: [column[position]]
    return itemgetter(*positions)  # a tuple of them, picked in C


def _round_values(rows: _Round, picks: list[Picker]) -> list[Sequence[object]]:
    """The written fields of the round's rows, a column each, in the round's order:
    taken from all their parts' arrays at once when they were read by columns."""
    read = [
        (part.rows.values, positions)
        for part, positions in rows
        if isinstance(part.rows.values, FieldValues)
    ]
    if len(read) == len(rows) and (taken := FieldValues.at_each(read)) is not None:
        return list(taken)
    parts = [
        _part_values(part, positions, pick)
        for (part, positions), pick in zip(rows, picks, strict=True)
    ]
    fields = len(parts[0]) if parts else 0
    return [
        list(chain.from_iterable(columns[field] for columns in parts)) for field in range(fields)
    ]


def _part_values(part: _Part, positions: list[int], pick: Picker) -> Sequence[Sequence[object]]:
    """The written fields of the part's rows at these positions, a column each."""
    values = part.rows.values
    return values.at(positions) if isinstance(values, FieldValues) else list(map(pick, values))


def _runs_of(rows: _Round, value: Callable[[_Part], object]) -> Iterator[object]:
    """A value of each part, once for each of its rows in the round."""
    return chain.from_iterable(repeat(value(part), len(positions)) for part, positions in rows)


def _picked(rows: _Round, picks: list[Picker], column: Callable[[_Part], list[T]]) -> Iterator[T]:
    """A column of each part, at its rows in the round."""
    return chain.from_iterable(
        pick(column(part)) for (part, _), pick in zip(rows, picks, strict=True)
    )


def _row_nos_of(rows: _Round, picks: list[Picker]) -> Iterator[int]:
    return chain.from_iterable(
        _row_nos(part, pick) for (part, _), pick in zip(rows, picks, strict=True)
    )


def _row_nos(part: _Part, pick: Callable[[list[int]], Sequence[int]]) -> list[int]:
    first = part.first_row_no
    return [first + index for index in pick(part.rows.valid)]


def _insert_rows(rows: _Round) -> list[tuple[object, ...]]:
    """The rows as the insert statements stage them: account, action, row_no, the fields."""
    picks = [_picker(part, positions) for part, positions in rows]
    return list(
        zip(
            _runs_of(rows, lambda part: part.account_id),
            _runs_of(rows, lambda part: part.action_id),
            _row_nos_of(rows, picks),
            *_round_values(rows, picks),
            strict=True,
        )
    )


def _created(rows: _Round, plain: _Round, results: dict[ChunkKey, ChunkResult]) -> _Round:
    """Mark the rows the plain INSERT took (all of ``plain``) as created; the others, in order."""
    taken = {part.chunk: positions for part, positions in plain}
    rest: _Round = []
    for part, positions in rows:
        done = taken.get(part.chunk)
        if done is None:
            rest.append((part, positions))
            continue
        codes, valid = results[part.chunk].codes, part.rows.valid
        for position in done:
            codes[valid[position]] = "c"
        if len(done) < len(positions):
            left = set(done)
            rest.append((part, [p for p in positions if p not in left]))
    return rest


def _not_inserted(
    rows: _Round, record: asyncpg.Record, results: dict[ChunkKey, ChunkResult]
) -> _Round:
    """Mark the rows an insert statement returned as created; the others, in order."""
    inserted = _by_action(record["action_ids"], record["row_nos"])
    rest: _Round = []
    for part, positions in rows:
        done = inserted.get(part.action_id)
        if not done:
            rest.append((part, positions))
            continue
        codes, valid, first = results[part.chunk].codes, part.rows.valid, part.first_row_no
        left = []
        for position in positions:
            index = valid[position]
            if first + index in done:
                codes[index] = "c"
            else:
                left.append(position)
        if left:
            rest.append((part, left))
    return rest


def _rounds(
    parts: list[_Part], results: dict[ChunkKey, ChunkResult], entity: Entity
) -> list[_Round]:
    """Split the parts' rows so that no round touches one entity twice.

    A key repeated within one action is an in-file duplicate and is skipped
    here; a key shared by two actions of an account goes to the next round,
    so the later action's row is applied after the earlier one's. (When each
    account has one action here, the usual case, every row is in round one.)
    """
    first_row: dict[tuple[str, str], dict[str, int]] = {}
    depth: dict[str, dict[str, int]] | None = None
    if len({(p.account_id, p.action_id) for p in parts}) > len({p.account_id for p in parts}):
        depth = {}
    rounds: list[_Round] = []
    for part in parts:
        first = first_row.setdefault((part.account_id, part.action_id), {})
        result, start = results[part.chunk], part.first_row_no
        if depth is None and _all_new(part.rows.key, first):
            # The usual part: no key repeats, none seen before. The same as
            # the loop below, without a Python step per row.
            row_nos = [start + index for index in part.rows.valid]
            first.update(zip(part.rows.key, row_nos, strict=True))
            if part.rows.valid:
                while not rounds:
                    rounds.append([])
                rounds[0].append((part, list(range(len(part.rows.valid)))))
            continue
        levels: dict[int, list[int]] = defaultdict(list)
        kept = levels[0]
        seen = None if depth is None else depth.setdefault(part.account_id, {})
        for position, (index, key) in enumerate(zip(part.rows.valid, part.rows.key, strict=True)):
            row_no = start + index
            related = first.setdefault(key, row_no)
            if related != row_no:
                result.fail(
                    index,
                    RowProblem("duplicate", _message(entity, "duplicate", related), related),
                    code="s",
                )
            elif seen is None:
                kept.append(position)
            else:
                level = seen.get(key, 0)
                seen[key] = level + 1
                levels[level].append(position)
        for level, positions in sorted(levels.items()):
            if not positions:
                continue
            while len(rounds) <= level:
                rounds.append([])
            rounds[level].append((part, positions))
    return rounds


def _by_action(action_ids: list[str], row_nos: list[int]) -> dict[str, set[int]]:
    """The inserted rows' numbers by action; usually one action, and no loop."""
    if action_ids and action_ids.count(action_ids[0]) == len(action_ids):
        return {action_ids[0]: set(row_nos)}
    inserted: dict[str, set[int]] = defaultdict(set)
    for action_id, row_no in zip(action_ids, row_nos, strict=True):
        inserted[action_id].add(row_no)
    return inserted


def _all_new(keys: list[str], seen: dict[str, int]) -> bool:
    """Whether no key repeats, in ``keys`` or from ``seen``."""
    distinct = set(keys)
    return len(distinct) == len(keys) and distinct.isdisjoint(seen)


def _message(entity: Entity, reason: str, related: int) -> str:
    return {
        "duplicate": f"same {entity.identifier} as row {related}",
        "not_found": f"no {entity.name} with this {entity.identifier}",
        "already_exists": f"a {entity.name} with this {entity.identifier} already exists",
    }.get(reason, reason)
