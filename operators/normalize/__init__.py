"""Raw messages in any accepted wire format -> typed events, or dead letters with a reason."""
from operators.normalize.normalizer import (
    GENAI_ATTRIBUTES,
    REASON_CODES,
    NormalizedBatch,
    Normalizer,
    detect_format,
    epoch_to_ms,
    parse_unit,
    reason_code,
)

__all__ = ["GENAI_ATTRIBUTES", "REASON_CODES", "NormalizedBatch", "Normalizer", "detect_format", "epoch_to_ms",
           "parse_unit", "reason_code"]
