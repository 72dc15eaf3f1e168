"""``bulkflow start`` / ``stop``: ``bulkflow serve`` in the background, by PID file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bulkflow.settings import Settings

START_TIMEOUT = 90.0  # seconds until /healthz must answer
STOP_TIMEOUT = 30.0  # seconds before a stopping server is killed


class DaemonError(RuntimeError):
    pass


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "run" / "bulkflow.pid"


#: The arguments of the background server after the interpreter.
_SERVE_ARGS = [b"-m", b"ops.cli", b"serve"]


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "log" / "bulkflow.log"


def running_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # Ours, not a process that reused the PID: the command start() ran.
    return pid if cmdline.split(b"\0")[1:4] == _SERVE_ARGS else None


def healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start(settings: Settings) -> int:
    """Start the server unless it runs; wait until it answers; return its PID."""
    pid = running_pid(settings)
    if pid is None:
        for path in (_pid_file(settings), log_file(settings)):
            path.parent.mkdir(parents=True, exist_ok=True)
        with log_file(settings).open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, *(arg.decode() for arg in _SERVE_ARGS)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **settings.as_env()},  # exactly these settings
            )
        pid = process.pid
        _pid_file(settings).write_text(str(pid))
    deadline = time.monotonic() + START_TIMEOUT
    while not healthy(settings):
        if running_pid(settings) is None:
            raise DaemonError(f"bulkflow serve exited during start-up; see {log_file(settings)}")
        if time.monotonic() > deadline:
            raise DaemonError(
                f"bulkflow serve did not answer in {START_TIMEOUT:.0f}s; see {log_file(settings)}"
            )
        time.sleep(0.5)
    return pid


def stop(settings: Settings) -> None:
    pid = running_pid(settings)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while running_pid(settings) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if running_pid(settings) is not None:
            os.kill(pid, signal.SIGKILL)
    _pid_file(settings).unlink(missing_ok=True)
