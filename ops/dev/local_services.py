"""Private Kafka, PostgreSQL and Redis instances for development and CI.

Each service runs from this machine's packages (PostgreSQL and Redis from apt,
Kafka from Maven Central jars run with ``java``) under ``<state_dir>``, on the
ports of the configured connection strings, and is started and stopped by the
PID recorded in ``<state_dir>/run/<name>.pid``. ``up`` is idempotent: a service
that is already running and answering is left alone. Missing packages are
installed with apt when running as root; downloads are cached outside the
checkout so that a fresh clone starts in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from bulkflow.settings import Settings

#: deploy/local, as package data (a link in a checkout, files in a wheel).
TEMPLATES = Path(str(resources.files("ops.dev") / "_templates"))
KAFKA_VERSION = "4.1.1"
POSTGRES_MAJOR = "15"
READY_TIMEOUT = 90.0  # seconds a service may take to answer after start
STOP_TIMEOUT = 30.0  # seconds before a stopping service is killed


class ServiceError(RuntimeError):
    """A local service could not be installed, started or stopped."""

    def __init__(self, service: str, message: str, log: Path | None = None) -> None:
        detail = f"{service}: {message}"
        if log is not None:
            detail += f" (log: {log})\n--- last lines of {log.name} ---\n{_tail(log)}"
        super().__init__(detail)
        self.service = service
        self.log = log


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    ready: bool
    log: Path


class LocalService(Protocol):
    name: str
    port: int

    def install(self) -> None: ...
    def prepare(self) -> None: ...
    def command(self) -> list[str]: ...
    def run_as(self) -> str | None: ...
    def stop_signal(self) -> signal.Signals: ...
    def ready(self) -> bool: ...
    def after_start(self) -> None: ...


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bulkflow"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log yet)"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


_apt_updated = False


def _apt_install(service: str, *packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        raise ServiceError(
            service, f"not installed; run: sudo apt-get install -y {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _apt_updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


class Postgres:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        dsn = urlsplit(settings.postgres_dsn.get_secret_value())
        self.port = dsn.port or 5432
        self.user = dsn.username or "bulkflow"
        self.database = dsn.path.lstrip("/") or "bulkflow"
        self.root = self._root(settings.state_dir)
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"

    def _root(self, state_dir: Path) -> Path:
        """``<state_dir>/postgres``, unless the postgres user cannot reach it.

        As root, the server runs as ``postgres``, which cannot enter a checkout
        under a private home directory (0700); its files then live under
        /var/tmp, in a folder named after the state directory.
        """
        preferred = state_dir / "postgres"
        owner = self.run_as()
        if owner is None:
            return preferred
        state_dir.mkdir(parents=True, exist_ok=True)
        reachable = subprocess.run(["test", "-x", str(state_dir)], user=owner, check=False)
        if reachable.returncode == 0:
            return preferred
        digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/var/tmp/bulkflow") / digest / "postgres"

    def _bin(self, tool: str) -> Path:
        return Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin") / tool

    def install(self) -> None:
        if not self._bin("postgres").exists():
            _apt_install(self.name, f"postgresql-{POSTGRES_MAJOR}")

    def run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; the apt package creates this user.
        return "postgres" if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        owner = self.run_as()
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.sockets):
            path.mkdir(parents=True, exist_ok=True)
            self._chown(path)
        if (self.data / "PG_VERSION").exists():
            return
        subprocess.run(
            [
                str(self._bin("initdb")),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            check=True,
            user=self.run_as(),
            stdout=subprocess.DEVNULL,
        )

    def command(self) -> list[str]:
        return [
            str(self._bin("postgres")),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.sockets}",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "max_connections=200",
            "-c",
            "max_wal_size=2GB",
        ]

    def stop_signal(self) -> signal.Signals:
        return signal.SIGINT  # "fast" shutdown: roll back sessions, then stop

    def _psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [
                str(self._bin("psql")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def ready(self) -> bool:
        result = subprocess.run(
            [str(self._bin("pg_isready")), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def after_start(self) -> None:
        exists = self._psql(
            "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"
        )
        if not exists:
            self._psql("postgres", f'CREATE DATABASE "{self.database}"')


class Redis:
    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.port = urlsplit(settings.redis_url.get_secret_value()).port or 6379
        self.root = settings.state_dir / "redis"

    def install(self) -> None:
        if shutil.which("redis-server") is None:
            _apt_install(self.name, "redis-server")

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def run_as(self) -> str | None:
        return None

    def stop_signal(self) -> signal.Signals:
        return signal.SIGTERM

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def after_start(self) -> None:
        pass


class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        _host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        self.port = int(port)
        self.controller_port = self.port + 1
        self.bootstrap = settings.kafka_bootstrap
        self.root = settings.state_dir / "kafka"
        self.data = self.root / "data"
        self.libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"

    def install(self) -> None:
        if shutil.which("java") is None:
            _apt_install(self.name, "openjdk-17-jre-headless")
        if self.libs.is_dir() and any(self.libs.glob("kafka_2.13-*.jar")):
            return
        if shutil.which("mvn") is None:
            _apt_install(self.name, "maven")
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(TEMPLATES / "kafka-pom.xml"),
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            check=True,
        )
        staging.rename(self.libs)  # atomic: a half download never looks complete

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        template = (TEMPLATES / "server.properties.template").read_text()
        (self.root / "server.properties").write_text(
            template.format(
                port=self.port, controller_port=self.controller_port, data_dir=self.data
            )
        )
        if (self.data / "meta.properties").exists():
            return
        subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(self.root / "server.properties"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def _java(self) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={TEMPLATES / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.root / "server.properties")]

    def run_as(self) -> str | None:
        return None

    def stop_signal(self) -> signal.Signals:
        return signal.SIGTERM

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        return asyncio.run(_kafka_answers(self.bootstrap))

    def after_start(self) -> None:
        pass


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:  # any failure means "not ready yet"
        return False
    finally:
        await admin.close()


def _cluster_id() -> str:
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        if not candidate.startswith("-"):
            return candidate


class Supervisor:
    """Starts, stops and reports the local services by their PID files."""

    def __init__(self, settings: Settings) -> None:
        self.services: list[LocalService] = [Postgres(settings), Redis(settings), Kafka(settings)]
        self.run_dir = settings.state_dir / "run"
        self.log_dir = settings.state_dir / "log"

    def _pid_file(self, service: LocalService) -> Path:
        return self.run_dir / f"{service.name}.pid"

    def _log(self, service: LocalService) -> Path:
        return self.log_dir / f"{service.name}.log"

    def pid(self, service: LocalService) -> int | None:
        """The recorded PID, if that process is still alive and is still ours."""
        try:
            pid = int(self._pid_file(service).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # The executable's name is the part of the command line every server keeps
        # (redis-server rewrites its title to "<path> <host>:<port>").
        expected = Path(service.command()[0]).name.encode()
        return pid if any(expected in part for part in cmdline[:2]) else None

    def up(self) -> list[ServiceStatus]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            self._up(service)
        return self.status()

    def service(self, name: str) -> LocalService:
        return next(s for s in self.services if s.name == name)

    def start(self, name: str) -> None:
        """Start one service (idempotent), e.g. after ``stop`` in a fault test."""
        self._up(self.service(name))

    def stop(self, name: str) -> None:
        self._down(self.service(name))

    def _up(self, service: LocalService) -> None:
        if self.pid(service) is not None and service.ready():
            return
        if self.pid(service) is None and _port_open(service.port):
            raise ServiceError(service.name, f"port {service.port} is taken by another process")
        log = self._log(service)
        service.install()
        service.prepare()
        spawned = self._spawn(service, log) if self.pid(service) is None else None
        self._await_ready(service, log, spawned)
        service.after_start()

    def _spawn(self, service: LocalService, log: Path) -> int:
        """Start the server detached (own session, output to its log); return its PID.

        posix_spawn rather than Popen: the server outlives this process by
        design, and a Popen object would warn that its child is still running.
        """
        argv = service.command()
        owner = service.run_as()
        if owner is not None:  # setpriv switches user and execs: the PID stays the server's
            argv = ["setpriv", f"--reuid={owner}", f"--regid={owner}", "--init-groups", *argv]
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        self._pid_file(service).write_text(str(pid))
        return pid

    def _await_ready(self, service: LocalService, log: Path, spawned: int | None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if _exited(spawned) if spawned else self.pid(service) is None:
                raise ServiceError(service.name, "exited during start-up", log)
            if service.ready():
                return
            time.sleep(0.5)
        raise ServiceError(
            service.name, f"not ready on port {service.port} after {READY_TIMEOUT:.0f}s", log
        )

    def down(self) -> list[ServiceStatus]:
        for service in reversed(self.services):
            self._down(service)
        return self.status()

    def _down(self, service: LocalService) -> None:
        pid = self.pid(service)
        if pid is not None:
            os.kill(pid, service.stop_signal())
            deadline = time.monotonic() + STOP_TIMEOUT
            while self.pid(service) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.pid(service) is not None:
                os.kill(pid, signal.SIGKILL)
        self._pid_file(service).unlink(missing_ok=True)

    def status(self) -> list[ServiceStatus]:
        result = []
        for service in self.services:
            pid = self.pid(service)
            ready = pid is not None and service.ready()
            result.append(ServiceStatus(service.name, service.port, pid, ready, self._log(service)))
        return result


def _exited(pid: int) -> bool:
    """Whether a child of this process has exited (reaping it if so)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid
