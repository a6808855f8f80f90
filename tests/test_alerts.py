"""Alerting as pure logic: the alert state machine, rule evaluation across shards, budgets and
their periods, routing, and the config rules (no Kafka, no store, no HTTP)."""
from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest

from config.alerts import (AlertSettings, AnomalyRule, Budget, BudgetRule, Channel, IncidentRule, ThresholdRule,
                           check_alerting)
from config.settings import ConfigError, load_config, to_toml
from operators.alerts import Alerting, AlertState, Feeder
from operators.alerts.book import AlertBook, Observation, RuleSpec
from operators.alerts.notify import route
from operators.shard.columns import to_columns
from operators.windows import sketch
from operators.windows.extract import extract
from schemas.events import LlmRequest, new_event
from schemas.incidents import Anomaly, Incident
from schemas.items import ALL_CLOSED, AlertFeed, DetectionOutput
from schemas.metrics import SeriesKey, WindowMetric
from schemas.rows import COLUMN_NAMES

MIN = 60_000


# -- the state machine ---------------------------------------------------------------------------
def holds(m: int, value: float = 3000.0, ident: tuple = ("gpt-4o",)) -> Observation:
    return Observation(ident=ident, labels={"model": ident[0]}, value=value, threshold=2000.0, start_ms=m * MIN,
                       end_ms=(m + 1) * MIN, summary=f"p95 {value}")


P95 = RuleSpec("p95", "threshold", for_ms=5 * MIN, renotify_ms=30 * MIN)


def test_fires_only_after_its_duration_then_is_deduplicated_while_it_holds():
    book = AlertBook()
    got = [book.observe(P95, holds(m)) for m in range(12)]
    assert [len(r) for r in got] == [0, 0, 0, 0, 1] + [0] * 7  # the fifth whole minute
    [fired] = got[4]
    assert (fired.event, fired.status, fired.starts_at_ms, fired.updated_at_ms, fired.version) == \
        ("firing", "firing", 0, 5 * MIN, 1)


