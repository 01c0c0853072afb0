"""pytest-benchmark timings of cmh.metrics.evaluate vs the per-query NumPy reference (small sizes by default).

``CMH_BENCH_EVAL_SIZE`` picks a size from :data:`cmh.bench.eval.SIZES` (default ``tiny``); the full comparison with
ratios and memory is ``cmh bench eval``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cmh.bench.eval import GROUPS, SIZES, make_data
from cmh.metrics import evaluate
from cmh.metrics.reference import reference_metrics

SIZE = os.environ.get("CMH_BENCH_EVAL_SIZE", "tiny")


@pytest.fixture(scope="module")
def data():
    nq, n, classes = SIZES[SIZE]
    return make_data(nq, n, classes, 64, 0)


@pytest.mark.parametrize("group", list(GROUPS))
def test_bench_evaluate(benchmark, data, group):
    res = benchmark(evaluate, *data, metrics=GROUPS[group])
    assert res["n_queries"] == data[0].shape[0]


def test_bench_reference(benchmark, data):
    q, db, ql, dbl = data
    n = min(100, q.shape[0])
    ref = benchmark(reference_metrics, q[:n], db, ql[:n], dbl, counts=False)
    fast = evaluate(q[:n], db, ql[:n], dbl, metrics=["map"], return_per_query=True)
    np.testing.assert_allclose(fast["ap_per_query"], ref["ap"], atol=1e-9)
