"""The ingest spool (connectors/spool.py) as a flow input: `hub run --ingest`.

One Bytewax partition per spool; items are batches of messages as from Kafka (value, source
topic, the acceptance time as timestamp, the spool offset as offset), so the flow cannot tell
them apart. The resume state is the offset of the next record, kept in the recovery snapshot.
A segment is deleted once the snapshot before the latest one covers all of it: by then the
results of everything read from it are durable (the same one-snapshot lag as Kafka's commits).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import shutdown
from connectors import worker_metrics as metrics
from connectors.spool import pending_bytes, read_record, segments, valid_end, write_consumed
from schemas.items import RawBatch
from schemas.raw import RawMessage

SHARD = "spool"
IDLE_TICK_S = 1.0
# How soon an empty spool is looked at again: new records reach the flow within this.
POLL_S = 0.05


class _SpoolPartition(StatefulSourcePartition[RawBatch, int | None]):
    def __init__(self, directory: Path, resume: int | None, batch_size: int, stop_at_end: bool) -> None:
        self.dir = directory
        self.batch_size = batch_size
        self.position = resume
        self.file: BinaryIO | None = None
        self.seg_start = 0
        self.end: int | None = None
        if stop_at_end:
            segs = segments(directory)
            self.end = segs[-1][0] + valid_end(segs[-1][1]) if segs else -1
        self.covered: int | None = None
        self.last_data = time.monotonic()
        self.last_tick = self.last_data
        self.waiting = False
        self.finished = False

    def _open(self) -> bool:
        """Open the segment holding `position` (or the oldest one, when it points before it)."""
        segs = segments(self.dir)
        if not segs:
            return False
        if self.position is None or self.position < segs[0][0]:
            self.position = segs[0][0]
        start, path = [s for s in segs if s[0] <= self.position][-1]
        try:
            self.file = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return False
        self.seg_start = start
        self.file.seek(self.position - start)
        return True

    def _next_segment(self) -> bool:
        """At the end of the open segment's intact records: go on to the next segment when there is
        one (then the open one is complete; what was appended before the switch is read first)."""
        assert self.file is not None
        if not any(s > self.seg_start for s, _ in segments(self.dir)):
            return False
        at = self.file.tell()
        if read_record(self.file) is not None:
            self.file.seek(at)
            return True
        self.file.close()
        self.file = None
        nxt = min(s for s, _ in segments(self.dir) if s > self.seg_start)
        self.position = nxt
        return self._open()

    def _read(self) -> list[RawMessage]:
        messages: list[RawMessage] = []
        if self.file is None and not self._open():
            return messages
        assert self.file is not None and self.position is not None
        while len(messages) < self.batch_size and (self.end is None or self.position < self.end):
            got = read_record(self.file)
            if got is None:
                if not self._next_segment():
                    break
                continue
            record, size = got
            messages.append(RawMessage(record.value, record.topic, 0, self.position, record.timestamp_ms))
            self.position += size
        return messages

    def next_batch(self) -> Iterable[RawBatch]:
        if self.finished or shutdown.requested.is_set():
            # As for Kafka: open windows stay open, in the recovery snapshot.
            raise StopIteration
        messages = self._read()
        now = time.monotonic()
        at_end = self.end is not None and (self.position is None or self.position >= self.end)
        self.waiting = not messages
        if messages or at_end:
            self.last_data = now
            self.finished = at_end
            return [RawBatch(SHARD, messages, final=at_end)]
        if self.end is None and now - self.last_tick >= IDLE_TICK_S:
            # Lets the window step close windows by the wall clock while nothing arrives.
            self.last_tick = now
            return [RawBatch(SHARD, [], idle_ms=int((now - self.last_data) * 1000))]
        return []

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + timedelta(seconds=POLL_S) if self.waiting else None

    def snapshot(self) -> int | None:
        if self.covered is not None:
            self._release(self.covered)
        self.covered = self.position
        return self.position

    def _release(self, offset: int) -> None:
        """Delete the segments wholly before `offset` (never the newest: writers append to it)."""
        segs = segments(self.dir)
        for (_, path), (next_start, _) in zip(segs, segs[1:]):
            if next_start <= offset:
                path.unlink(missing_ok=True)
        try:
            write_consumed(self.dir, offset)
        except OSError:
            pass  # it only paces writers; the next snapshot writes it again

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class SpoolSource(FixedPartitionedSource[RawBatch, int | None]):
    """What `hub serve` accepted without Kafka; tails it (or stops at its end seen at start)."""

    def __init__(self, directory: Path, batch_size: int, stop_at_end: bool) -> None:
        self.dir = directory
        self.batch_size = batch_size
        self.stop_at_end = stop_at_end

    def list_parts(self) -> list[str]:
        return [SHARD]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _SpoolPartition:
        directory = self.dir
        metrics.SPOOL_PENDING_BYTES.set_function(lambda: _pending_or_zero(directory))
        return _SpoolPartition(directory, resume_state, self.batch_size, self.stop_at_end)


def _pending_or_zero(directory: Path) -> int:
    """A scrape must not fail on a spool directory someone removed."""
    try:
        return pending_bytes(directory)
    except OSError:
        return 0
