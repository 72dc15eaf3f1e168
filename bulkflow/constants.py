"""Names and limits shared by every role. Units are in the comments."""

from typing import Final

# Kafka topics (prefixed with settings.topic_prefix).
CHUNKS_TOPIC: Final = "bulkflow.chunks"  # rows of bulk actions, keyed by account
OUTCOMES_TOPIC: Final = "bulkflow.outcomes"  # per-row outcomes, keyed by account
DEAD_LETTERS_TOPIC: Final = "bulkflow.dead-letters"  # chunks whose retries ran out

# Ingest.
ROWS_PER_CHUNK: Final = 500  # rows per Kafka message
MAX_JSON_ROWS: Final = 10_000  # rows per JSON request
MAX_JSON_BODY_BYTES: Final = 32 * 1024 * 1024  # bytes per JSON request
MAX_FIELD_BYTES: Final = 64 * 1024  # characters per CSV field
#: Characters per CSV record, all its lines: what the reader holds for one row.
MAX_RECORD_CHARS: Final = 16 * MAX_FIELD_BYTES
MAX_CSV_COLUMNS: Final = 200  # columns per CSV header

# Agents.
AGENT_BATCH_CHUNKS: Final = 20  # chunk messages per Postgres transaction
AGENT_BATCH_WITHIN: Final = 0.05  # seconds to wait for a batch to fill
#: Chunks per statement within a batch: the next part is validated while
#: Postgres applies the previous one.
STATEMENT_CHUNKS: Final = 4
SINK_BATCH_MESSAGES: Final = 200  # outcome messages per ClickHouse insert
SINK_BATCH_WITHIN: Final = 0.5  # seconds to wait for a sink batch to fill

# Python's cyclic garbage collector, in every bulkflow process: allocations of
# container objects between young-generation collections (CPython's default
# is 700). A batch of rows makes hundreds of thousands of short-lived dicts
# and tuples; at 700 the collector ran ~5 times per chunk and took 6 of the
# agent's ~30 us of CPU per row; at 50,000 it takes under 0.5.
GC_YOUNG_THRESHOLD: Final = 50_000

# Rate limiting.
ROWS_PER_MINUTE: Final = 10_000  # per account, default row allowance

# Retries of transient failures.
RETRY_ATTEMPTS: Final = 3  # attempts in all, the first included
RETRY_INTERVAL: Final = 1.0  # seconds between attempts

# The fault suite (bulkflow chaos): what it breaks, in the order it runs them.
CHAOS_SCENARIOS: Final = ("agents", "sink", "api", "postgres", "kafka", "redis")
