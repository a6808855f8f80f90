"""Benchmark: decode + validate + normalize mixed synthetic events, against plain msgspec decode.

Both loops run over the same payloads in the same process, in batches (as the pipeline does),
keeping each batch's results alive until the batch ends, so neither side gets to recycle one
hot object. The normalizer figure counts events out (an OTLP message holds several spans);
the ratio compares wall time on the same messages: plain_time / normalize_time (1.0 = as fast
as untyped `msgspec.json.decode`, which does no validation at all). A third loop decodes each
message straight into its wire Structs and does nothing else: the ceiling for this design.

    .venv/bin/python bench/normalize.py                 # 200k messages, 5 runs, medians
    .venv/bin/python bench/normalize.py -n 500000 -r 7 --by-format
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from config.normalization import NormalizationSettings  # noqa: E402
from operators.normalize import Normalizer, detect_format  # noqa: E402
from connectors.synthetic import generate  # noqa: E402
from schemas.raw import RawMessage  # noqa: E402
from schemas.wire import BaseMessage, HubMessage, OtlpTraces  # noqa: E402

START_MS = 1_732_000_000_000


def plain_decode(batches: list[list[bytes]]) -> float:
    """Untyped msgspec.json.decode of every message, results kept per batch."""
    decode = msgspec.json.decode
    t0 = time.perf_counter()
    for batch in batches:
        out = []
        for v in batch:
            try:
                out.append(decode(v))
            except Exception:  # noqa: BLE001 - the bad inputs in the mix
                out.append(None)
        del out
    return time.perf_counter() - t0


def typed_decode(batches: list[list[tuple[msgspec.json.Decoder, bytes]]]) -> float:
    """msgspec decode straight into each message's wire Structs, nothing else: the floor any
    msgspec-based normalizer stands on (format detection done beforehand, untimed)."""
    t0 = time.perf_counter()
    for batch in batches:
        out = []
        for decoder, v in batch:
            try:
                out.append(decoder.decode(v))
            except Exception:  # noqa: BLE001
                out.append(None)
        del out
    return time.perf_counter() - t0


def normalize(normalizer: Normalizer, batches: list[list[RawMessage]], now_ms: int) -> tuple[float, int, int]:
    events = dead = 0
    t0 = time.perf_counter()
    for batch in batches:
        result = normalizer.normalize_batch(batch, now_ms=now_ms)
        events += len(result.events)
        dead += len(result.dead_letters)
        del result
    return time.perf_counter() - t0, events, dead


def measure(payloads: list[bytes], batch_size: int, runs: int, now_ms: int) -> dict[str, float]:
    normalizer = Normalizer(NormalizationSettings())
    raw_batches = [[RawMessage(v, "synthetic", 0, i + j) for j, v in enumerate(payloads[i:i + batch_size])]
                   for i in range(0, len(payloads), batch_size)]
    byte_batches = [[m.value for m in b] for b in raw_batches]
    decoders = {"hub": msgspec.json.Decoder(HubMessage), "base": msgspec.json.Decoder(BaseMessage),
                "otlp_json": msgspec.json.Decoder(OtlpTraces)}
    typed_batches = [[(decoders[f], v) for v in b if (f := detect_format(v)) in decoders] for b in byte_batches]
    norm_times, plain_times, typed_times = [], [], []
    events = dead = 0
    for _ in range(runs):
        gc.collect()
        t, events, dead = normalize(normalizer, raw_batches, now_ms)
        norm_times.append(t)
        gc.collect()
        plain_times.append(plain_decode(byte_batches))
        gc.collect()
        typed_times.append(typed_decode(typed_batches))
    tn, tp, tt = statistics.median(norm_times), statistics.median(plain_times), statistics.median(typed_times)
    return {"messages": len(payloads), "events": events, "dead_letters": dead, "norm_s": tn, "plain_s": tp,
            "events_per_s": events / tn, "norm_msgs_per_s": len(payloads) / tn,
            "plain_msgs_per_s": len(payloads) / tp, "ratio": tp / tn,
            "typed_s": tt, "typed_events_per_s": events / tt}


def report(title: str, r: dict[str, float], out: Callable[[str], None] = print) -> None:
    out(f"{title}: {r['messages']:,.0f} messages -> {r['events']:,.0f} events + {r['dead_letters']:,.0f} dead letters")
    out(f"  normalize (decode+validate+normalize): {r['events_per_s']:>11,.0f} events/s "
        f"({r['norm_msgs_per_s']:,.0f} msgs/s, median {r['norm_s'] * 1000:.0f} ms)")
    out(f"  plain msgspec.json.decode (untyped):   {r['plain_msgs_per_s']:>11,.0f} msgs/s "
        f"(median {r['plain_s'] * 1000:.0f} ms)")
    out(f"  ratio plain_time / normalize_time:     {r['ratio']:.2f}")
    out(f"  floor, typed decode only (no checks):  {r['typed_events_per_s']:>11,.0f} events/s "
        f"(median {r['typed_s'] * 1000:.0f} ms; the normalizer runs at {r['typed_s'] / r['norm_s']:.2f} of it)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=200_000)
    ap.add_argument("-r", "--runs", type=int, default=5)
    ap.add_argument("-b", "--batch-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU (Linux)")
    ap.add_argument("--by-format", action="store_true", help="also measure each wire format on its own")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    rate = 5000.0
    payloads = generate(args.messages, seed=args.seed, start_ms=START_MS, rate_per_s=rate)
    now_ms = START_MS + int(args.messages / rate * 1000) + 60_000
    print(f"python {sys.version.split()[0]}, msgspec {msgspec.__version__}, batch {args.batch_size}, "
          f"{args.runs} runs (medians), avg message {sum(map(len, payloads)) / len(payloads):.0f} B")
    report("mixed", measure(payloads, args.batch_size, args.runs, now_ms))
    if args.by_format:
        groups: dict[str, list[bytes]] = {}
        for v in payloads:
            groups.setdefault(detect_format(v) or "invalid", []).append(v)
        for fmt, vs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            if fmt != "invalid":
                report(fmt, measure(vs, args.batch_size, args.runs, now_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
