"""`bulkflow services up|down|status` against real processes."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from bulkflow.settings import Settings
from ops.bench.fleet import free_port, free_port_pair
from ops.dev.local_services import Supervisor


def test_up_is_idempotent(local_services: Settings) -> None:
    supervisor = Supervisor(local_services)
    before = {s.name: s.pid for s in supervisor.status()}
    after = {s.name: s.pid for s in supervisor.up()}
    assert before == after
    assert all(pid is not None for pid in after.values())


def test_private_instances_start_and_stop_by_pid(tmp_path: Path, local_services: Settings) -> None:
    """A second set of instances on other ports: up twice, down twice."""
    settings = Settings(
        state_dir=tmp_path,
        postgres_dsn=SecretStr(f"postgresql://bulkflow@127.0.0.1:{free_port()}/bulkflow"),
        redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"),
        kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
    )
    supervisor = Supervisor(settings)
    try:
        started = supervisor.up()
        assert [s.name for s in started] == ["postgres", "redis", "kafka"]
        assert all(s.ready and s.pid for s in started)
        assert {s.pid for s in supervisor.up()} == {s.pid for s in started}
        assert all(s.log.parent == tmp_path / "log" for s in started)
    finally:
        stopped = supervisor.down()
    assert all(s.pid is None and not s.ready for s in stopped)
    assert all(s.pid is None for s in supervisor.down())
    assert not list((tmp_path / "run").glob("*.pid"))
