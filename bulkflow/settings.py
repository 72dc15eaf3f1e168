"""The one settings object, read from ``BULKFLOW_*`` environment variables once.

Defaults point at the services ``bulkflow services up`` runs under ``.local/``.
Connection strings that may carry passwords are ``SecretStr`` so that they
never appear in a repr, a log line or a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bulkflow import constants

Role = Literal["api", "agents", "sink"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULKFLOW_", frozen=True, extra="ignore")

    #: Where local services keep data, logs and PID files.
    state_dir: Path = Field(default_factory=lambda: Path.cwd() / ".local")

    kafka_bootstrap: str = "127.0.0.1:19092"
    #: Prefix of every topic and of the Faust app id, so that test runs and
    #: deployments can share a broker without seeing each other's messages.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=12, ge=1)
    #: Seconds without a heartbeat before Kafka gives a dead agent's partitions
    #: to the others (Faust's default is 60: a minute of stalled accounts).
    consumer_session_timeout: float = Field(default=10.0, ge=6.0)

    postgres_dsn: SecretStr = SecretStr("postgresql://bulkflow@127.0.0.1:15432/bulkflow")
    #: Connections per process. An agent holds up to four at once: two batches
    #: in flight (stream_agents/pipeline.py), each in two transactions
    #: (stream_agents/batch.py, _halves); admission, the backlog drainer and
    #: the gauges take the others for a statement at a time.
    postgres_pool_size: int = Field(default=8, ge=1)
    #: Seconds a statement may run before it is cancelled (a transient failure,
    #: retried at the fixed interval like a lost connection).
    postgres_command_timeout: float = Field(default=60.0, gt=0)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    #: ``chdb:///path`` runs the embedded ClickHouse engine in this process;
    #: ``http(s)://user:password@host:8123/database`` selects a ClickHouse server.
    clickhouse_url: SecretStr | None = None
    #: With the embedded engine: where the sink's process serves it to an API
    #: process running apart (on 127.0.0.1, read-only).
    embedded_clickhouse_port: int = Field(default=18123, ge=1, le=65535)
    #: Seconds an API process running apart from the sink waits for that front
    #: at startup (the sink's process may start after it).
    embedded_clickhouse_wait: float = Field(default=120.0, gt=0)
    #: The front's password (user ``bulkflow``). Unset: one is generated for the
    #: host and kept in ``<state_dir>/clickhouse-front.secret`` (mode 0600),
    #: where the sink's and the API's processes find it.
    embedded_clickhouse_password: SecretStr | None = None

    #: Rows per minute an account's actions may apply unless the account has an
    #: override (`bulkflow accounts limit`, or the admin API).
    rows_per_minute: int = Field(default=10_000, ge=1)
    #: API requests per minute per account (token buckets): writes, and a
    #: separate, generous allowance for reads.
    api_writes_per_minute: int = Field(default=120, ge=1)
    api_write_burst: int = Field(default=20, ge=1)
    api_reads_per_minute: int = Field(default=1_200, ge=1)
    api_read_burst: int = Field(default=200, ge=1)
    #: Bearer token of the admin API (/v1/admin/...); unset disables it.
    admin_token: SecretStr | None = None
    #: Requests per minute from one client address, counted before the API key
    #: is looked at, and failed authentications per address (a refused key
    #: costs no database lookup once they run out).
    api_address_requests_per_minute: int = Field(default=3_000, ge=1)
    api_address_burst: int = Field(default=300, ge=1)
    api_auth_failures_per_minute: int = Field(default=30, ge=1)
    api_auth_failure_burst: int = Field(default=10, ge=1)
    #: Seconds a client may take to send a request's line and headers, and to
    #: send the next part of a body the API waits for; an idle keep-alive
    #: connection is closed after api_keep_alive_timeout.
    api_header_timeout: float = Field(default=10.0, gt=0)
    api_body_idle_timeout: float = Field(default=30.0, gt=0)
    api_keep_alive_timeout: int = Field(default=5, ge=1)
    #: Seconds an entity API write (POST/PATCH/DELETE /v1/<entities>) waits for
    #: its one-row action to be applied before answering 504.
    entity_write_timeout: float = Field(default=constants.ENTITY_WRITE_TIMEOUT, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8787
    #: The API's address as its clients reach it: the links in webhook bodies.
    #: Unset: http://api_host:api_port.
    public_url: str | None = None

    #: Callbacks to private, loopback, link-local or otherwise non-global
    #: addresses are refused (at submit and at each delivery, after resolving
    #: the name) unless this is set: only for a receiver on your own network.
    webhook_allow_private: bool = False
    #: Seconds before a failed delivery's second attempt; each next one waits
    #: twice as long, up to an hour, until 24 h after the first.
    webhook_first_retry: float = Field(default=10.0, gt=0)

    log_level: str = "INFO"
    #: ``json``: one JSON object per line (time, level, role, logger, message,
    #: action_id, account_id, chunk_no, request_id); ``text``: lines for people;
    #: ``auto``: text on a terminal, JSON otherwise (``bulkflow/logs.py``).
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Where a process also serves its Prometheus metrics at /metrics (every
    #: role; the API process serves them on its own port too). 0: not served.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < constants.ADMIN_TOKEN_MIN_CHARS:
            raise ValueError(
                f"needs at least {constants.ADMIN_TOKEN_MIN_CHARS} characters"
                " (e.g. `openssl rand -hex 32`)"
            )
        return token

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url is not None:
            return self.clickhouse_url.get_secret_value()
        return f"chdb://{self.state_dir / 'clickhouse'}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def embedded_clickhouse_front_url(self) -> str:
        """The URL of the embedded engine's read-only HTTP front."""
        return f"http://127.0.0.1:{self.embedded_clickhouse_port}"

    def as_env(self) -> dict[str, str]:
        """``BULKFLOW_*`` variables that give a child process exactly these settings."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"BULKFLOW_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def public_api_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")
