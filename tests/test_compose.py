"""docker-compose.yml wires the production-like stack together (no Docker engine here).

The stack cannot be started in this environment, so its wiring is checked statically: the
worker must reach Kafka and ClickHouse by service name on the ports they listen on, its
password must come from the host environment, and Prometheus must scrape its metrics port.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    """Compose allows environment as a mapping or as a list of KEY=VALUE."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> set[str]:
    deps = service.get("depends_on") or []
    return set(deps) if isinstance(deps, list) else set(deps.keys())


def test_stack_has_the_four_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "clickhouse", "hub-worker", "prometheus"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["prometheus"]["image"].startswith("prom/prometheus")


def test_kafka_is_single_node_kraft_advertising_its_service_name(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_clickhouse_keeps_data_on_a_named_volume(compose: dict[str, Any]) -> None:
    ch = compose["services"]["clickhouse"]
    mounts = [v.split(":") for v in ch["volumes"]]
    assert any(target == "/var/lib/clickhouse" and source in compose["volumes"] for source, target, *_ in mounts)
    assert any(str(p).split(":")[-1] == "8123" for p in ch["ports"])


def test_worker_reaches_kafka_and_clickhouse_by_service_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["hub-worker"]
    env = _env(worker)
    kafka_advertised = _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert env["HUB_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert f"//{env['HUB_KAFKA__BOOTSTRAP_SERVERS']}" in kafka_advertised  # a listener Kafka advertises
    assert env["HUB_CLICKHOUSE__DSN"] == "http://clickhouse:8123"
    assert {"kafka", "clickhouse"} <= _depends_on(worker)
    assert worker["build"] in (".", {"context": "."})
    assert worker["command"] in (["hub", "run"], "hub run")


def test_worker_password_comes_from_the_host_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    password = _env(services["hub-worker"])["HUB_CLICKHOUSE__PASSWORD"]
    assert re.fullmatch(r"\$\{HUB_CLICKHOUSE__PASSWORD(:?[-?][^}]*)?\}", password), password
    assert _env(services["clickhouse"])["CLICKHOUSE_PASSWORD"].startswith("${HUB_CLICKHOUSE__PASSWORD")


def test_prometheus_scrapes_the_worker_metrics_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker_env = _env(services["hub-worker"])
    port = worker_env["HUB_METRICS__PORT"]
    assert port == "9108"
    assert worker_env["HUB_METRICS__HOST"] == "0.0.0.0"  # reachable from the prometheus container
    assert port in {str(p).split(":")[-1] for p in services["hub-worker"].get("expose", [])}

    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    config_path = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    assert config_path.resolve() == (ROOT / "config" / "prometheus.yml").resolve()
    prometheus = yaml.safe_load(config_path.read_text())
    targets = {t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]}
    assert f"hub-worker:{port}" in targets


def test_dockerfile_installs_the_package_and_runs_hub(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"uv export --locked", dockerfile), "the image must install from uv.lock"
    assert re.search(r"pip install --no-deps \.", dockerfile)
    assert re.search(r'^CMD \["hub", "run"\]', dockerfile, re.M)
    assert "9108" in dockerfile
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "hub" in pyproject["project"]["scripts"]  # the console script the image runs
    for package in (p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]):
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), f"Dockerfile does not copy {package}/"


def test_worker_health_is_probed_on_its_metrics_port(compose: dict[str, Any]) -> None:
    worker = compose["services"]["hub-worker"]
    probe = worker["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "hub", "health"]
    assert probe[probe.index("--url") + 1].endswith(f":{_env(worker)['HUB_METRICS__PORT']}")
