"""Retrieval metrics for ±1 hash codes (DESIGN §3): :func:`evaluate` and :class:`RetrievalEvaluator`."""

from cmh.metrics.retrieval import (
    ALL_METRICS,
    MetricsError,
    RetrievalEvaluator,
    check_codes,
    check_labels,
    default_pn_grid,
    evaluate,
)

__all__ = [
    "ALL_METRICS",
    "MetricsError",
    "RetrievalEvaluator",
    "check_codes",
    "check_labels",
    "default_pn_grid",
    "evaluate",
]
