"""Shared fixtures: the real local infrastructure (Kafka broker, ClickHouse HTTP server, chdb).

Tests exercise the real services rather than mocks where the behaviour under test is theirs.
The helpers live in scripts/ (also used by developers from the shell), so it goes on sys.path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import clickhouse_server as chserver  # noqa: E402
import kafka_broker  # noqa: E402

# `hub run` serves /metrics, /healthz and /readyz on [metrics] port, 9108 by default; the suite
# starts many hubs, some at once, so it turns the endpoint off (inherited by every `hub run`
# subprocess). Tests of the endpoint give their own free port; test_health.py covers the default.
os.environ["HUB_METRICS__PORT"] = "0"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka broker, started once per session.

    Set HUB_TEST_KAFKA_BOOTSTRAP to use an already running broker instead.
    """
    external = os.environ.get("HUB_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    try:
        broker = kafka_broker.start(tmp_path_factory.mktemp("kafka"))
    except kafka_broker.BrokerError as exc:
        pytest.fail(f"local Kafka broker did not start: {exc}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        kafka_broker.stop(broker)


class ClickHouseServers:
    """Starts chdb-backed ClickHouse HTTP servers (one subprocess each) and stops them all.

    `stop` + `restart` on the same data dir and port simulate a ClickHouse outage.
    """

    def __init__(self, default_data_dir: Path) -> None:
        self._default = default_data_dir
        self._running: list[chserver.Server] = []

    def start(self, data_dir: Path | None = None, port: int | None = None) -> chserver.Server:
        server = chserver.start(data_dir or self._default, port=port)
        self._running.append(server)
        return server

    __call__ = start

    def stop(self, server: chserver.Server) -> None:
        chserver.stop(server)

    def restart(self, server: chserver.Server) -> chserver.Server:
        """Same data dir, same port: clients keep their URL across the outage."""
        self.stop(server)
        return self.start(server.data_dir, port=server.port)

    def stop_all(self) -> None:
        for server in self._running:
            chserver.stop(server)
        self._running.clear()


@pytest.fixture
def clickhouse_server(tmp_path: Path) -> Iterator[ClickHouseServers]:
    """Factory: `srv = clickhouse_server()` (or `.start(data_dir, port)`), `.stop`, `.restart`."""
    servers = ClickHouseServers(tmp_path / "clickhouse")
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> str:
    """A fresh embedded-store DSN (`chdb:///abs/path/store`) for clickhouse_connect.get_client(dsn=...)."""
    return f"chdb://{tmp_path / 'store'}"


@pytest.fixture(autouse=True)
def _no_worker_left_behind() -> Iterator[None]:
    """A test that fails half-way must not leave `hub run` workers loading the machine."""
    from tests.helpers import HubProcess

    yield
    HubProcess.stop_all()
