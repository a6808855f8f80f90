"""The synthetic traffic generator: deterministic, realistic, and fully handled by the normalizer."""
from __future__ import annotations

import statistics
from collections import Counter

from operators.dedup import Deduplicator
from operators.normalize import Normalizer, detect_format, reason_code
from connectors.synthetic import MODELS, TEAMS, generate
from schemas.events import LlmRequest
from schemas.vocabulary import SOURCES
from schemas.raw import RawMessage

START = 1_763_546_400_000
N = 6000


def normalized(seed: int = 7, **kw):  # type: ignore[no-untyped-def]
    values = generate(N, seed=seed, start_ms=START, rate_per_s=2000, **kw)
    msgs = [RawMessage(v, "synthetic", 0, i) for i, v in enumerate(values)]
    return values, Normalizer().normalize_batch(msgs, now_ms=START + N // 2 + 120_000)


def test_deterministic_for_a_seed() -> None:
    assert generate(500, seed=1, start_ms=START, rate_per_s=100) == generate(500, seed=1, start_ms=START,
                                                                             rate_per_s=100)
    assert generate(500, seed=1, start_ms=START, rate_per_s=100) != generate(500, seed=2, start_ms=START,
                                                                             rate_per_s=100)
    assert generate(0, seed=1, start_ms=START, rate_per_s=100) == []


def test_mix_covers_every_source_and_json_format_mostly_telemetry() -> None:
    values, batch = normalized()
    by_source = Counter(e.source for e in batch.events)
    assert set(by_source) == set(SOURCES)
    assert by_source["telemetry"] > 0.6 * len(batch.events)
    formats = Counter(detect_format(v) for v in values)
    assert formats["hub"] > formats["base"] > formats["otlp_json"] > 0.03 * N
    legacy = sum(b'"llm.model_name"' in v for v in values)
    assert 0 < legacy < formats["otlp_json"]  # OTLP batches use current and legacy GenAI names
    assert batch.skipped_spans > 0  # non-LLM spans in the OTLP batches


def test_bad_inputs_and_duplicates_at_the_configured_fractions() -> None:
    values, batch = normalized(bad_fraction=0.02, duplicate_fraction=0.03)
    dead = len(batch.dead_letters)
    assert 0.012 * N < dead < 0.03 * N
    assert {reason_code(d) for d in batch.dead_letters} >= {"malformed_json", "unknown_event_type",
                                                          "negative_value", "missing_field", "impossible_timestamp"}
    assert len(values) - len(set(values)) > 0.02 * N  # byte-exact re-sends
    kept, dropped = Deduplicator(300_000, 100_000).filter(batch.events)
    assert dropped > 0.015 * N


def test_realistic_request_distributions() -> None:
    _, batch = normalized(bad_fraction=0)
    reqs = [e.payload for e in batch.events if isinstance(e.payload, LlmRequest)]
    assert {p.model for p in reqs} == {m.name for m in MODELS}
    assert len({p.provider for p in reqs}) >= 5
    assert {e.tags.get("team") for e in batch.events if e.tags.get("team")} == set(TEAMS)
    ok = sorted(p.latency_ms for p in reqs if not p.is_error and p.model == "gpt-4o")
    p50, p95 = ok[len(ok) // 2], ok[int(len(ok) * 0.95)]
    assert 600 < p50 < 1300 and p95 > 1.6 * p50  # log-normal: long right tail
    error_rate = sum(p.is_error for p in reqs) / len(reqs)
    assert 0.01 < error_rate < 0.05
    assert statistics.median(p.input_tokens for p in reqs if p.input_tokens) > 200


def test_event_times_follow_the_rate_from_start() -> None:
    values, batch = normalized(bad_fraction=0)
    times = sorted(e.event_time_ms for e in batch.events)
    assert START - 200_000 < times[0] and times[-1] < START + N * 1000 // 2000 + 5_000


def test_events_keep_input_order_across_wire_formats():
    """Lateness verdicts downstream depend on arrival order, so mixing formats must not reorder."""
    import time as _time

    from operators.normalize import Normalizer
    from connectors.synthetic import generate
    from schemas.raw import RawMessage

    now = int(_time.time() * 1000)
    payloads = generate(3000, seed=4, start_ms=now - 3_600_000, rate_per_s=50.0, bad_fraction=0.0,
                        duplicate_fraction=0.0)
    messages = [RawMessage(p, "t", 0, i) for i, p in enumerate(payloads)]
    whole = Normalizer().normalize_batch(messages, now_ms=now).events
    one_by_one = [e for m in messages for e in Normalizer().normalize_batch([m], now_ms=now).events]
    assert [e.event_id for e in whole] == [e.event_id for e in one_by_one]
