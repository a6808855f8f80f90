"""The Kafka producer behind HTTP ingest (`hub serve`): a request is acknowledged only once every
record it produced is acknowledged by the broker (acks=all, idempotent producer), and a full
producer turns into an answer the client can act on (retry later) instead of a growing buffer.

One producer per `hub serve`, polled on its own thread; `send` returns a future that completes
when the broker has acknowledged all of a request's records, or fails with the reason.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.errors import HubError
from connectors.ingest_errors import Backpressure, DeliveryFailed, Record, TooLarge

__all__ = ["Backpressure", "DeliveryFailed", "IngestProducer", "Record", "TooLarge"]


class IngestProducer:
    def __init__(self, conf: dict[str, str], delivery_timeout_s: float, max_in_flight: int, max_message_bytes: int) -> None:
        self.max_in_flight = max_in_flight
        self.producer = Producer({
            **conf,
            "acks": "all",
            "enable.idempotence": True,  # a retried produce is not written twice
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "message.max.bytes": max_message_bytes + 64 * 1024,  # room for the record's own headers
            "linger.ms": 5,
            "compression.type": "lz4",
        })
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="hub-ingest-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)  # runs the delivery callbacks

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def send(self, records: list[Record]) -> Future[None]:
        """Produce the records; the future completes once the broker acknowledged all of them."""
        done: Future[None] = Future()
        n = len(records)
        if n == 0:
            done.set_result(None)
            return done
        with self._lock:
            if self._in_flight + n > self.max_in_flight:
                raise Backpressure(f"{self._in_flight:,} records are waiting for the broker already")
            self._in_flight += n
        state = {"left": n, "error": None}

        def finish(count: int, error: HubError | None) -> None:
            with self._lock:
                self._in_flight -= count
                state["left"] -= count
                if error is not None and state["error"] is None:
                    state["error"] = error
                last = state["left"] == 0
            if last:
                if state["error"] is None:
                    done.set_result(None)
                else:
                    done.set_exception(state["error"])

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            finish(1, None if err is None else _delivery_error(err))

        for i, (topic, key, value) in enumerate(records):
            try:
                self.producer.produce(topic, value, key, on_delivery=delivered)
            except BufferError:
                finish(n - i, Backpressure("the producer's queue is full"))
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                finish(n - i, _delivery_error(err) if err is not None else DeliveryFailed(str(exc)))
                break
        return done

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to timeout_s), then let librdkafka go: it only stops
        connecting when the Producer object is destroyed."""
        self.producer.flush(timeout_s)
        self._stop.set()
        self._poller.join(5)
        self.producer = None  # type: ignore[assignment]


def _delivery_error(err: KafkaError) -> HubError:
    if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return TooLarge(f"Kafka refused a record as too large ({err.str()})")
    return DeliveryFailed(f"Kafka did not take the records: {err.str()}")
