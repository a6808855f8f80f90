"""Budgets, alert rules and webhook notifications end to end: `hub run --input FILE` on the
embedded store, webhooks on a local HTTP server, and a restart (same recovery dir, the file grown)
in between.

Day A (two days ago, UTC), 10:00-10:20, team search, model gpt-4o, 30 calls a minute at a
reported $0.01: latency p95 above 2 s in minutes 6-12, 10% errors in minutes 15-16, a burst of
malformed lines in minute 3, and $6.00 spent against a $7.00 day budget (80% = $5.60, crossed in
minute 18). Day B (yesterday), read after the restart: three quiet minutes at 09:00 roll the budget
period over.
"""
from __future__ import annotations

import json
import time
from contextlib import closing

import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main
from tests.webhook_server import WebhookServer

pytestmark = pytest.mark.slow
MIN = 60_000
DAY = 86_400_000
DAY_A = (int(time.time() * 1000) // DAY - 2) * DAY
DAY_B = DAY_A + DAY
T0 = DAY_A + 10 * 3_600_000

CONFIG = """
[[budgets]]
name = "search-day"
scope = "team=search"
period = "day"
amount_usd = 7.0
thresholds = [0.8, 1.0]

[alerts]
renotify_s = 0

[[alerts.rules]]
name = "search-budget"
kind = "budget"
budgets = ["search-day"]
severity = "high"

[[alerts.rules]]
name = "search-forecast"
kind = "budget"
signal = "forecast"

[[alerts.rules]]
name = "gpt4o-p95"
kind = "threshold"
metric = "latency_ms"
stat = "p95"
threshold = 2000
for_s = 300
by = ["model"]
match = { model = "gpt-4o" }
severity = "high"

[[alerts.rules]]
name = "error-rate"
kind = "threshold"
metric = "errors"
stat = "sum"
denominator = "requests"
threshold = 0.05
by = ["model"]

[[alerts.rules]]
name = "dead-letter-rate"
kind = "threshold"
metric = "dead_letters"
stat = "sum"
denominator = "inputs"
threshold = 0.05

[[alerts.channels]]
name = "slack"
format = "slack"
url_env = "TEST_SLACK_URL"
rules = ["search-budget", "gpt4o-p95"]

[[alerts.channels]]
name = "flaky"
url_env = "TEST_FLAKY_URL"
rules = ["search-budget", "gpt4o-p95", "error-rate"]
backoff_s = 0.01

[[alerts.channels]]
name = "broken"
url_env = "TEST_BROKEN_URL"
rules = ["error-rate"]
max_attempts = 3
backoff_s = 0.01
"""


def call(i: int, t: int, latency: float, error: bool = False) -> str:
    return json.dumps({"event_type": "telemetry.request", "event_id": f"c-{i}", "event_time": t, "source": "telemetry",
                       "tags": {"team": "search", "endpoint": "/v1/chat"},
                       "payload": {"model": "gpt-4o", "provider": "openai", "latency_ms": latency, "input_tokens": 100,
                                   "output_tokens": 20, "is_error": error, "cost_usd": 0.01}})


def day_a() -> list[str]:
    lines = []
    for minute in range(20):
        for k in range(30):
            i = minute * 30 + k
            slow = 6 <= minute <= 12
            lines.append(call(i, T0 + minute * MIN + k * 2000, 2600.0 + k if slow else 300.0 + k,
                              error=minute in (15, 16) and k % 10 == 0))
            if minute == 3 and k % 3 == 0:
                lines.append('{"event_type": "telemetry.request", "event_id": ')
    return lines


def day_b() -> list[str]:
    return [call(10_000 + i, DAY_B + 9 * 3_600_000 + i * 6000, 300.0) for i in range(30)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerts")
    (tmp / "hub.toml").write_text(CONFIG)
    src = tmp / "events.jsonl"
    src.write_text("\n".join(day_a()) + "\n")
    dsn = f"chdb://{tmp}/store"
    args = ["run", "--input", str(src), "--clickhouse", dsn, "--config", str(tmp / "hub.toml"),
            "--recovery-dir", str(tmp / "recovery")]
    with WebhookServer(fail_first={"/flaky": 2}, always_fail={"/broken"}) as hooks, \
            pytest.MonkeyPatch.context() as env:
        env.setenv("TEST_SLACK_URL", hooks.url("/slack"))
        env.setenv("TEST_FLAKY_URL", hooks.url("/flaky"))
        env.setenv("TEST_BROKEN_URL", hooks.url("/broken"))
        env.setenv("HUB_KAFKA__BATCH_SIZE", "20")
        assert main(args) == 0
        first = {path: list(hooks.requests(path)) for path in ("/slack", "/flaky", "/broken")}
        with src.open("a") as f:
            f.write("\n".join(day_b()) + "\n")
        assert main(args) == 0
        with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
            yield client, hooks, first


def q(client, sql):
    return client.query(sql).result_rows


def alerts(client, rule):
    return q(client, "SELECT id, status, toUnixTimestamp64Milli(starts_at), toUnixTimestamp64Milli(ends_at), labels, "
                     f"value, threshold FROM alerts_current WHERE rule = '{rule}' ORDER BY starts_at")


def sent(hooks, path, rule):
    return [c.body for c in hooks.delivered(path) if (c.body.get("rule") == rule or rule in json.dumps(c.body))]


def test_budget_crossing_80_percent_fires_once_and_resolves_when_the_day_rolls_over(run):
    client, hooks, first = run
    [(alert, status, starts, ends, labels, value, limit)] = alerts(client, "search-budget")
    day_a = time.strftime("%Y-%m-%d", time.gmtime(DAY_A / 1000))
    assert status == "resolved" and labels == {"budget": "search-day", "period": day_a, "threshold": "80%"}
    assert starts == T0 + 18 * MIN and ends == DAY_B  # crossed in minute 18 ($5.70); the period ended at midnight
    assert limit == pytest.approx(5.6) and value == pytest.approx(6.0)
    events = q(client, f"SELECT event, version FROM alerts FINAL WHERE id = '{alert}' ORDER BY version")
    assert events == [("firing", 1), ("resolved", 2)]
    # One webhook call per transition, in Slack's format, on the first run and after the restart.
    slack = [c for c in hooks.delivered("/slack") if "search-day" in c.body["text"]]
    assert [c.body["text"].split("]")[0] for c in slack] == ["[FIRING", "[RESOLVED"]
    assert len([c for c in first["/slack"] if "search-day" in c.body["text"]]) == 1
    status = q(client, "SELECT toUnixTimestamp64Milli(period_start), spend, pct_used, forecast > spend "
                       "FROM budget_status FINAL ORDER BY period_start")
    assert [(s, round(spend, 6), round(pct, 3)) for s, spend, pct, _ in status] == [
        (DAY_A, 6.0, round(600 / 7, 3)), (DAY_B, 0.3, round(30 / 7, 3))]
    assert status[0][3]


def test_forecast_fires_before_the_threshold_is_crossed(run):
    client, *_ = run
    rows = alerts(client, "search-forecast")
    eighty = [r for r in rows if r[4]["threshold"] == "80%"]
    assert eighty and eighty[0][2] < T0 + 18 * MIN and all(r[1] == "resolved" for r in rows)


def test_p95_rule_fires_after_its_duration_and_resolves(run):
    client, hooks, _ = run
    [(alert, status, starts, ends, labels, value, limit)] = alerts(client, "gpt4o-p95")
    assert labels == {"metric": "latency_ms", "model": "gpt-4o"} and limit == 2000
    assert (starts, ends, status) == (T0 + 6 * MIN, T0 + 13 * MIN, "resolved")
    fired = q(client, f"SELECT toUnixTimestamp64Milli(updated_at) FROM alerts FINAL WHERE id = '{alert}' AND event = 'firing'")
    assert fired == [(T0 + 11 * MIN,)]  # five whole minutes above 2 s
    bodies = [c.body for c in hooks.delivered("/flaky") if c.body["rule"] == "gpt4o-p95"]
    assert [(b["event"], b["id"]) for b in bodies] == [("firing", alert), ("resolved", alert)]


def test_ratio_rules(run):
    client, *_ = run
    [(_, status, starts, ends, labels, value, _)] = alerts(client, "error-rate")
    assert (starts, ends, status, labels) == (T0 + 15 * MIN, T0 + 17 * MIN, "resolved",
                                              {"metric": "errors/requests", "model": "gpt-4o"})
    assert value == pytest.approx(0.1)
    [(_, _, starts, _, labels, value, _)] = alerts(client, "dead-letter-rate")
    assert labels == {"metric": "dead_letters/inputs", "source": "file"} and value > 0.05


def test_flaky_channel_is_retried_and_delivers_each_notification_once(run):
    client, hooks, _ = run
    requests = hooks.requests("/flaky")
    assert [c.status for c in requests[:3]] == [503, 503, 200]
    keys = [c.body["idempotency_key"] for c in hooks.delivered("/flaky")]
    assert len(keys) == len(set(keys)) == 6  # budget, p95, errors: firing and resolved
    assert all(c.headers["Idempotency-Key"] == c.body["idempotency_key"] for c in requests)
    rows = q(client, "SELECT status, attempts FROM notifications FINAL WHERE channel = 'flaky' ORDER BY created_at, key")
    assert rows[0] == ("sent", 3) and all(status == "sent" for status, _ in rows) and len(rows) == 6


def test_channel_that_keeps_failing_leaves_a_dead_letter_record(run):
    client, hooks, _ = run
    rows = q(client, "SELECT event, status, attempts, error, length(body) > 0 FROM notifications FINAL "
                     "WHERE channel = 'broken' ORDER BY created_at")
    assert rows == [("firing", "failed", 3, "HTTP 500", True), ("resolved", "failed", 3, "HTTP 500", True)]
    assert len(hooks.requests("/broken")) == 6


def test_restart_neither_loses_nor_repeats_a_notification(run):
    client, hooks, first = run
    for path in ("/slack", "/flaky"):
        delivered = [c.headers["Idempotency-Key"] for c in hooks.delivered(path)]
        assert len(delivered) == len(set(delivered)), path  # nothing sent twice across the restart
        before = {c.headers["Idempotency-Key"] for c in first[path] if c.status == 200}
        assert before < set(delivered)  # the second run added the resolutions only
    stored = q(client, "SELECT channel, count(), countIf(status = 'sent') FROM notifications FINAL "
                       "WHERE channel != 'broken' GROUP BY channel ORDER BY channel")
    assert stored == [("flaky", 6, 6), ("slack", 4, 4)]
