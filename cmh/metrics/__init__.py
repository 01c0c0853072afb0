"""Retrieval metrics for ±1 hash codes (docs/metrics.md): :func:`evaluate` and :class:`RetrievalEvaluator`."""

from cmh.metrics import retrieval
from cmh.metrics.retrieval import *  # noqa: F403 - the public names, listed once in retrieval.__all__

__all__ = list(retrieval.__all__)
