"""The local ingest spool: where `hub serve` puts accepted messages when no Kafka is configured
(the embedded laptop setup), and where `hub run --ingest` reads them from (connectors/spool_source.py).

Why a spool and not a direct hand-off to the running flow: the embedded store belongs to the
`hub run` process, and an HTTP answer must mean "durable" even when no `hub run` is running, or
it is killed right after. An append-only log of fsynced segment files gives that with no
service, and the reader resumes from an offset kept in the flow's recovery snapshot, as for Kafka.

Layout of DIR (default `<store dir>.spool`):
- `<start offset, 20 digits>.seg`: segments. An offset is a position in the spool's one byte
  stream; a segment holds the bytes from its start offset on. A fresh spool starts at the wall
  clock in microseconds, so a flow snapshot that points into an older, deleted spool at that path
  never skips records of a new one.
- a record is `<u32 length><u32 crc32>` + a msgpack SpoolRecord. A crashed writer can leave a
  torn last record; the next writer cuts it off (under the lock) before it appends, and readers
  never pass a record whose length or checksum does not match.
- `.lock`: fcntl lock held while appending, so `hub serve` processes and threads can share DIR.
- `consumed`: the offset the reader's last durable snapshot covers, for the writer's backpressure.
"""
from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import msgspec

from config.settings import ClickHouseSettings, SpoolSettings
from connectors.clickhouse import chdb_path, is_embedded
from connectors.ingest_errors import Backpressure, DeliveryFailed, Record

SUFFIX = ".seg"
LOCK = ".lock"
CONSUMED = "consumed"
HEADER = struct.Struct("<II")


class SpoolRecord(msgspec.Struct, array_like=True, gc=False):
    """One accepted message: what it would have been on Kafka (value, source topic, and the time
    it was accepted, which stands in for the broker timestamp the flow judges event times by)."""

    topic: str
    timestamp_ms: int
    value: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(SpoolRecord).decode


def spool_dir(spool: SpoolSettings, store: ClickHouseSettings) -> Path | None:
    """The configured dir, else `<store dir>.spool` beside an embedded store; None for a server store."""
    if spool.dir:
        return Path(spool.dir).expanduser().resolve()
    if is_embedded(store.dsn):
        return Path(chdb_path(store.dsn) + ".spool")
    return None


def frame(record: SpoolRecord) -> bytes:
    payload = _encode(record)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def segments(directory: Path) -> list[tuple[int, Path]]:
    """(start offset, path) of every segment, oldest first; none when DIR does not exist."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(n[:-len(SUFFIX)]), directory / n) for n in names if n.endswith(SUFFIX) and n[:-len(SUFFIX)].isdigit()]
    return sorted(found)


def segment_path(directory: Path, start: int) -> Path:
    return directory / f"{start:020d}{SUFFIX}"


def read_record(f: BinaryIO) -> tuple[SpoolRecord, int] | None:
    """The next whole, intact record at the file's position and its framed length; None (position
    unchanged) when the bytes there are not one yet (being written, or torn)."""
    start = f.tell()
    head = f.read(HEADER.size)
    if len(head) == HEADER.size:
        length, crc = HEADER.unpack(head)
        payload = f.read(length)
        if len(payload) == length and zlib.crc32(payload) == crc:
            try:
                return _decode(payload), HEADER.size + length
            except msgspec.DecodeError:
                pass
    f.seek(start)
    return None


def valid_end(path: Path, start: int = 0) -> int:
    """Where the intact records of a segment end, reading from `start` (a record boundary)."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while (got := read_record(f)) is not None:
            pos += got[1]
    return pos


def read_consumed(directory: Path) -> int | None:
    try:
        return int((directory / CONSUMED).read_text().strip())
    except (OSError, ValueError):
        return None


def write_consumed(directory: Path, offset: int) -> None:
    """Atomically (rename); not fsynced: it only paces writers, a stale value errs on the safe side."""
    tmp = directory / f"{CONSUMED}.tmp"
    tmp.write_text(str(offset))
    os.replace(tmp, directory / CONSUMED)


def pending_bytes(directory: Path) -> int:
    """Bytes accepted but not yet covered by the reader's snapshot."""
    segs = segments(directory)
    if not segs:
        return 0
    start, last = segs[-1]
    try:
        end = start + last.stat().st_size
    except FileNotFoundError:
        return 0
    consumed = read_consumed(directory)
    return max(0, end - max(segs[0][0], consumed if consumed is not None else 0))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolWriter:
    """Appends each request's records as one write, fsynced before the request is answered.

    `send` has the IngestProducer's shape (a future per request; Backpressure raised at once), so
    the HTTP routes do not care where records go. Appends run on one thread: they are serialized
    by the lock anyway, and the event loop never waits for a disk."""

    def __init__(self, directory: Path, segment_bytes: int, max_pending_bytes: int) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.max_pending_bytes = max_pending_bytes
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hub-spool")
        self._lock = threading.Lock()
        # (segment, end of its intact records) after this writer's last append: when the file
        # still has that size nobody wrote since, and its tail needs no check.
        self._known: tuple[Path, int] | None = None

    def send(self, records: list[Record]) -> Future[None]:
        """Append the records; the future completes once they are on disk (fsynced)."""
        if not records:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        try:
            pending = pending_bytes(self.dir)
        except OSError:
            pending = 0  # the append reports what is wrong with DIR
        if pending > self.max_pending_bytes:
            raise Backpressure(f"{pending:,} bytes wait in the spool {self.dir} for `hub run --ingest` "
                               f"(limit [spool] max_pending_bytes = {self.max_pending_bytes:,})")
        return self._executor.submit(self.append, records)

    def append(self, records: list[Record]) -> None:
        now_ms = int(time.time() * 1000)
        data = b"".join(frame(SpoolRecord(topic, now_ms, value)) for topic, _key, value in records)
        with self._lock:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                lock = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    self._append_locked(data)
                finally:
                    os.close(lock)  # releases the flock
            except OSError as exc:
                self._known = None
                raise DeliveryFailed(f"cannot write the spool {self.dir}: {exc.strerror or exc}") from None

    def _append_locked(self, data: bytes) -> None:
        path, size = self._tail()
        if size and size + len(data) > self.segment_bytes:
            path, size = segment_path(self.dir, self._start(path) + size), 0
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if created:
                _fsync_dir(self.dir)  # the new file's name is durable before anything in it is acknowledged
            try:
                os.lseek(fd, size, os.SEEK_SET)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half record for readers to wait on
                raise
        finally:
            os.close(fd)
        self._known = (path, size + len(data))

    @staticmethod
    def _start(path: Path) -> int:
        return int(path.name[:-len(SUFFIX)])

    def _tail(self) -> tuple[Path, int]:
        """The newest segment and where its intact records end, a torn tail cut off."""
        segs = segments(self.dir)
        if not segs:
            return segment_path(self.dir, time.time_ns() // 1000), 0
        path = segs[-1][1]
        size = path.stat().st_size
        if self._known is not None and self._known == (path, size):
            return path, size
        known = self._known[1] if self._known is not None and self._known[0] == path and self._known[1] <= size else 0
        end = valid_end(path, known)
        if end < size:
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        return path, end

    def close(self) -> None:
        self._executor.shutdown(wait=True)
