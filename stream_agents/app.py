"""The Faust app: the chunk agent and the ClickHouse sink agent.

Built by :func:`create_app` from resources the caller opened (``async with``),
so nothing connects at import time and tests can run the same wiring against
the real broker. Each role set gets its own consumer group: agent replicas
(``--role agents``) share one and split the chunk partitions between them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import faust

from bulkflow import constants
from bulkflow.retry import persistently
from bulkflow.settings import Settings
from schemas.action import ACTIONS
from schemas.column_reader import warm_up
from schemas.entity import ENTITIES
from schemas.messages import Chunk, UndecodableChunk
from schemas.options import ActionOptions
from stream_agents.applier import Applier
from stream_agents.dead_letters import DeadLetterQueue
from stream_agents.pipeline import Pipeline
from stream_agents.sink import OutcomeSink
from stream_agents.sink_buffer import SinkBuffer
from stream_agents.throttle import Admission, Throttle
from stream_agents.turn import Turn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkHandler:
    """What the chunk agent hands each batch of chunk messages to."""

    applier: Applier
    throttle: Throttle
    dead_letters: DeadLetterQueue
    topic: str  # the chunk topic, named in the dead letters of undecodable messages


@dataclass(frozen=True)
class AgentResources:
    chunks: ChunkHandler | None  # the agents role
    sink: OutcomeSink | None  # the sink role


def create_app(settings: Settings, resources: AgentResources) -> faust.App:
    roles = [r for r, on in (("agents", resources.chunks), ("sink", resources.sink)) if on]
    app = faust.App(
        settings.topic(constants.APP_ID_PREFIX + "-".join(roles)),
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        autodiscover=False,
        # Faust keeps a data folder per app; under the state dir, not the cwd.
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_disable_leader=True,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=200,
        broker_session_timeout=settings.consumer_session_timeout,
        broker_heartbeat_interval=settings.consumer_session_timeout / 5,
        key_serializer="raw",
        value_serializer="raw",
    )
    if resources.chunks is not None:
        warm_up(ACTIONS["upsert"].chunk_reader(ENTITIES["contact"], ActionOptions()))
        _add_chunk_agent(app, settings, resources.chunks)
    if resources.sink is not None:
        _add_sink_agent(app, settings, resources.sink)
    return app


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, internal=False)


def _add_chunk_agent(app: faust.App, settings: Settings, handler: ChunkHandler) -> None:
    topic = _raw_topic(app, settings.topic(constants.CHUNKS_TOPIC))

    async def handle(values: Sequence[bytes], turn: Turn, after: Turn | None) -> None:
        # A batch short of its size: the take waited and no more chunks came.
        drained = len(values) < constants.AGENT_BATCH_CHUNKS
        await handle_chunks(values, handler, turn=turn, after=after, drained=drained)

    @app.agent(topic, name="apply-chunks")
    async def apply_chunks(stream: faust.StreamT[bytes]) -> None:
        # Acknowledged by hand, each batch once its outcomes are published
        # (stream_agents/pipeline.py): handle_chunks never raises.
        async with Pipeline(handle) as batches:
            # StreamT does not declare noack_take; faust.Stream defines it.
            async for events in stream.noack_take(  # type: ignore[attr-defined]
                constants.AGENT_BATCH_CHUNKS, within=constants.AGENT_BATCH_WITHIN
            ):
                await batches.submit([e.value for e in events], partial(_ack, stream, events))


async def _ack(stream: faust.StreamT[bytes], events: Sequence[faust.EventT[bytes]]) -> None:
    for event in events:
        await stream.ack(event)


def _add_sink_agent(app: faust.App, settings: Settings, sink: OutcomeSink) -> None:
    topic = _raw_topic(app, settings.topic(constants.OUTCOMES_TOPIC))

    @app.agent(topic, name="record-outcomes")
    async def record_outcomes(stream: faust.StreamT[bytes]) -> None:
        # Each message as it comes (a take of one), acknowledged by hand once
        # inserted: the buffer decides when (stream_agents/sink_buffer.py).
        async with SinkBuffer(sink.write, partial(_ack, stream)) as buffer:
            async for events in stream.noack_take(  # type: ignore[attr-defined]
                1, within=constants.SINK_BATCH_WITHIN
            ):
                await buffer.add(events)


async def handle_chunks(
    values: Sequence[bytes],
    handler: ChunkHandler,
    *,
    turn: Turn | None = None,
    after: Turn | None = None,
    drained: bool = False,
) -> None:
    """Apply what the account limits admit; defer the rest to the backlog, in order.

    Every step is retried until it succeeds: the batch is acknowledged when
    this returns, so a step given up on would lose its chunks. ``after``: the
    turn of the batch before, which may still be in flight
    (``stream_agents/pipeline.py``); ``drained``: no more chunks were waiting.
    """
    turn = turn or Turn()
    chunks = []
    for value in values:
        try:
            chunks.append(Chunk.from_bytes(value))
        except UndecodableChunk as exc:
            log.error("dead-lettering a chunk message that cannot be decoded: %r", exc)
            await handler.dead_letters.send_undecodable(handler.topic, value, exc)
    admission = Admission([], [])
    if chunks:
        admission = await persistently("admitting chunks", lambda: handler.throttle.admit(chunks))
    turn.deferring = bool(admission.later)
    if admission.now:
        await handler.applier.apply(admission.now, turn=turn, after=after, drained=drained)
    else:
        if after is not None:
            await after.settled.wait()
        turn.prepared.set()
        turn.settled.set()
    # Once the admitted chunks, and those of every batch before, have
    # committed: a deferred chunk may be drained as soon as it is visible, and
    # it must not overtake the admitted ones of its account.
    await persistently("deferring chunks", lambda: handler.throttle.defer(admission.later))