def test_renotifies_after_the_interval_and_resolves_when_it_clears():
    book = AlertBook()
    records = [r for m in range(40) for r in book.observe(P95, holds(m))]
    assert [(r.event, r.updated_at_ms // MIN) for r in records] == [("firing", 5), ("renotify", 35)]
    [resolved] = book.clear("p95", ("gpt-4o",), at_ms=41 * MIN)
    assert (resolved.event, resolved.status, resolved.ends_at_ms, resolved.version, resolved.id) == \
        ("resolved", "resolved", 40 * MIN, 3, records[0].id)
    assert book.clear("p95", ("gpt-4o",), at_ms=42 * MIN) == [] and not book.entries


def test_a_short_breach_never_fires_and_a_gap_starts_over():
    book = AlertBook()
    assert [r for m in range(4) for r in book.observe(P95, holds(m))] == []
    assert book.clear("p95", ("gpt-4o",), 5 * MIN) == []  # pending only: dropped silently
    assert [r for m in (10, 11, 12, 14, 15, 16, 17) for r in book.observe(P95, holds(m))] == []  # minute 13 missing
    [fired] = book.observe(P95, holds(18))
    assert fired.starts_at_ms == 14 * MIN


def test_expiry_resolves_what_is_not_seen_again():
    book = AlertBook()
    spec = RuleSpec("spikes", "anomaly", contiguous=False)
    obs = holds(0)
    obs.expires_ms = 10 * MIN
    [fired] = book.observe(spec, obs)
    again = holds(3)
    again.expires_ms = 13 * MIN
    assert book.observe(spec, again) == []  # sparse findings extend the same alert
    assert book.expire(12 * MIN) == []
    [resolved] = book.expire(20 * MIN)
    assert resolved.id == fired.id and resolved.ends_at_ms == 13 * MIN and resolved.updated_at_ms == 13 * MIN


def test_ids_and_versions_replay_identically_from_a_snapshot():
    book = AlertBook()
    for m in range(3):
        book.observe(P95, holds(m))
    snapshot = pickle.dumps(book)
    runs = []
    for _ in range(2):
        copy = pickle.loads(snapshot)
        runs.append([(r.id, r.version, r.event) for m in range(3, 40) for r in copy.observe(P95, holds(m))])
    assert runs[0] == runs[1] and len(runs[0]) == 2


# -- threshold rules across shards ------------------------------------------------------------------
def window(minute: int, values: list[float], shard: str, metric: str = "latency_ms", model: str = "gpt-4o",
           team: str = "search") -> WindowMetric:
    v = np.array(values)
    hist: dict[int, int] = {}
    for b in sketch.bucket_indices(v).tolist():
        hist[b] = hist.get(b, 0) + 1
    return WindowMetric(series=SeriesKey(metric, model=model, team=team), window_start_ms=minute * MIN, window_ms=MIN,
                        count=len(v), sum=float(v.sum()), min=float(v.min()), max=float(v.max()),
                        sumsq=float((v * v).sum()), hist=hist, shard=shard)


def test_a_minute_is_judged_once_every_shard_has_closed_it_with_all_parts_merged():
    rule = ThresholdRule(name="p95", metric="latency_ms", stat="p95", threshold=2000, by=["model"])
    alerting = Alerting([], AlertSettings(rules=[rule]))
    state = AlertState()
    # Shard a: 90 fast calls (p95 100 ms); shard b: 10 slow ones. Merged, the minute's p95 is 5 s, and it is
    # judged only once shard b has closed the minute too.
    a = AlertFeed("a", windows=[window(0, [100.0] * 90, "a")], watermark_ms=2 * MIN, closed_ms=MIN)
    b_open = AlertFeed("b", windows=[], watermark_ms=30_000, closed_ms=0)
    assert state.step(b_open, None, alerting).alerts == []
    assert state.step(a, None, alerting).alerts == []  # shard b still holds minute 0 open
    b = AlertFeed("b", windows=[window(0, [5000.0] * 10, "b")], watermark_ms=2 * MIN, closed_ms=MIN)
    [fired] = state.step(b, None, alerting).alerts
    assert fired.labels == {"metric": "latency_ms", "model": "gpt-4o"} and fired.value == pytest.approx(5000, rel=0.01)
    late = AlertFeed("a", windows=[window(0, [1.0], "a")], watermark_ms=3 * MIN, closed_ms=2 * MIN)
    state.step(late, None, alerting)
    assert state.late == 1


def test_silent_series_resolve_and_finished_shards_do_not_hold_the_clock():
    rule = ThresholdRule(name="slow", metric="latency_ms", stat="max", threshold=1000)
    alerting = Alerting([], AlertSettings(rules=[rule]))
    state = AlertState()
    out = state.step(AlertFeed("a", windows=[window(0, [3000.0], "a")], watermark_ms=90_000, closed_ms=MIN),
                     None, alerting)
    assert [a.event for a in out.alerts] == ["firing"]
    # The series sends nothing more; other traffic moves the clock past the next whole minute.
    out = state.step(AlertFeed("a", watermark_ms=4 * MIN, closed_ms=3 * MIN), None, alerting)
    assert [(a.event, a.ends_at_ms) for a in out.alerts] == [("resolved", MIN)]
    state.step(AlertFeed("b", watermark_ms=MIN, closed_ms=0, final=True), None, alerting)
    assert state._complete() == 3 * MIN


# -- budgets ---------------------------------------------------------------------------------------
def calls(*rows) -> list[list]:
    return to_columns([new_event(f"e{i}", t, LlmRequest(model=model, latency_ms=1.0, cost_usd=usd), tags=tags)
                       for i, (t, model, usd, tags) in enumerate(rows)])


def test_budget_scopes_sum_billed_cost_only():
    from schemas.items import ShardOutput
    budgets = [Budget(name="all", amount_usd=1), Budget(name="4o", amount_usd=1, scope="model=gpt-4o-2024-08-06"),
               Budget(name="prod", amount_usd=1, scope="env=prod"), Budget(name="ads", amount_usd=1, scope="team=ads")]
    feeder = Feeder(budgets, [], canonical=lambda m: m.removesuffix("-2024-08-06"))
    columns = calls((0, "gpt-4o", 0.5, {"env": "prod"}), (1000, "claude-3-5-sonnet", 0.25, {}),
                    (2000, "gpt-4o", 0.125, {"team": "ads"}))
    columns[COLUMN_NAMES.index("billed")][1] = 0  # e.g. a restated cost record: not spend
    spend = {name: usd for name, _, usd in feeder.feed(ShardOutput("s", event_columns=columns)).spend}
    assert spend == {"all": 0.625, "4o": 0.625, "prod": 0.5, "ads": 0.125}
    # The same rows the cost_usd window metric sums.
    metric = next(m for m in extract(dict(zip(COLUMN_NAMES, columns))) if m.name == "cost_usd")
    assert np.nansum(metric.values) == spend["all"]


def test_forecast_waits_for_its_share_of_the_period_and_uses_the_zone():
    tz = "America/New_York"
    budget = Budget(name="b", amount_usd=100, period="day", timezone=tz, thresholds=[1.0], forecast_from=0.25)
    alerting = Alerting([budget], AlertSettings(renotify_s=0, rules=[BudgetRule(name="f", signal="forecast")]))
    state = AlertState()
    midnight = 1_764_565_200_000  # 2025-12-01T00:00-05:00
    fired = []
    for hour in range(12):  # $10 an hour: forecast $240/day from the first hour on
        t = midnight + hour * 3_600_000
        out = state.step(AlertFeed("s", watermark_ms=t + 2 * MIN, closed_ms=t + MIN, spend=[("b", t, 10.0)]),
                         None, alerting)
        fired += [(a.event, (a.starts_at_ms - midnight) // 3_600_000) for a in out.alerts]
        if out.budgets:
            assert out.budgets[-1].period_start_ms == midnight
    assert fired == [("firing", 6)]  # the first hour with a quarter of the day behind it


def test_late_spend_is_never_dropped():
    budget = Budget(name="b", amount_usd=10, period="month")
    alerting = Alerting([budget], AlertSettings(rules=[BudgetRule(name="r")]))
    state = AlertState()
    state.step(AlertFeed("s", watermark_ms=10 * MIN, closed_ms=9 * MIN, spend=[("b", 5 * MIN, 1.0)]), None, alerting)
    state.step(AlertFeed("s", watermark_ms=11 * MIN, closed_ms=10 * MIN, spend=[("b", 2 * MIN, 9.0)]), None, alerting)
    out = state.step(AlertFeed("s", watermark_ms=12 * MIN, closed_ms=11 * MIN, spend=[("b", 10 * MIN, 0.5)]),
                     None, alerting)
    assert out.budgets[-1].spend == pytest.approx(10.5)
    assert [(a.event, a.labels["threshold"]) for a in out.alerts] == [("firing", "80%"), ("firing", "100%")]


# -- anomaly and incident rules ----------------------------------------------------------------------
def anomaly(minute: int, score: float = 0.9, severity: str = "high") -> Anomaly:
    return Anomaly(id=f"an-{minute}", metric="latency_ms", model="gpt-4o", window_start_ms=minute * MIN,
                   window_ms=MIN, anomaly_type="spike", score=score, expected=100.0, spread=5.0, observed=900.0,
                   detector="robust_z", severity=severity)


def test_anomaly_and_incident_rules():
    rules = [AnomalyRule(name="spikes", types=["spike"], min_score=0.8, resolve_after_s=600),
             IncidentRule(name="perf", patterns=["performance_degradation"], min_severity="medium")]
    alerting = Alerting([], AlertSettings(rules=rules))
    state = AlertState()
    found = DetectionOutput(anomalies=[anomaly(1), anomaly(2, score=0.5), anomaly(3)])
    out = state.step(AlertFeed("s", watermark_ms=4 * MIN, closed_ms=3 * MIN), found, alerting)
    [fired] = out.alerts  # minute 3 is the same alert (minute 2 scored too low)
    assert fired.anomaly_ids == ["an-1"] and fired.severity == "high" and fired.kind == "anomaly"
    out = state.step(AlertFeed("s", watermark_ms=20 * MIN, closed_ms=ALL_CLOSED), None, alerting)
    assert [(a.event, a.ends_at_ms, a.anomaly_ids) for a in out.alerts] == [("resolved", 14 * MIN, ["an-1", "an-3"])]
    incident = Incident(id="inc-1", version=1, pattern="performance_degradation", severity="high", confidence=0.8,
                        start_ms=20 * MIN, end_ms=21 * MIN)
    [opened] = state.step(AlertFeed("s", watermark_ms=22 * MIN), DetectionOutput(incidents=[incident]), alerting).alerts
    assert opened.incident_ids == ["inc-1"] and opened.labels == {"incident": "inc-1", "pattern": "performance_degradation"}
    closed = msgspec.structs.replace(incident, version=2, status="closed", end_ms=25 * MIN)
    [done] = state.step(AlertFeed("s", watermark_ms=26 * MIN), DetectionOutput(incidents=[closed]), alerting).alerts
    assert (done.id, done.event, done.ends_at_ms) == (opened.id, "resolved", 25 * MIN)


def test_removed_rules_resolve_their_alerts_after_a_restart():
    state = AlertState()
    old = Alerting([], AlertSettings(rules=[AnomalyRule(name="spikes")]))
    state.step(AlertFeed("s", watermark_ms=4 * MIN), DetectionOutput(anomalies=[anomaly(1)]), old)
    new = Alerting([], AlertSettings(rules=[]))
    [resolved] = pickle.loads(pickle.dumps(state)).step(AlertFeed("s", watermark_ms=5 * MIN), None, new).alerts
    assert resolved.event == "resolved"


# -- routing -------------------------------------------------------------------------------------------
def test_routing_by_rule_severity_labels_and_resolved():
    state = AlertState()
    alerting = Alerting([], AlertSettings(rules=[AnomalyRule(name="spikes")], channels=[
        Channel(name="all", url_env="A"), Channel(name="critical", url_env="B", min_severity="critical"),
        Channel(name="search", url_env="C", match={"team": "search", "rule": "spikes"}),
        Channel(name="quiet", url_env="D", send_resolved=False, rules=["spikes"])]))
    out = state.step(AlertFeed("s", watermark_ms=4 * MIN), DetectionOutput(anomalies=[anomaly(1)]), alerting)
    assert sorted(n.channel for n in out.notifications) == ["all", "quiet"]
    keys = {n.key for n in out.notifications}
    out = state.step(AlertFeed("s", watermark_ms=60 * MIN, closed_ms=ALL_CLOSED), None, alerting)
    assert [n.channel for n in out.notifications] == ["all"] and not keys & {n.key for n in out.notifications}
    body = msgspec.json.decode(out.notifications[0].body)
    assert body["event"] == "resolved" and body["idempotency_key"] == out.notifications[0].key


def test_same_alert_same_notification_keys():
    alerting = Alerting([], AlertSettings(rules=[AnomalyRule(name="spikes")], channels=[Channel(name="a", url_env="A")]))
    keys = [[n.key for n in AlertState().step(AlertFeed("s", watermark_ms=4 * MIN),
                                               DetectionOutput(anomalies=[anomaly(1)]), alerting).notifications]
            for _ in range(2)]
    assert keys[0] == keys[1] and len(keys[0]) == 1
    assert route([], alerting.channels) == []


# -- config -------------------------------------------------------------------------------------------
def load(tmp_path, text: str):
    p = tmp_path / "hub.toml"
    p.write_text(text)
    return load_config(p, environ={})


SECRET = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


@pytest.mark.parametrize("text", [
    f'[[alerts.channels]]\nname = "ops"\nurl = "{SECRET}"\n',
    f'[[alerts.channels]]\nname = "ops"\nurl_env = "{SECRET}"\n',
])
def test_webhook_urls_are_refused_in_the_file_without_being_shown(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    msg = str(err.value)
    assert "\n" not in msg and "SECRET" not in msg and "url" in msg and "environment" in msg


@pytest.mark.parametrize("text, words", [
    ('[[alerts.rules]]\nname = "x"\nkind = "threshold"\nmetric = "latency"\nthreshold = 1\n', "unknown metric 'latency'"),
    ('[[alerts.rules]]\nname = "x"\nkind = "threshold"\nmetric = "latency_ms"\nthreshold = 1\nby = ["source"]\n',
     "no label 'source'"),
    ('[[alerts.rules]]\nname = "x"\nkind = "threshold"\nmetric = "dead_letters"\ndenominator = "requests"\n'
     'threshold = 1\n', "unknown metric 'requests'"),
    ('[[alerts.rules]]\nname = "x"\nkind = "anomaly"\nthreshold = 1\n', "unknown field `threshold`"),
    ('[[alerts.rules]]\nname = "x"\nkind = "page"\n', "kind"),
    ('[[alerts.rules]]\nname = "x"\nkind = "budget"\nbudgets = ["nope"]\n', "no budget named 'nope'"),
    ('[[alerts.rules]]\nname = "x"\nkind = "anomaly"\n[[alerts.rules]]\nname = "x"\nkind = "incident"\n', "used twice"),
    ('[[alerts.channels]]\nname = "c"\nurl_env = "C"\nrules = ["nope"]\n', "no rule named 'nope'"),
    ('[[budgets]]\nname = "b"\namount_usd = 1\ntimezone = "Mars/Olympus"\n', "unknown time zone"),
    ('[[budgets]]\nname = "b"\namount_usd = 1\nscope = "team"\n', "KEY=VALUE"),
    ('[[budgets]]\nname = "b"\namount_usd = 0\n', "budgets[0].amount_usd"),
    ('[[budgets]]\nname = "b"\namount_usd = 1\nthresholds = [1.0, 0.8]\n', "increasing"),
])
def test_invalid_alerting_config_is_one_line(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_alerting_config_round_trips_through_config_show(tmp_path):
    cfg = load(tmp_path, """
[[budgets]]
name = "search"
scope = "team=search"
period = "week"
timezone = "Europe/Berlin"
amount_usd = 500

[[alerts.rules]]
name = "p95"
kind = "threshold"
metric = "latency_ms"
stat = "p95"
threshold = 2000
for_s = 300

[[alerts.rules]]
name = "spend"
kind = "budget"

[[alerts.channels]]
name = "slack"
url_env = "HUB_SLACK_URL"
format = "slack"
""")
    assert isinstance(cfg.alerts.rules[0], ThresholdRule) and cfg.alerts.rules[0].group_by == ["model", "endpoint", "team"]
    assert cfg.budgets[0].thresholds == [0.8, 1.0]
    assert load(tmp_path, to_toml(cfg)) == cfg
    assert check_alerting(cfg.budgets, cfg.alerts) is None


def test_the_readme_example_config_loads(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Budgets, alerts and notifications"):]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = load(tmp_path, example)
    assert len(cfg.budgets) == 1 and len(cfg.alerts.rules) == 7 and cfg.alerts.channels[0].format == "slack"
