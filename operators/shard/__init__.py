"""One input shard's step per batch: normalize, dedup, event columns, windows."""
from operators.shard.columns import to_columns
from operators.shard.step import ShardState, process

__all__ = ["ShardState", "process", "to_columns"]
