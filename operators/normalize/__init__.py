"""Raw messages in any accepted wire format -> typed events, or dead letters with a reason.

`Normalizer` (normalizer) is the entry point. Its rules live one concept per module: formats
(telling wire formats apart), reasons (dead-letter codes and sentences), values (times,
units, counts, versions), sources (source aliases, per-source settings), checks (per-payload
rules), lenient (field mappings and lenient fixes), otlp (OTLP spans), otlp_metrics (OTLP
metrics and logs), batch (one call's state
and result). The names below are the package's API; the rest is internal to it.
"""
from operators.normalize.batch import NormalizedBatch
from operators.normalize.formats import detect_format
from operators.normalize.normalizer import Normalizer
from operators.normalize.otlp import GENAI_ATTRIBUTES
from operators.normalize.reasons import REASON_CODES, explain, reason_code
from operators.normalize.sources import SOURCE_ALIASES
from operators.normalize.values import epoch_to_ms, parse_unit

__all__ = ["GENAI_ATTRIBUTES", "REASON_CODES", "SOURCE_ALIASES", "NormalizedBatch", "Normalizer", "detect_format",
           "epoch_to_ms", "explain", "parse_unit", "reason_code"]
