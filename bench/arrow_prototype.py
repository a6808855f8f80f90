"""Prototype of a design change (issue 18), measured and not adopted: the flow thread's per-batch
work on base-format `telemetry.request` messages done column-wise, against the hub's path.

Why: the hub's flow thread spends ~18-22 us per event in Python (decode into typed structs,
normalization checks, event columns, Arrow conversion, window fold); the plain floor of
bench/peers.py does far less. Here a batch is decoded by Arrow's C++ JSON reader against an
explicit schema, then dedup, a type and bounds check, pricing, the window fold and the events
table are done on columns. Same messages, same CPU-time clock, one after the other:

    python bench/arrow_prototype.py [EVENTS]      # default 200,000

What the prototype does not do that the hub's path does, and an adopted version must (falling
back to the Python path for any batch the column checks refuse): every field's bounds and
limits, lenient fixes and unit strings, free-form metadata into tags, severity rules, the
normalized payload JSON (the raw message is stored instead), per-message dead letters with
reasons, OTLP and hub envelopes, signals for the correlator.
"""
import io
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.json as pj  # noqa: E402

import peers  # noqa: E402
from config.settings import load_config  # noqa: E402
from connectors.clickhouse_sink import event_table  # noqa: E402
from flows.pipeline import shard_steps  # noqa: E402
from operators.shard import ShardState, process  # noqa: E402
from operators.windows.aggregator import MetricValues, WindowAggregator  # noqa: E402
from schemas.items import RawBatch  # noqa: E402
from schemas.raw import RawMessage  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
B = 5000
now = int(time.time() * 1000)
vals = [v for chunk in peers.messages(N, "base", 18, now - 3_600_000) for _, v, _ in chunk]

DATA = pa.struct([("model", pa.string()), ("provider", pa.string()), ("operation", pa.string()),
                  ("latencyMs", pa.float64()), ("inputTokens", pa.int64()), ("outputTokens", pa.int64()),
                  ("totalTokens", pa.int64()), ("isError", pa.bool_()), ("finishReason", pa.string()),
                  ("errorType", pa.string())])
SCHEMA = pa.schema([("eventId", pa.string()), ("eventType", pa.string()), ("source", pa.string()),
                    ("timestamp", pa.timestamp("ms", tz="UTC")), ("version", pa.string()), ("data", DATA),
                    ("metadata", pa.struct([("team", pa.string()), ("region", pa.string()), ("environment", pa.string())]))])
PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
# $ per token (input and output alike here: the prototype measures the work, not the price table).
PRICE_IN = {"gpt-4o": 2.5e-6, "gpt-4o-mini": 1.5e-7, "claude-3-5-sonnet-20241022": 3e-6,
            "claude-3-5-haiku-20241022": 8e-7, "gemini-1.5-pro": 1.25e-6}


def arrow_batch(values: list[bytes], agg: WindowAggregator, seen: set) -> pa.Table:
    t = pj.read_json(io.BytesIO(b"\n".join(values)), parse_options=PARSE,
                     read_options=pj.ReadOptions(use_threads=False, block_size=1 << 24))
    data, md = t.column("data").combine_chunks(), t.column("metadata").combine_chunks()
    ids = t.column("eventId").to_pylist()
    keep = np.fromiter((i not in seen and not seen.add(i) for i in ids), dtype=bool, count=len(ids))  # dedup
    # checks the Python path makes per event, column-wise: type, bounds
    assert pc.all(pc.equal(t.column("eventType"), "telemetry.request")).as_py()
    lat = data.field("latencyMs").to_numpy(zero_copy_only=False)
    assert not (lat < 0).any()
    times = t.column("timestamp").cast(pa.int64()).to_numpy()
    model, team = data.field("model"), md.field("team")
    dims = list(zip(model.to_pylist(), [""] * len(ids), team.to_pylist()))
    ins = data.field("inputTokens").to_numpy(zero_copy_only=False).astype(np.float64)
    outs = data.field("outputTokens").to_numpy(zero_copy_only=False).astype(np.float64)
    price = pc.index_in(model, pa.array(list(PRICE_IN))).to_numpy(zero_copy_only=False)
    cost = (ins + outs) * np.array(list(PRICE_IN.values()))[price.astype(int)]
    err = data.field("isError").to_numpy(zero_copy_only=False).astype(np.float64)
    agg.add(times[keep], [d for d, k in zip(dims, keep) if k],
            [MetricValues(n, v[keep]) for n, v in (("latency_ms", lat), ("input_tokens", ins), ("output_tokens", outs),
                                                   ("cost_usd", cost), ("errors", err), ("requests", np.ones(len(ids))))])
    agg.close_ready()
    return pa.table({"event_id": t.column("eventId"), "event_time": t.column("timestamp"), "source": t.column("source"),
                     "model": model, "provider": data.field("provider"), "team": team, "region": md.field("region"),
                     "environment": md.field("environment"), "latency_ms": data.field("latencyMs"),
                     "input_tokens": data.field("inputTokens"), "output_tokens": data.field("outputTokens"),
                     "cost_usd": pa.array(cost), "is_error": data.field("isError"),
                     "payload": pa.array(values, pa.binary())}).filter(pa.array(keep))


def python_batch(msgs: list[RawMessage], state: ShardState, steps) -> pa.Table:
    out = process(state, RawBatch("telemetry-0", msgs), steps, now_ms=now)
    return event_table(out.event_columns)


steps = shard_steps(load_config())
pa.array([""])  # pyarrow's one-off pandas import, outside the timings
res = {"python": [], "arrow": []}
for rep in range(3):
    state = ShardState(600_000, 1_000_000, 60_000)
    msgs = [RawMessage(v, "llm.telemetry", 0, i, now) for i, v in enumerate(vals)]
    t = time.thread_time()
    for i in range(0, N, B):
        python_batch(msgs[i:i + B], state, steps)
    res["python"].append(N / (time.thread_time() - t))
    agg, seen = WindowAggregator(60_000), set()
    t = time.thread_time()
    for i in range(0, N, B):
        arrow_batch(vals[i:i + B], agg, seen)
    res["arrow"].append(N / (time.thread_time() - t))
for k, v in res.items():
    print(f"{k:7s} {statistics.median(v):>10,.0f} events/s per CPU-second   runs {[round(x) for x in v]}")
print(f"arrow / python: {statistics.median(res['arrow']) / statistics.median(res['python']):.1f}x")
