"""Test helpers: both tasks' mAP of a fitted method, and the mAP of random codes (the chance level).

Both use :func:`cmh.metrics.reference.reference_map`, the plain per-query loop, so that method tests do not
depend on the optimised harness they are not testing.
"""

from __future__ import annotations

import numpy as np

from cmh.metrics.reference import reference_map


def task_maps(method, dataset) -> tuple[float, float]:
    """(I→T, T→I) mAP@all of a fitted ``method``: query part against database part, per view."""
    q, db = dataset.part("query"), dataset.part("database")
    i2t = reference_map(method.encode_image(q.image), method.encode_text(db.text), q.labels, db.labels)
    t2i = reference_map(method.encode_text(q.text), method.encode_image(db.image), q.labels, db.labels)
    return i2t, t2i


def random_codes_map(dataset, bits: int, seed: int = 0) -> float:
    """mAP@all of uniformly random ±1 codes of ``bits`` bits on the query/database parts."""
    q, db = dataset.part("query"), dataset.part("database")
    rng = np.random.default_rng(seed)
    qb = np.where(rng.random((len(q), bits)) < 0.5, -1, 1).astype(np.int8)
    dbb = np.where(rng.random((len(db), bits)) < 0.5, -1, 1).astype(np.int8)
    return reference_map(qb, dbb, q.labels, db.labels)
