"""Names and limits shared by every role. Units are in the comments."""

from typing import Final

# Kafka topics (prefixed with settings.topic_prefix).
CHUNKS_TOPIC: Final = "bulkflow.chunks"  # rows of bulk actions, keyed by account
OUTCOMES_TOPIC: Final = "bulkflow.outcomes"  # per-row outcomes, keyed by account
DEAD_LETTERS_TOPIC: Final = "bulkflow.dead-letters"  # chunks whose retries ran out
# Consumer groups (prefixed likewise): the Faust app of a role set is
# APP_ID_PREFIX + its roles ("bulkflow-agents", "bulkflow-agents-sink", ...).
APP_ID_PREFIX: Final = "bulkflow-"
DEAD_LETTER_REPLAY_GROUP: Final = "bulkflow-dead-letter-replay"

# Message sizes (bytes), bounded end to end. The project sets the topics'
# max.message.bytes to MAX_MESSAGE_BYTES and its producers refuse more; what
# it publishes is cut below that: a chunk at CHUNK_TARGET_BYTES of encoded
# rows (or ROWS_PER_CHUNK rows), a single row at MAX_ROW_BYTES, an outcome
# message at OUTCOME_TARGET_BYTES. A row at the limit, with its failure and
# its input echoed in an outcome or a dead letter, still fits.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
CHUNK_TARGET_BYTES: Final = 1024 * 1024
#: One row, encoded: a JSON row over it is refused (413), a CSV row over it
#: fails alone (row_too_large). Twice this, the worst case of echoing a row's
#: input inside an outcome message, is below MAX_MESSAGE_BYTES.
MAX_ROW_BYTES: Final = 4 * 1024 * 1024
OUTCOME_TARGET_BYTES: Final = 1024 * 1024
SINK_INSERT_BYTES: Final = 8 * 1024 * 1024  # outcome messages per ClickHouse insert, at most

# Ingest.
ROWS_PER_CHUNK: Final = 500  # rows per Kafka message, at most
MAX_JSON_ROWS: Final = 10_000  # rows per JSON request
#: Bytes per JSON request: 10,000 rows of 1.6 KiB each (a contact with every
#: field at its longest takes ~1.1 KiB); larger uploads go as CSV.
MAX_JSON_BODY_BYTES: Final = 16 * 1024 * 1024
LARGE_JSON_BYTES: Final = 1024 * 1024  # a JSON body larger than this is "large":
LARGE_JSON_AT_ONCE: Final = 1  # large JSON bodies decoded and submitted at a time, per process
MAX_FIELD_CHARS: Final = 64 * 1024  # characters per CSV field
#: Characters per CSV record, all its lines: what the reader holds for one row.
MAX_RECORD_CHARS: Final = 16 * MAX_FIELD_CHARS
#: Levels objects and arrays may nest in a row's custom_fields (itself level 1):
#: deeper, the row fails (invalid_custom_fields).
MAX_CUSTOM_FIELDS_DEPTH: Final = 8
#: Levels a JSON body may nest (the body is level 1, a row 3): deeper, 422.
#: orjson cannot write more than 254, and every chunk and outcome is written.
MAX_JSON_DEPTH: Final = 32
#: Multipart option fields (before the file part), and bytes per field.
MAX_FORM_FIELDS: Final = 20
MAX_FORM_FIELD_BYTES: Final = 64 * 1024
MAX_CSV_COLUMNS: Final = 1_000  # columns per CSV header (trailing empty ones aside)
#: Characters of rows per block the CSV reader queues: a block of wide rows
#: ends before its 500th row, so that its chunk encodes below
#: CHUNK_TARGET_BYTES at once instead of being halved after encoding.
MAX_CHUNK_CHARS: Final = 256 * 1024
#: An upload holds a lease on its action for this long (seconds), renewed
#: every UPLOAD_LEASE_RENEW; a reaper in every process looks for lapsed ones
#: every UPLOAD_REAP_EVERY and ends one that stays lapsed for another
#: UPLOAD_LEASE. An upload whose process died ends within
#: 2 x UPLOAD_LEASE + UPLOAD_REAP_EVERY seconds (25).
UPLOAD_LEASE: Final = 10.0
UPLOAD_LEASE_RENEW: Final = 2.0
UPLOAD_REAP_EVERY: Final = 5.0
#: The chunk_no of an upload's end-of-upload marker: after every real chunk.
END_OF_UPLOAD_CHUNK_NO: Final = 2**31 - 1

# Redis keys of the token buckets (+ account id, or kind + account id).
ROWS_BUCKET_PREFIX: Final = "bulkflow:rows:"  # rows applied by the agents
REQUESTS_BUCKET_PREFIX: Final = "bulkflow:requests:"  # API requests

# Postgres advisory locks: one key for migrators; and the spaces (the seed of
# hashtextextended) of per-account and per-action locks.
MIGRATION_LOCK_KEY: Final = 0x62756C6B  # "bulk": serialises migrators
BACKLOG_LOCK_SPACE: Final = 0  # + account id: one drainer per account
SCHEDULER_LOCK_SPACE: Final = 1  # + action id: one process fires an action

# Ingest jobs.
PUBLISH_IN_FLIGHT: Final = 32  # chunks sent but not yet acknowledged, per upload
SCHEDULED_WRITE_BATCH: Final = 20  # chunks per insert of a scheduled action's rows
SCHEDULER_POLL: Final = 0.5  # seconds between looks for due actions
SCHEDULER_PAGE: Final = 100  # stored chunks read at a time

