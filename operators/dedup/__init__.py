"""Duplicate events (same event id within the dedup window) dropped, per shard."""
from operators.dedup.deduplicator import Deduplicator

__all__ = ["Deduplicator"]
