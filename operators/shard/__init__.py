"""One input shard's step per batch: normalize, dedup, event columns, windows."""
from operators.shard.columns import BILLED, ColumnRules, to_columns
from operators.shard.step import ShardState, ShardSteps, process

__all__ = ["BILLED", "ColumnRules", "ShardState", "ShardSteps", "process", "to_columns"]