# Agents.
BACKLOG_POLL: Final = 0.25  # seconds between looks at an idle backlog
BACKLOG_CHUNKS_PER_ROUND: Final = 20  # chunks of one account per drain transaction
#: Chunk messages per batch (a Postgres transaction, or two). A batch has
#: costs of its own (admission, the ledger, commits, outcomes, the next fetch)
#: that its rows share: 40 measured 0.549 of the ceiling against 0.493 for 20
#: (four pairs), and 80 no more than 40, with the agent at 299 MB.
AGENT_BATCH_CHUNKS: Final = 40
AGENT_BATCH_WITHIN: Final = 0.05  # seconds to wait for a batch to fill
#: Chunks per statement within a batch: the next part is validated while
#: Postgres applies the previous one.
STATEMENT_CHUNKS: Final = 4
SINK_BATCH_MESSAGES: Final = 200  # outcome messages per ClickHouse insert
#: Seconds to wait for a sink batch to fill: ClickHouse advises about one
#: insert a second, and pays ~20 ms for each (chdb, 1M outcome rows of the
#: bench's shape: 2.1-2.5 us a row in 20,000-row inserts, 1.4 in 50,000, 1.0 in 100,000).
SINK_BATCH_WITHIN: Final = 1.0
#: Seconds between two inserts at least, when drained outcomes hurry one.
SINK_MIN_GAP: Final = 0.25
#: Header of the outcome messages of an agent batch smaller than
#: AGENT_BATCH_CHUNKS: the agent had no more chunks waiting, so no more
#: outcomes are on their way for now (stream_agents/sink_buffer.py).
DRAINED_HEADER: Final = "bulkflow-drained"
#: Limits of a query through the embedded engine's front, which shares the
#: engine's one thread with the sink's inserts: seconds, and rows read.
FRONT_MAX_QUERY_SECONDS: Final = 5
FRONT_MAX_ROWS_TO_READ: Final = 100_000_000

#: Seconds between samples of the gauges (consumer lag, backlog depth).
GAUGE_SAMPLE_EVERY: Final = 2.0

# Python's cyclic garbage collector, in every bulkflow process: allocations of
# container objects between young-generation collections (CPython's default
# is 700). A batch of rows makes hundreds of thousands of short-lived dicts
# and tuples; at 700 the collector ran ~5 times per chunk and took 6 of the
# agent's ~30 us of CPU per row; at 50,000 it takes under 0.5.
GC_YOUNG_THRESHOLD: Final = 50_000

# Rate limiting.
ROWS_PER_MINUTE: Final = 10_000  # per account, default row allowance
ADMIN_TOKEN_MIN_CHARS: Final = 32  # characters of BULKFLOW_ADMIN_TOKEN
#: Seconds the API waits for Redis (request limits) before it answers without it.
API_REDIS_TIMEOUT: Final = 2.0
#: Redis connections of an API process; more concurrent requests wait for one.
API_REDIS_CONNECTIONS: Final = 64

# Retries of transient failures.
RETRY_ATTEMPTS: Final = 3  # attempts in all, the first included
RETRY_INTERVAL: Final = 1.0  # seconds between attempts
#: While a dependency is away, its probe runs every RETRY_INTERVAL without
#: limit; a warning is logged at most this often (seconds).
OUTAGE_LOG_EVERY: Final = 15.0
PROBE_TIMEOUT: Final = 5.0  # seconds a probe of Postgres may take
RETRY_AFTER_UNAVAILABLE: Final = 5.0  # seconds a client is told to wait on a 503
#: Seconds an upload waits for an unreachable broker (its sends stay queued,
#: the client's body waits) or for Postgres at its end, before it gives up
#: with a 503 and the upload ends as it stands.
UPLOAD_PATIENCE: Final = 300.0

# The fault suite (bulkflow chaos): what it breaks, in the order it runs them.
CHAOS_SCENARIOS: Final = ("agents", "sink", "api", "postgres", "kafka", "redis")

# Live progress (WebSocket and SSE), fed by the Postgres channel below.
LIVE_CHANNEL: Final = "bulkflow_actions"  # NOTIFY channel of sql/009_live_progress.sql
LIVE_SUBSCRIBERS: Final = 10_000  # WebSocket and SSE subscribers per API process
LIVE_SUBSCRIBERS_PER_ACCOUNT: Final = 1_000  # ... of one account, per API process
LIVE_ACTIONS_PER_SOCKET: Final = 100  # actions one WebSocket may subscribe to
LIVE_KEEPALIVE: Final = 15.0  # seconds between SSE comments on a quiet stream
LIVE_AUTH_WAIT: Final = 10.0  # seconds a WebSocket has to send its API key
LIVE_MESSAGE_BYTES: Final = 64 * 1024  # largest WebSocket message a client may send
ENTITY_WRITE_TIMEOUT: Final = 30.0  # seconds an entity API write waits for its row
LIVE_PROBE_EVERY: Final = 30.0  # seconds between checks of the quiet LISTEN connection

# Completion webhooks (ingest_api/webhooks.py).
CALLBACK_URL_MAX_CHARS: Final = 2_048  # characters of a callback_url
WEBHOOK_TIMEOUT: Final = 10.0  # seconds an attempt may take: resolving, connecting, answering
WEBHOOK_RETRY_CAP: Final = 3_600.0  # seconds between attempts, at most (the backoff doubles)
WEBHOOK_GIVE_UP_AFTER: Final = 24 * 3_600.0  # seconds after the first attempt: no more
WEBHOOK_LEASE: Final = 60.0  # seconds a claimed delivery stays another process's
WEBHOOK_POLL: Final = 0.5  # seconds between looks for due deliveries
WEBHOOK_BATCH: Final = 10  # deliveries claimed and sent at once, per process
#: Seconds a receiver should accept a signature's timestamp for (what verify() allows).
WEBHOOK_TOLERANCE: Final = 300
