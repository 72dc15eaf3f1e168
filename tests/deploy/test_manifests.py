"""Static checks of Dockerfile, .dockerignore, compose.yaml and deploy/k8s/*.yaml.

There is no Docker engine or cluster here, so these files are checked against
the code they drive: commands must parse with the ``bulkflow`` command line,
every ``BULKFLOW_*`` variable must be a setting (and validate as one), and the
references between services, selectors, ports and probes must line up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from bulkflow.settings import Settings
from ops.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
ROLES = {"api", "agents", "sink"}
HEALTH_PATH = "/healthz"
SETTING_VARS = {f"BULKFLOW_{name.upper()}" for name in Settings.model_fields}
# Subcommands that manage processes and files on the developer's machine.
LOCAL_ONLY_COMMANDS = {"services", "start", "stop"}
Doc = dict[str, Any]


# --- helpers -----------------------------------------------------------------


def parse_bulkflow(command: Any, where: str) -> argparse.Namespace:
    """Parse a container command with the real command line; fail on a stray one."""
    assert isinstance(command, list), f"{where}: use the exec (list) form, not {command!r}"
    assert all(isinstance(arg, str) for arg in command), f"{where}: {command!r}"
    assert command[:1] == ["bulkflow"], f"{where}: {command!r} does not run `bulkflow`"
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"{where}: `bulkflow` rejects the arguments {command[1:]!r}")


def roles_of(args: argparse.Namespace) -> set[str]:
    """The roles a parsed command runs; ``serve`` without ``--role`` runs all three."""
    if args.command != "serve":
        return set()
    return set(args.role) if args.role else set(ROLES)


def opens_clickhouse(args: argparse.Namespace) -> bool:
    if args.command == "migrate":
        return not args.postgres_only
    return bool({"api", "sink"} & roles_of(args))


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container with this environment gets (validated by pydantic)."""
    unknown = sorted({name for name in env if name.startswith("BULKFLOW_")} - SETTING_VARS)
    assert not unknown, f"not bulkflow settings: {unknown}"
    for name in [name for name in os.environ if name.startswith("BULKFLOW_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("BULKFLOW_"):
            monkeypatch.setenv(name, value)
    return Settings()


def url_host(url: str) -> str | None:
    return urlsplit(url if "://" in url else f"//{url}").hostname


def dependency_hosts(settings: Settings) -> dict[str, set[str]]:
    """The hosts a container connects to, by kind of service."""
    return {
        "kafka": {url_host(hp) or "" for hp in settings.kafka_bootstrap.split(",")},
        "postgres": {url_host(settings.postgres_dsn.get_secret_value()) or ""},
        "redis": {url_host(settings.redis_url.get_secret_value()) or ""},
        "clickhouse": {url_host(settings.clickhouse_dsn) or ""},
    }


_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(|k|M|G|Ki|Mi|Gi)", str(quantity))
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match[1]) * _MEMORY_UNITS[match[2]]


# --- Dockerfile and .dockerignore ----------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuations joined."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def test_dockerfile_base_image_satisfies_requires_python() -> None:
    (base,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    match = re.fullmatch(r"python:(\d+\.\d+)-slim", base)
    assert match, f"expected a python:X.Y-slim base image, got {base!r}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert requires.contains(f"{match[1]}.0"), f"{base} does not satisfy {requires}"


def test_dockerfile_installs_the_wheel_not_the_checkout() -> None:
    """A normal install: the package data (SQL, DDL, templates) comes with the wheel."""
    instructions = dockerfile_instructions()
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    assert ". /src" in copies
    installs = [rest for keyword, rest in instructions if keyword == "RUN" and "/src" in rest]
    assert installs, "expected the image to install the copied source"
    assert all(re.search(r"pip install( --?[\w-]+)* /src(\s|$)", rest) for rest in installs)
    assert not any(" -e " in rest for keyword, rest in instructions if keyword == "RUN")
    assert any("rm -rf /src" in rest for rest in installs), "the source tree is not kept"


def test_dockerfile_runs_the_bulkflow_script() -> None:
    instructions = dockerfile_instructions()
    entrypoints = [json.loads(rest) for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for keyword, rest in instructions if keyword == "CMD"]
    command = (entrypoints[-1] if entrypoints else []) + cmd
    args = parse_bulkflow(command, "Dockerfile CMD")
    assert args.command not in LOCAL_ONLY_COMMANDS


def test_dockerfile_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dockerfile_env()
    assert any(name.startswith("BULKFLOW_") for name in env)
    settings = settings_from(env, monkeypatch)
    assert settings.api_host == "0.0.0.0", "a container must listen beyond 127.0.0.1"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER: the processes would run as root"
    user = users[-1].partition(":")[0]
    assert user not in {"root", "0"}
    # Kubernetes' runAsNonRoot can only verify a numeric user.
    assert user.isdigit(), f"USER {users[-1]}: use a numeric uid"


def _ignore_match(pattern: list[str], path: list[str]) -> bool:
    """Docker's rules: `*` and `?` stay within one path segment, `**` spans any number."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_ignore_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], pattern[0]) and _ignore_match(pattern[1:], path[1:])


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last match wins)."""
    parts = path.split("/")
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/").split("/")
        # A matching directory excludes everything below it.
        if any(_ignore_match(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_what_the_image_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    needed = [
        "pyproject.toml",
        pyproject["project"]["readme"],
        "sql/001_bulk_actions.sql",
        "clickhouse/001_row_outcomes.sql",
        "deploy/local/kafka-pom.xml",
        *(f"{package}/__init__.py" for package in packages),
    ]
    assert [path for path in needed if dockerignored(path)] == []


def test_dockerignore_drops_local_state() -> None:
    for path in [".git/HEAD", ".venv/bin/python", ".local/kafka/server.properties"]:
        assert dockerignored(path), path
    assert dockerignored("bulkflow/__pycache__/cli.cpython-311.pyc")


# --- compose.yaml ----------------------------------------------------------------


def compose() -> Doc:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, Doc]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def depends_on(service: Doc) -> dict[str, str]:
    """Dependency name -> condition (the short list form means service_started)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def dependency_closure(name: str, all_services: Mapping[str, Doc]) -> set[str]:
    seen: set[str] = set()
    todo = list(depends_on(all_services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(depends_on(all_services[dep]))
    return seen


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> str:
    """Compose's ${VAR:-default} with nothing exported: the default."""
    return _INTERPOLATION.sub(lambda m: m[2] or "", str(value)).replace("$$", "$")


def compose_env(service: Doc) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: interpolate(value) for name, value in env.items()}


def bulkflow_services() -> dict[str, Doc]:
    """Services that run the bulkflow image: built here or running `bulkflow`."""
    return {
        name: service
        for name, service in services().items()
        if "build" in service or (service.get("command") or [None])[0] == "bulkflow"
    }


def test_compose_depends_on_names_exist_and_conditions_hold() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dep, condition in depends_on(service).items():
            assert dep in all_services, f"{name} depends on unknown service {dep}"
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {dep}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dep], f"{dep} has no healthcheck"
        assert name not in dependency_closure(name, all_services), f"{name}: cycle"


def test_compose_bulkflow_services_share_one_image() -> None:
    found = bulkflow_services()
    assert {"migrate", *ROLES} <= set(found)
    builds = {json.dumps([s.get("image"), s.get("build")], sort_keys=True) for s in found.values()}
    assert len(builds) == 1, f"bulkflow services differ in image/build: {builds}"
    build = next(iter(found.values()))["build"]
    context, dockerfile = (
        (build, "Dockerfile")
        if isinstance(build, str)
        else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    )
    assert (ROOT / context / dockerfile).is_file()


def test_compose_commands_are_bulkflow_subcommands() -> None:
    role_services: dict[str, list[str]] = {}
    for name, service in bulkflow_services().items():
        args = parse_bulkflow(service.get("command"), f"compose service {name}")
        assert args.command not in LOCAL_ONLY_COMMANDS, f"{name}: {args.command} is local-only"
        for role in roles_of(args):
            role_services.setdefault(role, []).append(name)
    assert services()["migrate"]["command"][1] == "migrate"
    # Each role in exactly one service (scale it with --scale, not copies).
    assert {role: len(names) for role, names in role_services.items()} == dict.fromkeys(ROLES, 1)


def test_compose_env_vars_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in services().items():
        env = compose_env(service)
        unknown = {var for var in env if var.startswith("BULKFLOW_")} - SETTING_VARS
        assert not unknown, f"{name}: not bulkflow settings: {sorted(unknown)}"
        settings_from(env, monkeypatch)  # the values validate too


def test_compose_clickhouse_is_a_server_for_split_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    for name, service in bulkflow_services().items():
        args = parse_bulkflow(service["command"], name)
        if opens_clickhouse(args):
            settings = settings_from(compose_env(service), monkeypatch)
            assert not settings.embedded_clickhouse, f"{name}: chdb opens in one process only"
            assert url_host(settings.clickhouse_dsn) in all_services


def test_compose_services_wait_for_what_they_connect_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    all_services = services()
    for name, service in bulkflow_services().items():
        args = parse_bulkflow(service["command"], name)
        settings = settings_from(compose_env(service), monkeypatch)
        hosts = dependency_hosts(settings)
        if args.command == "migrate":
            used = {"kafka", "postgres"} | ({"clickhouse"} if opens_clickhouse(args) else set())
            direct = depends_on(service)
            for kind in used:
                for host in hosts[kind]:
                    assert direct.get(host) == "service_healthy", f"migrate must wait for {host}"
        elif args.command == "serve":
            assert depends_on(service).get("migrate") == "service_completed_successfully", name
            closure = dependency_closure(name, all_services)
            for kind, kind_hosts in hosts.items():
                assert kind_hosts <= closure, f"{name} does not wait for its {kind}: {kind_hosts}"


def test_compose_api_listens_publishes_and_checks_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (name,) = [
        name
        for name, service in bulkflow_services().items()
        if "api" in roles_of(parse_bulkflow(service["command"], name))
    ]
    api = services()[name]
    settings = settings_from(compose_env(api), monkeypatch)
    assert settings.api_host == "0.0.0.0"
    published = {str(port).rsplit(":", 1)[-1].removesuffix("/tcp") for port in api["ports"]}
    assert str(settings.api_port) in published
    test = " ".join(map(str, api["healthcheck"]["test"]))
    assert f":{settings.api_port}{HEALTH_PATH}" in test


def test_compose_agents_can_scale() -> None:
    agents = services()["agents"]
    assert "container_name" not in agents, "a fixed container name prevents --scale"
    assert "ports" not in agents, "published host ports prevent --scale"


def test_compose_infrastructure_has_healthchecks_and_named_volumes() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, service in doc["services"].items():
        if name not in bulkflow_services():
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


# --- deploy/k8s ------------------------------------------------------------------


def k8s_docs() -> list[tuple[str, Doc]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def k8s_objects(kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_docs() if doc["kind"] == kind}


def workloads() -> Iterator[tuple[str, Doc, Doc]]:
    """(name, workload, container) of every container of every Deployment and Job."""
    for kind in ("Deployment", "Job"):
        for name, doc in k8s_objects(kind).items():
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield name, doc, container


def container_env(container: Doc) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps and Secrets, then env."""
    config_maps, secrets = k8s_objects("ConfigMap"), k8s_objects("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            assert ref in config_maps, f"no ConfigMap {ref} in deploy/k8s"
            env.update(config_maps[ref].get("data", {}))
        if "secretRef" in source:
            ref = source["secretRef"]["name"]
            assert ref in secrets, f"no Secret {ref} in deploy/k8s"
            env.update(secrets[ref].get("stringData", {}))
            assert "data" not in secrets[ref], "keep the example readable: stringData"
    for var in container.get("env", []):
        assert "value" in var or "valueFrom" in var, var
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def test_k8s_manifests_are_well_formed() -> None:
    docs = k8s_docs()
    assert {doc["kind"] for _, doc in docs} >= {"ConfigMap", "Secret", "Job", "Deployment"}
    seen = set()
    for file, doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), file
        assert "namespace" not in doc["metadata"], f"{file}: keep the manifests namespace-agnostic"
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{file}: duplicate {key}"
        seen.add(key)


def test_k8s_env_vars_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in ("ConfigMap", "Secret"):
        for name, doc in k8s_objects(kind).items():
            keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            unknown = {key for key in keys if key.startswith("BULKFLOW_")} - SETTING_VARS
            assert not unknown, f"{kind} {name}: not bulkflow settings: {sorted(unknown)}"
            assert all(isinstance(v, str) for v in doc.get("data", {}).values()), name
    for _, _, container in workloads():
        settings_from(container_env(container), monkeypatch)  # unknown names fail here


def test_k8s_commands_are_bulkflow_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    role_workloads: dict[str, list[str]] = {}
    images = set()
    for name, doc, container in workloads():
        args = parse_bulkflow(container.get("command") or container.get("args"), name)
        assert args.command not in LOCAL_ONLY_COMMANDS, f"{name}: {args.command} is local-only"
        if doc["kind"] == "Job":
            assert args.command == "migrate", f"Job {name} runs {args.command}"
        else:
            assert args.command == "serve", f"Deployment {name} runs {args.command}"
        for role in roles_of(args):
            role_workloads.setdefault(role, []).append(name)
        if opens_clickhouse(args):
            settings = settings_from(container_env(container), monkeypatch)
            assert not settings.embedded_clickhouse, f"{name}: chdb opens in one process only"
        images.add(container["image"])
    assert {role: len(names) for role, names in role_workloads.items()} == dict.fromkeys(ROLES, 1)
    assert len(images) == 1, f"one image for every role: {images}"


def test_k8s_deployment_selectors_match_their_templates_only() -> None:
    deployments = k8s_objects("Deployment")
    for name, doc in deployments.items():
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector, f"{name}: empty selector"
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: selector does not match its pods"
        for other, other_doc in deployments.items():
            other_labels = other_doc["spec"]["template"]["metadata"]["labels"]
            if other != name:
                assert not selector.items() <= other_labels.items(), f"{name} selects {other}"


def container_port(container: Doc, port: int | str) -> int:
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return int(declared["containerPort"])
    pytest.fail(f"{container['name']} declares no port {port!r}")


def test_k8s_api_probes_hit_healthz_on_the_api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = 0
    for name, _, container in workloads():
        args = parse_bulkflow(container.get("command") or container.get("args"), name)
        if "api" not in roles_of(args):
            continue
        settings = settings_from(container_env(container), monkeypatch)
        assert settings.api_host == "0.0.0.0", f"{name}: listen beyond 127.0.0.1"
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                http = container[probe]["httpGet"]
                assert http["path"] == HEALTH_PATH, f"{name} {probe}"
                assert container_port(container, http["port"]) == settings.api_port, probe
        checked += 1
    assert checked == 1


def test_k8s_services_route_to_a_deployment_port() -> None:
    deployments = k8s_objects("Deployment")
    assert k8s_objects("Service"), "the api needs a Service"
    for name, service in k8s_objects("Service").items():
        selector = service["spec"]["selector"]
        targets = [
            doc
            for doc in deployments.values()
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        (container,) = targets[0]["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            container_port(container, port.get("targetPort", port["port"]))


def test_k8s_resources_and_writable_paths() -> None:
    state_dir = dockerfile_env()["BULKFLOW_STATE_DIR"]
    for name, doc, container in workloads():
        resources = container["resources"]
        request = memory_bytes(resources["requests"]["memory"])
        limit = memory_bytes(resources["limits"]["memory"])
        assert 0 < request <= limit, f"{name}: memory request {request} > limit {limit}"
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert {state_dir, "/tmp"} <= mounts, f"{name}: read-only root needs {state_dir}"


def test_k8s_agents_replicas_fit_the_chunk_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, doc, container in workloads():
        args = parse_bulkflow(container.get("command") or container.get("args"), name)
        if "agents" in roles_of(args):
            settings = settings_from(container_env(container), monkeypatch)
            assert 1 <= doc["spec"]["replicas"] <= settings.topic_partitions, name
