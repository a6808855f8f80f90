"""`hub run`'s HTTP port (/metrics, /healthz, /readyz) and `hub health`, against running hubs.

Every hub here gets its own free port (the suite turns the endpoint off by default, see
conftest.py), except the test of the documented default port.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import DEFAULT_METRICS_PORT, load_config
from connectors import shutdown
from connectors.health import Endpoint, Health, probe
from connectors.worker_metrics import Heartbeat
from ports import free_port, port_free
from tests.helpers import ROOT, HubProcess, produce, topic_env, wait_for

Samples = dict[tuple[str, frozenset], float]


def get(url: str) -> tuple[int, dict | str]:
    """Status and body (JSON when it is) of a GET; never raises for an HTTP error status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            code, data = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        code, data = exc.code, exc.read()
    except OSError:  # nothing listens (yet)
        return 0, ""
    try:
        return code, json.loads(data)
    except ValueError:
        return code, data.decode()


def scrape(port: int) -> Samples:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(lab)[label]: v for (n, lab), v in samples.items() if n == name}


def hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def one_line(text: str) -> bool:
    return text.strip() != "" and "\n" not in text.strip() and "Traceback" not in text


@pytest.fixture
def hubs() -> Iterator[list[HubProcess]]:
    """Hub processes a test starts; stopped whatever happens."""
    started: list[HubProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def ready(port: int) -> bool:
    return get(f"http://127.0.0.1:{port}/readyz")[0] == 200


# -- config and the probe logic, in process ------------------------------------------------------

def test_the_endpoint_is_on_by_default_on_the_documented_port() -> None:
    assert DEFAULT_METRICS_PORT == 9108
    cfg = load_config(environ={})  # the packaged config/hub.toml, no HUB_* variables
    assert cfg.metrics.port == DEFAULT_METRICS_PORT and cfg.metrics.host == "127.0.0.1"
    assert f"`{DEFAULT_METRICS_PORT}`" in (ROOT / "README.md").read_text()


def test_probes_follow_the_heartbeat_and_the_dependencies() -> None:
    shutdown.requested.clear()
    beat = Heartbeat()
    store = {"down": None}
    status = Health(stall_after_s=0.3, heartbeat=beat)
    status.add_check("store", lambda: store["down"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Endpoint("127.0.0.1", port, status):
        code, body = get(base + "/readyz")
        assert code == 503 and body["checks"]["flow"]["detail"].startswith("starting"), body
        assert get(base + "/healthz")[0] == 200  # starting is alive
        beat.beat()
        code, body = get(base + "/readyz")
        assert code == 200 and body["status"] == "ready" and body["checks"]["store"] == {"ok": True, "detail": "ok"}
        assert body["checks"]["flow"]["detail"].startswith("ok, last batch"), body
        assert probe(base + "/readyz", 5)[0] is True
        # No batch for longer than stall_after_s while the store answers: stuck.
        code, body = wait_for(lambda: (r := get(base + "/healthz"))[0] == 503 and r, 10, "liveness to fail")
        assert body["status"] == "stuck" and "stalled" in body["checks"]["flow"]["detail"]
        assert get(base + "/readyz")[0] == 503
        # The same stall while the store is down is waiting, not stuck: alive, not ready.
        store["down"] = "ClickHouse at http://x:8123 does not answer"
        status.run_checks()
        code, body = get(base + "/healthz")
        assert code == 200 and body["checks"]["flow"]["detail"].startswith("waiting for store"), body
        healthy, line = probe(base + "/readyz", 5)
        assert not healthy and line.startswith("not ready: ") and "store: ClickHouse at http://x:8123" in line
        beat.beat()
        code, body = get(base + "/readyz")
        assert code == 503 and body["checks"]["store"] == {"ok": False, "detail": store["down"]}
        store["down"] = None
        status.run_checks()
        assert get(base + "/readyz")[0] == 200
        code, text = get(base + "/metrics")
        assert code == 200 and "# TYPE hub_events_total counter" in text
        assert get(base + "/")[0] == 200 and get(base + "/nope")[0] == 404
    assert port_free(port), "the endpoint must release its port when closed"


# -- hub health and hub run's errors -------------------------------------------------------------

def test_hub_health_is_one_line_and_exit_1_when_nothing_listens() -> None:
    r = hub("health", "--help")
    assert r.returncode == 0 and "--url" in r.stdout and "--live" in r.stdout
    port = free_port()
    for args, env in ((["--url", f"http://127.0.0.1:{port}"], {}), ([], {"HUB_METRICS__PORT": str(port)})):
        r = hub("health", *args, env=env)
        assert r.returncode == 1 and one_line(r.stderr), r.stderr
        assert f"nothing answers at http://127.0.0.1:{port}/readyz" in r.stderr
    r = hub("health", env={"HUB_METRICS__PORT": "0"})
    assert r.returncode == 1 and one_line(r.stderr) and "[metrics] port = 0" in r.stderr, r.stderr


def test_a_port_in_use_stops_hub_run_at_once_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = hub("run", "--events", "10", "--clickhouse", f"chdb://{tmp_path}/store", env={"HUB_METRICS__PORT": str(port)})
    assert r.returncode == 1 and one_line(r.stderr), r.stderr
    assert f"metrics port {port} on 127.0.0.1 is already in use" in r.stderr and "HUB_METRICS__PORT" in r.stderr
    assert not (tmp_path / "store").exists(), "it must fail before touching the store"


# -- running hubs ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_running_hub_serves_metrics_liveness_and_readiness(tmp_path: Path, hubs: list[HubProcess]) -> None:
    port = free_port()
    env = {"HUB_METRICS__PORT": str(port)}
    worker = HubProcess(["--rate", "400", "--clickhouse", f"chdb://{tmp_path}/store"], env, tmp_path / "run.log").start()
    hubs.append(worker)
    wait_for(lambda: ready(port), 120, "/readyz to answer 200")
    first = scrape(port)
    assert total(first, "hub_input_messages_total", source="synthetic") > 0
    assert "synthetic" in labelled(first, "hub_watermark_lag_seconds", "shard")
    assert total(first, "hub_last_batch_timestamp_seconds") > time.time() - 60
    events = total(first, "hub_events_total")
    assert events > 0 and {"telemetry", "cost"} <= set(labelled(first, "hub_events_total", "source"))
    wait_for(lambda: total(scrape(port), "hub_events_total") > events, 30, "events to keep coming")
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    r = hub("health", env=env)  # host and port from config
    assert r.returncode == 0 and r.stdout.startswith("hub health: ready: ") and one_line(r.stdout), r.stdout + r.stderr
    r = hub("health", "--live", "--url", f"http://127.0.0.1:{port}/")
    assert r.returncode == 0 and r.stdout.startswith("hub health: alive: "), r.stdout + r.stderr

    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, (tmp_path / "run.log").read_text()[-2000:]
    r = hub("health", env=env)
    assert r.returncode == 1 and "nothing answers" in r.stderr and one_line(r.stderr)


@pytest.mark.slow
def test_with_no_port_configured_the_default_port_is_used(tmp_path: Path, hubs: list[HubProcess],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_METRICS__PORT")
    store = f"chdb://{tmp_path}/store"
    if not port_free(DEFAULT_METRICS_PORT):  # something on this machine has it: the error must say so
        r = hub("run", "--events", "10", "--clickhouse", store)
        assert r.returncode == 1 and one_line(r.stderr), r.stderr
        assert f"metrics port {DEFAULT_METRICS_PORT}" in r.stderr and "HUB_METRICS__PORT" in r.stderr
        return
    hubs.append(HubProcess(["--rate", "200", "--clickhouse", store], {}, tmp_path / "run.log").start())
    wait_for(lambda: total(scrape(DEFAULT_METRICS_PORT), "hub_events_total") > 0, 120,
             f"events in /metrics on the default port {DEFAULT_METRICS_PORT}")
    wait_for(lambda: ready(DEFAULT_METRICS_PORT), 60, "/readyz to answer 200")
    r = hub("health")
    assert r.returncode == 0 and r.stdout.startswith("hub health: ready: "), r.stdout + r.stderr


@pytest.mark.slow
def test_readiness_fails_while_the_store_is_down_and_recovers(tmp_path: Path, clickhouse_server,
                                                              hubs: list[HubProcess]) -> None:
    server = clickhouse_server.start()
    port = free_port()
    env = {"HUB_METRICS__PORT": str(port)}
    hubs.append(HubProcess(["--rate", "200", "--clickhouse", f"http://127.0.0.1:{server.port}"], env,
                           tmp_path / "run.log").start())
    wait_for(lambda: ready(port), 120, "/readyz to answer 200")

    clickhouse_server.stop(server)
    code, body = wait_for(lambda: (r := get(f"http://127.0.0.1:{port}/readyz"))[0] == 503 and r, 30,
                          "/readyz to answer 503 with the store down")
    assert body["checks"]["store"]["ok"] is False and f"127.0.0.1:{server.port}" in body["checks"]["store"]["detail"]
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # waiting for the store is not stuck
    r = hub("health", env=env)
    assert r.returncode == 1 and r.stderr.startswith("hub health: not ready: store: ") and one_line(r.stderr), r.stderr

    clickhouse_server.start(server.data_dir, port=server.port)
    wait_for(lambda: ready(port), 60, "/readyz to answer 200 again once the store is back")


def _requests(start: int, n: int) -> list[bytes]:
    now = int(time.time() * 1000) - 60_000
    return [orjson.dumps({"event_type": "telemetry.request", "event_id": f"h-{i}", "event_time": now + i,
                          "source": "telemetry", "payload": {"model": "gpt-4o", "latency_ms": 100 + i % 50}})
            for i in range(start, start + n)]


@pytest.mark.kafka
@pytest.mark.slow
def test_a_kafka_run_shows_lag_per_partition_dead_letters_and_keeps_logging(kafka_bootstrap: str, tmp_path: Path,
                                                                          hubs: list[HubProcess]) -> None:
    env = topic_env(kafka_bootstrap, partitions=2)
    topic = env["HUB_KAFKA__TOPICS__TELEMETRY"]
    produce(kafka_bootstrap, topic, _requests(0, 2000) + [b"{not json"] * 6, partitions=2)
    port = free_port()
    env["HUB_METRICS__PORT"] = str(port)
    log = tmp_path / "run.log"
    hubs.append(HubProcess(["--clickhouse", f"chdb://{tmp_path}/store"], env, log).start())

    def caught_up() -> Samples | None:
        s = scrape(port)
        lag = {p: v for (n, lab), v in s.items() if n == "hub_kafka_consumer_lag_messages"
               and dict(lab)["topic"] == topic for p in [dict(lab)["partition"]]}
        done = total(s, "hub_input_messages_total", source="telemetry") == 2006 and lag == {"0": 0.0, "1": 0.0}
        return s if done else None

    s = wait_for(caught_up, 120, "all 2006 messages read and the lag of both partitions at 0")
    assert total(s, "hub_events_total", source="telemetry") == 2000
    assert labelled(s, "hub_dead_letters_total", "reason") == {"malformed_json": 6.0}
    assert {f"{topic}:0", f"{topic}:1"} <= set(labelled(s, "hub_watermark_lag_seconds", "shard"))
    wait_for(lambda: ready(port), 30, "/readyz to answer 200")
    assert get(f"http://127.0.0.1:{port}/readyz")[1]["checks"]["kafka"] == {"ok": True, "detail": "ok"}
    r = hub("health", env=env)
    assert r.returncode == 0 and "kafka: ok" in r.stdout, r.stdout + r.stderr

    # Still live: more input is read, and without a terminal progress lines keep coming.
    produce(kafka_bootstrap, topic, _requests(2000, 500), partitions=2)
    wait_for(lambda: total(scrape(port), "hub_events_total", source="telemetry") == 2500, 60, "the next 500 events")
    progress = wait_for(lambda: [line for line in log.read_text().splitlines() if " events (" in line][1:], 60,
                        "a second progress line in the log")
    assert progress[-1].startswith("hub run: ")
