"""Why an ingest request could not be taken, shared by every place `hub serve` puts accepted
messages (Kafka topics, the local spool), so the HTTP answers map from one set of types."""
from __future__ import annotations

from config.errors import HubError

# (topic, key, value): one accepted message and the source topic it belongs to.
Record = tuple[str, bytes | None, bytes]


class Backpressure(HubError):
    """Too much is waiting already: the client should retry later (429)."""


class DeliveryFailed(HubError):
    """The records were not made durable (broker down or refusing, spool not writable): retry later (503)."""


class TooLarge(HubError):
    """A record is larger than the destination accepts (413)."""
