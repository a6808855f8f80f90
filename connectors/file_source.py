"""Bounded inputs for the embedded default: JSON-lines files (or stdin) and the synthetic generator."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from operators.shard import RawBatch
from operators.synthetic import generate
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


class _SyntheticPartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(self, total: int | None, batch_size: int, seed: int, start_ms: int, rate: float, resume: int | None):
        self.total, self.batch_size, self.seed, self.start_ms, self.rate = total, batch_size, seed, start_ms, rate
        self.chunk = resume or 0

    def next_batch(self) -> Iterable[RawBatch]:
        produced = self.chunk * self.batch_size
        if self.total is not None and produced >= self.total:
            raise StopIteration
        n = self.batch_size if self.total is None else min(self.batch_size, self.total - produced)
        # Each chunk is generated from its own seed and start time, so a resumed run regenerates
        # exactly what a crash-free run would have.
        start = self.start_ms + int(produced / self.rate * 1000)
        payloads = generate(n, seed=self.seed * 1_000_003 + self.chunk, start_ms=start, rate_per_s=self.rate)
        messages = [RawMessage(value=p, topic="synthetic", partition=0, offset=produced + i) for i, p in enumerate(payloads)]
        self.chunk += 1
        final = self.total is not None and produced + n >= self.total
        return [RawBatch("synthetic", messages, final=final)]

    def snapshot(self) -> int:
        return self.chunk


class SyntheticSource(FixedPartitionedSource[RawBatch, int]):
    """Realistic multi-model LLM traffic; `total=None` runs until interrupted."""

    def __init__(self, total: int | None, batch_size: int, seed: int, start_ms: int, rate_per_s: float) -> None:
        self.args = (total, batch_size, seed, start_ms, rate_per_s)

    def list_parts(self) -> list[str]:
        return ["synthetic"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        return _SyntheticPartition(*self.args, resume_state)
