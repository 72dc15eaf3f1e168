"""bulkflow as separate processes, as deployed: the API, the sink and agent replicas.

The benchmark and the replica tests run the real ``bulkflow serve`` commands
with their own settings, watch their memory and CPU time, and kill or add
agent replicas while an action runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bulkflow.background import background
from bulkflow.settings import Settings

START_TIMEOUT = 120.0  # seconds for every process to answer
_SAMPLE_EVERY = 0.2  # seconds between memory and CPU samples
_TICKS = os.sysconf("SC_CLK_TCK")  # /proc CPU times are in these


class FleetFailed(RuntimeError):
    """A bulkflow process exited or never became ready."""


def free_port() -> int:
    """A local TCP port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A free port whose next port is free too: a local Kafka's controller takes it."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@dataclass
class Member:
    """One ``bulkflow serve`` process and the most memory it was seen to hold."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    peak_rss_mb: float = 0.0
    peak_private_mb: float = 0.0  # anonymous memory: excludes mapped code (chdb's engine)
    cpu_seconds: float = 0.0  # user + system, since the process started (last seen)

    def sample(self) -> None:
        status = _status(self.process.pid)
        if status:
            self.peak_rss_mb = max(self.peak_rss_mb, status.get("VmHWM", 0) / 1024)
            self.peak_private_mb = max(self.peak_private_mb, status.get("RssAnon", 0) / 1024)
        self.cpu_seconds = _process_cpu_seconds(self.process.pid) or self.cpu_seconds

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _status(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


def _process_cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def process_tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds of a server and everything it started, alive or gone; None if it is gone.

    A server's work is mostly done by its children (Postgres: a backend per
    connection, its background workers): each live process's utime + stime,
    plus cutime + cstime, the time of the children it has reaped (a backend
    that closed during the run). A child that ends between the two reads is
    missed or counted twice: at most one process's time, against a run's.
    """
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
            # utime, stime, cutime, cstime
            times[int(entry.name)] = sum(int(v) for v in fields[11:15]) / _TICKS
    if root not in times:
        return None
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the name, from the state on (the name may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (all processes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _TICKS  # steal: other machines' work


@dataclass
class Fleet:
    settings: Settings
    logs: Path
    members: list[Member] = field(default_factory=list)
    retired: list[Member] = field(default_factory=list)
    _spawned: int = 0

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, logs: Path, *, agents: int) -> AsyncIterator[Fleet]:
        fleet = cls(settings, logs)
        try:
            fleet.spawn("api", ["api"])
            fleet.spawn("sink", ["sink"])
            for _ in range(agents):
                fleet.spawn("agents", ["agents"])
            await fleet.until_ready()
            async with background(fleet._sample_forever(), name="fleet-sampler"):
                yield fleet
        finally:
            await asyncio.to_thread(fleet._stop_all)

    def spawn(self, role_name: str, roles: list[str], env: dict[str, str] | None = None) -> Member:
        """``bulkflow serve`` with these roles; ``env`` adds to (or overrides) the settings'."""
        self._spawned += 1
        args = [sys.executable, "-m", "ops.cli", "serve"]
        for role in roles:
            args += ["--role", role]
        log = self.logs / f"{self._spawned:02d}-{role_name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                env={**os.environ, **self.settings.as_env(), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        member = Member(f"{role_name}#{self._spawned}", process, log)
        self.members.append(member)
        return member

    def agents(self) -> list[Member]:
        return [m for m in self.members if m.name.startswith("agents")]

    def kill(self, member: Member) -> None:
        """SIGKILL: no goodbye to the consumer group, no flush; the worst case."""
        member.sample()
        member.process.send_signal(signal.SIGKILL)
        member.process.wait()
        self.members.remove(member)
        self.retired.append(member)

    async def until_ready(self) -> None:
        """Every process up: the API answers and each process logged that it serves."""
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(base_url=self.settings.api_url) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                if await _answers(client) and all(_serving(m) for m in self.members):
                    return
                await asyncio.sleep(0.3)
        raise FleetFailed("bulkflow did not become ready")

    def check_alive(self) -> None:
        for member in self.members:
            if member.process.poll() is not None:
                raise FleetFailed(f"{member.name} exited:\n{member.tail()}")

    def cpu_seconds(self) -> dict[str, float]:
        """Each process's CPU time so far (a killed one's as last seen)."""
        for member in self.members:
            member.sample()
        return {m.name: m.cpu_seconds for m in [*self.retired, *self.members]}

    def peak_memory(self) -> dict[str, dict[str, float]]:
        return {
            m.name: {"rss_mb": round(m.peak_rss_mb, 1), "private_mb": round(m.peak_private_mb, 1)}
            for m in [*self.retired, *self.members]
        }

    async def _sample_forever(self) -> None:
        while True:
            for member in self.members:
                member.sample()
            await asyncio.sleep(_SAMPLE_EVERY)

    def _stop_all(self) -> None:
        for member in self.members:
            member.sample()
            member.process.terminate()
        for member in self.members:
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.process.kill()


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def _serving(member: Member) -> bool:
    return b"bulkflow serving roles" in member.log.read_bytes()
