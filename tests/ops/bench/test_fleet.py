"""The bench's CPU accounting of a server and the processes it starts."""

from __future__ import annotations

import subprocess
import sys

from ops.bench.fleet import process_tree_cpu_seconds

#: The child spins until it has used this much CPU (process time, not a clock).
CHILD_CPU = 0.3  # seconds
_TICK = 0.01  # /proc counts 10 ms ticks: one tick of rounding per counter
_SPIN = f"import time\nwhile time.process_time() < {CHILD_CPU}: pass\n"
_WAIT = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"


def _server(script: str) -> subprocess.Popen[str]:
    """A Python process that says "ready" once its work is done, and ends at stdin's end."""
    return subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _cpu_once_ready(server: subprocess.Popen[str]) -> float | None:
    assert server.stdout is not None
    assert server.stdout.readline() == "ready\n"
    return process_tree_cpu_seconds(server.pid)


def test_a_reaped_childs_cpu_is_counted_with_its_parent() -> None:
    """The child's time is then only in the parent's cutime, as a closed backend's is."""
    server = _server(
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {_SPIN!r}], check=True)\n"
        + _WAIT
    )
    _assert_child_counted(server)
    assert process_tree_cpu_seconds(server.pid) is None  # gone: nothing to count


def test_a_live_childs_cpu_is_counted_with_its_parent() -> None:
    server = _server(
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {_SPIN + _WAIT!r}], check=True)\n"
    )
    _assert_child_counted(server)


def _assert_child_counted(server: subprocess.Popen[str]) -> None:
    """The tree's CPU, read once the child has spun, holds the child's time."""
    try:
        total = _cpu_once_ready(server)
    finally:
        server.communicate("")
    assert total is not None
    assert total >= CHILD_CPU - 2 * _TICK
