"""Static checks of deploy/prometheus and deploy/grafana against the code and compose.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from bulkflow import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "bulkflow.json"
_SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "gauge": [""],
}


def exposed_names() -> set[str]:
    """Every series name bulkflow/metrics.py exposes (counters with _total, histogram parts)."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for suffix in _SUFFIXES[value._type]:
                names.add(value._name + suffix)
    return names


def dashboard_exprs() -> list[str]:
    board = json.loads(GRAFANA.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def compose() -> Any:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_every_metric_the_dashboard_queries_is_defined() -> None:
    known = exposed_names()
    for expr in dashboard_exprs():
        used = set(re.findall(r"\bbulkflow_\w+", expr))
        assert used, f"a panel queries no bulkflow metric: {expr}"
        assert used <= known, f"{expr}: not in bulkflow/metrics.py: {sorted(used - known)}"


def test_the_dashboard_covers_every_metric() -> None:
    queried = {n for e in dashboard_exprs() for n in re.findall(r"\bbulkflow_\w+", e)}
    bases = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    missing = {b for b in bases if not any(q.startswith(b) for q in queried)}
    assert not missing, f"metrics without a panel: {sorted(missing)}"


def test_scrape_targets_match_the_ports_compose_serves() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = compose()["services"]
    targets: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                targets.setdefault(host, set()).add(port)
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                targets.setdefault(name, set()).add(str(sd["port"]))
    assert set(targets) == {"api", "agents", "sink"}
    api_env = {**services["api"]["environment"]}
    assert targets["api"] == {api_env["BULKFLOW_API_PORT"]}
    for role in ("agents", "sink"):
        env = services[role]["environment"]
        assert targets[role] == {env["BULKFLOW_METRICS_PORT"]}, role
        assert env["BULKFLOW_METRICS_HOST"] == "0.0.0.0", role  # reachable from Prometheus
        assert env["BULKFLOW_METRICS_PORT"] in [str(p) for p in services[role]["expose"]], role


def test_kubernetes_agents_and_sink_serve_metrics_where_they_say() -> None:
    """Each pod's scrape annotations name the port it serves /metrics on."""
    for role in ("agents", "sink"):
        deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / f"{role}.yaml").read_text())
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        [container] = template["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert annotations["prometheus.io/scrape"] == "true", role
        assert annotations["prometheus.io/port"] == env["BULKFLOW_METRICS_PORT"], role
        assert ports["metrics"] == int(env["BULKFLOW_METRICS_PORT"]), role
        assert env["BULKFLOW_METRICS_HOST"] == "0.0.0.0", role  # reachable from the scraper
