"""Fault: the ClickHouse server goes away for 30 s in the middle of a run (issue 14, item 3).

Real broker, real ClickHouse HTTP server (chdb), `hub run` as its own process. The writer must
retry until the server is back, stall the flow instead of buffering the backlog in memory, and
lose nothing: the store afterwards equals a clean run's, and the run exits 0.
"""
from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers import HubProcess, digest_differences, http_settings, produce, query, store_digest, topic_env, wait_for
from tests.test_pipeline_kafka import synthetic

MESSAGES = 200_000
OUTAGE_S = 30.0
# Peak RSS during the outage may exceed the RSS just before it by at most this much. What can
# grow while the writer waits: the writer's backlog (BACKLOG_INSERTS x insert_batch_rows rows,
# the insert that waits included), batches in flight between flow steps, and librdkafka's
# prefetch (queued.max.messages.kbytes, 64 MB per partition). Buffering this topic in the hub
# (~140 MB of JSON, several times that decoded) would exceed it.
RSS_GROWTH_BOUND_MB = 150


def proc_status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS, VmHWM) in MB; psutil is not a dependency."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so it then holds the peak since now."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def scrape(port: int) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if (k == name or k.startswith(name + "{")) and all(w in k for w in want))


def fault_digest(settings) -> dict:
    """store_digest with incidents compared by what does not depend on where input batches were
    cut: a run through an outage necessarily reads the topic in other batches than a clean run,
    and an incident's id (the signal that opened its group) and which members a full incident
    (200) keeps depend on the order signals of closing windows meet event signals. Every other
    table must be equal as it is."""
    digest = store_digest(settings)
    digest["incidents"] = query(settings, "SELECT pattern, severity, assets, root_cause_id, length(member_ids) "
                                          "FROM incidents FINAL ORDER BY assets, root_cause_id")
    return digest


def stored_events(settings) -> int:
    try:
        return query(settings, "SELECT count() FROM events")[0][0]
    except Exception:  # the table does not exist yet, or the server is down
        return 0


# -- the writer's retry policy, without a server ------------------------------------------------

@pytest.fixture
def writer(monkeypatch):
    """A _Writer with no thread and no client: only its retry policy and outage state are used."""
    from tenacity import wait_none

    from connectors import clickhouse_sink

    monkeypatch.setattr(clickhouse_sink, "BACKOFF", wait_none())
    w = clickhouse_sink._Writer.__new__(clickhouse_sink._Writer)
    w.unavailable_since = None
    return w


def failing(errors: list[Exception], result: int = 7):
    """An action that raises `errors` one per call, then returns `result`."""
    def action() -> int:
        if errors:
            raise errors.pop(0)
        return result
    return action


