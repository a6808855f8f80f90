"""One normalize_batch call: the state its messages are judged against and what it produced."""
from __future__ import annotations

import bisect

import msgspec

from operators.normalize.reasons import INTERNAL_ERROR, MALFORMED_JSON, explain
from schemas.events import Event
from schemas.metrics import MetricPoint
from schemas.raw import DeadLetter, RawMessage, Skipped


class NormalizedBatch(msgspec.Struct):
    """What one batch became: events, dead letters and counts for metrics.

    >>> b = NormalizedBatch([], [], dead_letter_counts={"malformed_json": 1})
    >>> len(b.events), b.dead_letter_counts, b.skipped_spans
    (0, {'malformed_json': 1}, 0)
    """

    events: list[Event]
    dead_letters: list[DeadLetter]
    warnings: int = 0
    dead_letter_counts: dict[str, int] = {}
    warning_counts: dict[str, int] = {}
    # Inputs that are not ours to count, per reason (OTLP spans that are not LLM calls): with
    # events and dead letters they account for every input.
    skipped: list[Skipped] = []
    # Index of the first event each message produced, in message order: where an event came from.
    starts: list[int] = []
    # OTLP metric data points (GenAI client histograms) for the shard step to fold into windows.
    metric_points: list[MetricPoint] = []

    @property
    def skipped_spans(self) -> int:
        return sum(s.count for s in self.skipped)

    def message_of(self, event_index: int) -> int:
        """Index (in the batch) of the message an event came from.

        >>> NormalizedBatch([], [], starts=[0, 0, 1, 3]).message_of(2)
        2
        """
        return bisect.bisect_right(self.starts, event_index) - 1


class Batch:
    """Mutable state of one normalize_batch call; it also builds the call's dead letters.

    `hints` maps input topics to source modules, naming the source of dead letters whose bytes
    say nothing.
    """

    __slots__ = ("now", "hints", "max_age", "max_future", "ref", "lo", "hi", "events", "dead", "warnings",
                 "dl_counts", "warn_counts", "skipped", "starts", "points")

    def __init__(self, now: int, hints: dict[str, str], max_age: int, max_future: int) -> None:
        self.now = now
        self.hints = hints
        self.max_age, self.max_future = max_age, max_future
        # The plausible event-time range [lo, hi] is judged against `ref`: the current message's
        # broker timestamp, else the wall clock.
        self.ref = self.lo = self.hi = 0
        self.events: list[Event] = []
        self.dead: list[DeadLetter] = []
        self.warnings = 0
        self.dl_counts: dict[str, int] = {}
        self.warn_counts: dict[str, int] = {}
        self.skipped: list[Skipped] = []
        self.starts: list[int] = []
        self.points: list[MetricPoint] = []

    def result(self) -> NormalizedBatch:
        """What the call hands back once every message is accounted for."""
        return NormalizedBatch(self.events, self.dead, self.warnings, self.dl_counts, self.warn_counts, self.skipped,
                               self.starts, self.points)

    def skip(self, m: RawMessage, reason: str, count: int) -> None:
        """`count` inputs of message m that are not ours (not errors): counted, not stored."""
        self.skipped.append(Skipped(m.topic, m.partition, m.offset, reason, count, self.now))

    def hint(self, m: RawMessage) -> str:
        """The source module m's topic is pinned to, else ""."""
        return self.hints.get(m.topic, "")

    def warn(self, code: str) -> None:
        self.warnings += 1
        self.warn_counts[code] = self.warn_counts.get(code, 0) + 1

    def reject(self, m: RawMessage, code: str, field: str, reason: str, source: str = "", event_id: str = "",
               raw: bytes | None = None) -> None:
        self.dl_counts[code] = self.dl_counts.get(code, 0) + 1
        self.dead.append(DeadLetter(
            raw=m.value if raw is None else raw, reason=reason, code=code, field=field, topic=m.topic,
            partition=m.partition, offset=m.offset, source=source, event_id=event_id, ingest_time_ms=self.now,
        ))

    def reject_undecodable(self, m: RawMessage, exc: Exception) -> None:
        """A message whose bytes are not JSON (or not UTF-8) at all."""
        if isinstance(exc, UnicodeDecodeError):
            self.reject(m, MALFORMED_JSON, "", f"message is not valid UTF-8 (bad byte at position {exc.start})",
                        self.hint(m))
        elif isinstance(exc, msgspec.DecodeError):
            self.reject(m, MALFORMED_JSON, "", f"message is not valid JSON: {exc}", self.hint(m))
        else:
            code, field, reason = explain(str(exc), "json")
            self.reject(m, code, field, reason, self.hint(m))

    def internal_error(self, m: RawMessage, exc: Exception) -> None:
        """A bug met while handling m: still a dead letter, so the flow goes on."""
        try:
            self.reject(m, INTERNAL_ERROR, "", f"normalizer bug while handling this message: {exc!r}"[:500],
                        self.hint(m))
        except Exception:  # noqa: BLE001 - not even a dead letter could be built (value is not bytes)
            self.dl_counts[INTERNAL_ERROR] = self.dl_counts.get(INTERNAL_ERROR, 0) + 1
