"""Registry state (every asset's history by event time) and enrichment of metric rows, anomalies
and incidents with their assets; the flow step that also builds compliance reports and feeds."""
from operators.registry.book import AssetBook
from operators.registry.extract import governance_batch
from operators.registry.step import RegistryState, RegistrySteps

__all__ = ["AssetBook", "RegistryState", "RegistrySteps", "governance_batch"]
