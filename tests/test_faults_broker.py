"""Fault: the Kafka broker goes away for 20 s in the middle of a run (issue 14, item 3).

A broker of its own (the session broker is shared by other tests), stopped cleanly and started
again on the same data dir and ports while `hub run --until-end` reads a 100k-message topic:
the flow waits, resumes and loses nothing (the store equals a clean run's), and exits 0.
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_broker  # scripts/, put on sys.path by conftest
from tests.helpers import HubProcess, digest_differences, http_settings, produce, topic_env, wait_for
from tests.test_faults_outage import fault_digest, stored_events
from tests.test_pipeline_kafka import synthetic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
MESSAGES = 100_000
OUTAGE_S = 20.0


@pytest.fixture
def own_broker(tmp_path):
    """A broker for this test alone, in a directory that survives its restarts."""
    try:
        broker = kafka_broker.start(tmp_path / "kafka")
    except kafka_broker.BrokerError as exc:
        pytest.fail(f"local Kafka broker did not start: {exc}", pytrace=False)
    holder = {"broker": broker}
    yield holder
    kafka_broker.stop(holder["broker"])


def test_broker_down_20s_mid_run_the_flow_waits_resumes_and_loses_nothing(own_broker, kafka_bootstrap, tmp_path,
                                                                          clickhouse_server):
    broker = own_broker["broker"]
    messages = synthetic(MESSAGES, seed=8)
    # A shallow prefetch (1 MB per partition instead of 64): the outage must find the consumer
    # needing the broker, not reading what librdkafka fetched before it went away.
    env = {**topic_env(broker.bootstrap), "HUB_WINDOWS__IDLE_CLOSE_S": "3600",
           "HUB_KAFKA__CLIENT_CONFIG__QUEUED_MAX_MESSAGES_KBYTES": "1024"}
    produce(broker.bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"], messages)
    # The expected result: the same messages read by a clean run from the session broker, while
    # this test's broker is down (when the machine's cores are otherwise idle). Same topic names:
    # incident ids derive from the shard (topic:partition) they came through.
    clean_env = {**{k: v for k, v in env.items() if "QUEUED_MAX" not in k}, "HUB_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                 "HUB_CLICKHOUSE__DATABASE": "clean"}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for k, t in env.items() if k.startswith("HUB_KAFKA__TOPICS__")]).values():
        f.result(30)
    produce(kafka_bootstrap, clean_env["HUB_KAFKA__TOPICS__TELEMETRY"], messages)
    server = clickhouse_server.start(tmp_path / "ch")
    url = f"http://127.0.0.1:{server.port}"
    settings = http_settings(server.port, "outage")
    log = tmp_path / "outage.log"
    hub = HubProcess(["--until-end", "--clickhouse", url], {**env, "HUB_CLICKHOUSE__DATABASE": "outage"}, log).start()
    clean = None
    try:
        wait_for(lambda: stored_events(settings) > 0, 60, "the first events to be stored", 0.05)
        kafka_broker.stop(broker)
        stopped = time.monotonic()
        assert hub.proc.poll() is None, "the run ended before the outage began: make the topic bigger"
        before = stored_events(settings)
        clean = HubProcess(["--until-end", "--clickhouse", url], clean_env, tmp_path / "clean.log").start()
        wait_for(lambda: "Kafka unavailable" in log.read_text(), 15, "the source to report the outage")
        # Waiting, not failing: the run is still there at the end of the outage.
        wait_for(lambda: time.monotonic() - stopped >= OUTAGE_S or hub.proc.poll() is not None, OUTAGE_S + 5,
                 "the outage to last its 20 s", 0.2)
        assert hub.proc.poll() is None, f"hub run exited during the outage:\n{log.read_text()[-2000:]}"
        during = stored_events(settings)
        own_broker["broker"] = broker = kafka_broker.start(broker.dir)
        restarted = time.monotonic()
        wait_for(lambda: stored_events(settings) > during, 60, "new events to be stored after the restart", 0.05)
        resumed_after = time.monotonic() - restarted
        assert hub.wait(120) == 0, log.read_text()[-3000:]
        assert clean.wait(120) == 0, (tmp_path / "clean.log").read_text()[-3000:]
    finally:
        hub.stop()
        if clean is not None:
            clean.stop()
    print(f"\nkafka outage {OUTAGE_S:.0f}s: {before:,} events stored when it began, {during:,} at its end; "
          f"new events stored {resumed_after:.1f}s after the broker answered again")
    expected, got = fault_digest(http_settings(server.port, "clean")), fault_digest(settings)
    assert during < expected["events"][0][0], "the outage came after everything was read: it tested nothing"
    differ = digest_differences(got, expected)
    assert not differ, differ
    assert expected["events"][0][0] > MESSAGES
    text = log.read_text()
    assert text.count("Kafka unavailable") == 1 and text.count("Kafka is reachable again") == 1, text[-3000:]
    assert "Traceback" not in text and "FAIL|rdkafka" not in text
