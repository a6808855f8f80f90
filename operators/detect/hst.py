"""`HSTMember`: the optional river HalfSpaceTrees voter of a `RobustDetector` (settings.use_hst).

river is imported when a member is made, so runs that leave it off never load it."""
from __future__ import annotations


class HSTMember:
    """Optional ensemble member: river's HalfSpaceTrees on min-max scaled (level, change)."""

    def __init__(self, window: int, seed: int) -> None:
        from river import anomaly, compose, preprocessing

        self.model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=max(window, 32), seed=seed),
        )

    def step(self, level: float, change: float) -> float:
        """Score (level, change) 0..1 against what was seen so far, then learn it."""
        x = {"y": level, "d": change}
        s = self.model.score_one(x)
        self.model.learn_one(x)
        return s