def counter(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_store_unavailable_is_retried_until_back_other_errors_three_times(writer, capsys):
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

    table = f"t_{uuid.uuid4().hex[:6]}"
    refused = [OperationalError("Connection refused") for _ in range(25)]
    assert writer._retry(failing(refused + [DatabaseError("too many parts", code=252)]), table, 10) == 7
    assert counter("hub_clickhouse_insert_retries_total", table=table) == 26
    assert counter("hub_clickhouse_insert_errors_total", table=table, kind="unavailable") == 26
    assert counter("hub_clickhouse_insert_rows_total", table=table) == 10
    assert counter("hub_clickhouse_insert_batches_total", table=table) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "ClickHouse unavailable (Connection refused)" in err[0] and "writing resumed" in err[1]

    # Anything else: three attempts in all, then the error itself (the flow fails loudly).
    bad = [ProgrammingError("Unknown column") for _ in range(5)]
    with pytest.raises(ProgrammingError):
        writer._retry(failing(bad), table)
    assert len(bad) == 2 and counter("hub_clickhouse_insert_errors_total", table=table, kind="other") == 3
    # Refusals in between do not use up those attempts (the server went away and came back).
    mixed = [ProgrammingError("x"), OperationalError("refused"), OperationalError("refused"), ProgrammingError("x")]
    assert writer._retry(failing(mixed, result=3), table) == 3
    assert counter("hub_clickhouse_insert_rows_total", table=table) == 13  # None: the action's result


def test_the_backlog_makes_the_flow_wait_for_the_writer():
    from connectors.clickhouse_sink import _Backlog

    backlog = _Backlog(limit=100)
    backlog.acquire(80, lambda: None)
    backlog.acquire(20, lambda: None)
    waited = threading.Event()

    def flow() -> None:
        backlog.acquire(50, lambda: None)  # blocks: 100 + 50 > 100
        waited.set()

    thread = threading.Thread(target=flow, daemon=True)
    thread.start()
    assert not waited.wait(0.3)
    backlog.release(80)
    assert waited.wait(5) and backlog.rows == 70
    thread.join(5)
    empty = _Backlog(limit=10)
    empty.acquire(1_000, lambda: None)  # an oversized batch still goes through an empty backlog
    assert empty.rows == 1_000


@pytest.mark.slow
def test_a_write_that_cannot_succeed_fails_the_run_in_one_line(tmp_path):
    """No tables (--no-migrate on an empty store): not an outage, so no endless retrying."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--events", "2000", "--no-migrate", "--clickhouse",
                        f"chdb://{tmp_path / 'empty'}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("hub run: error: ClickHouse writer failed: ")
    assert "UNKNOWN_TABLE" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr


@pytest.mark.kafka
@pytest.mark.slow
def test_clickhouse_down_30s_mid_run_stalls_the_flow_and_loses_nothing(kafka_bootstrap, tmp_path, clickhouse_server):
    from ports import free_port

    # Windows close at the end of the bounded run, not by the wall clock during the outage.
    env = {**topic_env(kafka_bootstrap), "HUB_WINDOWS__IDLE_CLOSE_S": "3600"}
    produce(kafka_bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"], synthetic(MESSAGES, seed=5))
    server = clickhouse_server.start(tmp_path / "ch")
    url = f"http://127.0.0.1:{server.port}"
    # The expected result: the same topic read by a clean run, on its own server, during the
    # outage (when the machine's cores are otherwise idle).
    reference = clickhouse_server.start(tmp_path / "reference-ch")
    settings = http_settings(server.port, "outage")
    metrics_port = free_port()
    log = tmp_path / "outage.log"
    hub = HubProcess(["--until-end", "--clickhouse", url],
                     {**env, "HUB_CLICKHOUSE__DATABASE": "outage", "HUB_METRICS__PORT": str(metrics_port)}, log).start()
    clean: HubProcess | None = None
    try:
        wait_for(lambda: stored_events(settings) > 0, 60, "the first events to be stored", 0.05)
        pid = hub.proc.pid
        rss_before = proc_status_mb(pid, "VmRSS")
        hwm_reset = reset_peak_rss(pid)
        clickhouse_server.stop(server)
        stopped = time.monotonic()
        assert hub.proc.poll() is None, "the run ended before the outage began: make the topic bigger"
        clean = HubProcess(["--until-end", "--clickhouse", f"http://127.0.0.1:{reference.port}"], env,
                           tmp_path / "clean.log").start()

        peak_polled, samples = rss_before, []
        wait_for(lambda: "ClickHouse unavailable" in log.read_text(), 20, "the writer to report the outage")
        while (left := OUTAGE_S - (time.monotonic() - stopped)) > 0:
            peak_polled = max(peak_polled, proc_status_mb(pid, "VmRSS"))
            # Two looks at the metrics, ~8 s apart in the last 10 s (the flow has long hit its bound).
            if (left < 10 and not samples) or (left < 1.5 and len(samples) == 1):
                samples.append(scrape(metrics_port))
            time.sleep(min(0.2, left))  # polling interval; the 30 s outage itself is the spec
        peak = max(peak_polled, proc_status_mb(pid, "VmHWM") if hwm_reset else 0.0)
        assert hub.proc.poll() is None, f"hub run exited during the outage:\n{log.read_text()[-2000:]}"

        server = clickhouse_server.start(server.data_dir, port=server.port)
        restarted = time.monotonic()
        wait_for(lambda: "writing resumed" in log.read_text(), 30, "the writer to resume", 0.05)
        resumed_after = time.monotonic() - restarted
        assert hub.wait(120) == 0, log.read_text()[-3000:]
        assert clean.wait(120) == 0, (tmp_path / "clean.log").read_text()[-3000:]
    finally:
        hub.stop()
        if clean is not None:
            clean.stop()
    growth = peak - rss_before
    print(f"\nclickhouse outage {OUTAGE_S:.0f}s: RSS before {rss_before:.0f} MB, peak during {peak:.0f} MB "
          f"(+{growth:.0f} MB; bound +{RSS_GROWTH_BOUND_MB} MB); writing resumed {resumed_after:.1f}s after restart")
    assert growth < RSS_GROWTH_BOUND_MB, (rss_before, peak)

    # Stalled, not buffering: no input was taken during the last seconds of the outage, the
    # writer's backlog sat at its bound, and the metrics saw the outage.
    first, last = samples
    assert metric(first, "hub_events_total") == metric(last, "hub_events_total")
    from connectors.clickhouse_sink import BACKLOG_INSERTS

    assert 0 < metric(last, "hub_clickhouse_writer_backlog_rows") <= BACKLOG_INSERTS * 10_000
    assert metric(last, "hub_clickhouse_available") == 0
    assert metric(last, "hub_clickhouse_insert_errors_total", kind="unavailable") > 0
    assert metric(last, "hub_clickhouse_insert_retries_total") > 0
    text = log.read_text()
    assert text.count("ClickHouse unavailable") == 1 and text.count("writing resumed") == 1, text[-3000:]
    assert "Traceback" not in text

    # Nothing lost: equal to the clean run, table for table.
    expected, got = fault_digest(http_settings(reference.port)), fault_digest(settings)
    differ = digest_differences(got, expected)
    assert not differ, differ
    assert expected["events"][0][0] > MESSAGES  # some messages carry several events
