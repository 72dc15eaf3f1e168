"""Bulkflow: bulk actions on CRM data.

The distribution's shared plumbing (settings, constants, migrations, local
services, the command line) lives here; the three roles live in
``ingest_api`` (HTTP in), ``stream_agents`` (Kafka to Postgres and ClickHouse)
and ``schemas`` (the models both sides agree on).
"""

from pathlib import Path

#: The project checkout: where ``sql/``, ``clickhouse/`` and ``deploy/`` live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
