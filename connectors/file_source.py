"""Inputs for the embedded default: JSON-lines files (or stdin) and the synthetic generator."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import shutdown
from schemas.items import RawBatch
from connectors.synthetic import generate_messages
from schemas.raw import RawMessage


class _LinesPartition(StatefulSourcePartition[RawBatch, int]):
    """Reads `batch_size` lines per item; resume state is the byte position of the next line."""

    def __init__(self, path: str, batch_size: int, resume: int | None) -> None:
        self.name = "stdin" if path == "-" else Path(path).name
        self.shard = f"file:{self.name}"
        self.stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        self.line = 0
        if resume and path != "-":
            self.stream.seek(resume[0])
            self.line = resume[1]
        self.batch_size = batch_size
        self.done = False

    def next_batch(self) -> Iterable[RawBatch]:
        if self.done:
            raise StopIteration
        if shutdown.requested.is_set():
            self.done = True
            return [RawBatch(self.shard, [], final=True)]
        messages = []
        for raw in self.stream:
            self.line += 1
            line = raw.strip()
            if line:
                messages.append(RawMessage(value=line, topic=self.name, partition=0, offset=self.line))
            if len(messages) >= self.batch_size:
                return [RawBatch(self.shard, messages)]
        self.done = True
        return [RawBatch(self.shard, messages, final=True)]

    def snapshot(self):
        pos = self.stream.tell() if self.stream is not sys.stdin.buffer else 0
        return (pos, self.line)

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()


class FileSource(FixedPartitionedSource[RawBatch, tuple]):
    def __init__(self, path: str, batch_size: int) -> None:
        self.path = path
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [self.path]

    def build_part(self, step_id: str, for_part: str, resume_state):
        return _LinesPartition(for_part, self.batch_size, resume_state)


class _SyntheticPartition(StatefulSourcePartition[RawBatch, tuple[int, int]]):
    """Bounded (`total` events as fast as possible, event times spread at `rate`) or live
    (`total=None`: one second of traffic per chunk, paced to the wall clock, until stopped).

    Chunks hold a fixed number of events, not messages (an OTLP batch holds several), so a
    bounded run stores exactly `total` events. Resume state: (next chunk, next message offset)."""

    def __init__(self, total: int | None, batch_size: int, seed: int, start_ms: int, rate: float,
                 resume: tuple[int, int] | int | None):
        self.total, self.seed, self.start_ms, self.rate = total, seed, start_ms, rate
        self.chunk_size = batch_size if total is not None else max(1, int(rate))
        if isinstance(resume, int):  # a snapshot from before offsets were kept: offsets restart
            resume = (resume, 0)
        self.chunk, self.offset = resume or (0, 0)
        self.stopped = False

    def _chunk_start_ms(self) -> int:
        return self.start_ms + int(self.chunk * self.chunk_size / self.rate * 1000)

    def next_awake(self) -> datetime | None:
        if self.total is not None:
            return None
        return datetime.fromtimestamp(self._chunk_start_ms() / 1000 + self.chunk_size / self.rate, tz=timezone.utc)

    def next_batch(self) -> Iterable[RawBatch]:
        produced = self.chunk * self.chunk_size
        if self.stopped or (self.total is not None and produced >= self.total):
            raise StopIteration
        if shutdown.requested.is_set():
            self.stopped = True
            return [RawBatch("synthetic", [], final=True)]
        start = self._chunk_start_ms()
        n = self.chunk_size if self.total is None else min(self.chunk_size, self.total - produced)
        if self.total is None and start + n / self.rate * 1000 > time.time() * 1000:
            return []  # live mode: this second of traffic has not happened yet
        # Each chunk is generated from its own seed and start time, so a resumed run regenerates
        # exactly what a crash-free run would have.
        generated = generate_messages(n, seed=self.seed * 1_000_003 + self.chunk, start_ms=start, rate_per_s=self.rate)
        messages = [RawMessage(value=m.value, topic="synthetic", partition=0, offset=self.offset + i)
                    for i, m in enumerate(generated)]
        self.chunk += 1
        self.offset += len(messages)
        final = self.total is not None and produced + n >= self.total
        return [RawBatch("synthetic", messages, final=final)]

    def snapshot(self) -> tuple[int, int]:
        return (self.chunk, self.offset)


class SyntheticSource(FixedPartitionedSource[RawBatch, tuple[int, int]]):
    """Realistic multi-model LLM traffic; `total=None` runs until interrupted."""

    def __init__(self, total: int | None, batch_size: int, seed: int, start_ms: int, rate_per_s: float) -> None:
        self.args = (total, batch_size, seed, start_ms, rate_per_s)

    def list_parts(self) -> list[str]:
        return ["synthetic"]

    def build_part(self, step_id: str, for_part: str, resume_state: tuple[int, int] | int | None):
        return _SyntheticPartition(*self.args, resume_state)
