"""Top-k metrics (``map@k``, ``p_at_n`` for n <= max k) from faiss ``IndexBinaryFlat`` result lists.

An optional backend (``pip install "cmh[faiss]"``; ``cmh eval --topk-backend faiss``) for users who already run faiss
(Johnson, Douze & Jégou, "Billion-scale similarity search with GPUs", IEEE TBD 2019). faiss's exhaustive binary
search returns the k nearest items ordered by (Hamming distance, index) — cmh's stable order — so the numbers equal
:func:`cmh.metrics.evaluate`'s (the tests check it on tie-heavy data). Metrics that need the whole ranking or all
per-distance counts (``map``, ``map_tie_avg``, ``pr_radius``, ``p_r2``, ``ndcg@k``'s ideal list) are not computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmh.metrics.retrieval import MetricsError, _codes_np, _labels_np


def faiss_module() -> Any:
    """The ``faiss`` module, or a one-line :class:`MetricsError` naming the extra to install."""
    try:
        import faiss
    except ImportError:
        raise MetricsError(
            'the faiss backend needs faiss; install it with pip install "cmh[faiss]"'
        ) from None
    return faiss


def faiss_topk(
    query_codes: Any, db_codes: Any, k: int, num_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (nq, min(k, n)), of faiss ``IndexBinaryFlat`` on ±1 codes (K a multiple of 8)."""
    faiss = faiss_module()
    q, db = _codes_np(query_codes, "query codes"), _codes_np(db_codes, "database codes")
    bits = q.shape[1]
    if bits % 8 or db.shape[1] != bits:
        raise MetricsError(
            f"faiss binary indexes need the same bit count on both sides, a multiple of 8 (got {bits} and "
            f"{db.shape[1]}); use the exact backend"
        )
    if num_threads is not None:
        faiss.omp_set_num_threads(int(num_threads))
    index = faiss.IndexBinaryFlat(bits)
    index.add(np.packbits(db > 0, axis=1))
    dist, idx = index.search(np.packbits(q > 0, axis=1), min(int(k), db.shape[0]))
    return dist, idx


def evaluate_topk_faiss(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    topk: Sequence[int] = (50, 500, 1000),
    pn_grid: Sequence[int] | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """``map@k`` for every k in ``topk`` and ``p_at_n`` for the n in ``pn_grid`` up to max k (default 1, 50, 100, 200,
    ..., max k), from one faiss search of max k neighbours; same keys and values as :func:`cmh.metrics.evaluate`."""
    from cmh.metrics._kernel import pack_rows

    ql, dbl = _labels_np(query_labels, "query labels"), _labels_np(db_labels, "database labels")
    topk = sorted({int(k) for k in topk})
    if not topk or topk[0] < 1:
        raise MetricsError("topk values must be >= 1")
    _, idx = faiss_topk(query_codes, db_codes, topk[-1], num_threads)
    nq, n = idx.shape[0], dbl.shape[0]
    if ql.shape[0] != nq or ql.shape[1] != dbl.shape[1] or dbl.shape[0] != _codes_np(db_codes, "db").shape[0]:
        raise MetricsError("labels must have one row per code and the same classes on both sides")
    qlp, dblp = pack_rows(ql), pack_rows(dbl)
    rel = (np.bitwise_and(dblp[idx], qlp[:, None, :]) != 0).any(2)  # (nq, kmax) relevance in ranked order
    hits = np.cumsum(rel, 1)
    prec_at = np.where(rel, hits / np.arange(1, idx.shape[1] + 1), 0.0)
    res: dict[str, Any] = {"n_queries": nq, "n_database": n, "bits": int(np.asarray(query_codes).shape[1])}
    for k in topk:
        kk = min(k, n)
        rk = hits[:, kk - 1]
        res[f"map@{k}"] = float(np.where(rk > 0, prec_at[:, :kk].sum(1) / np.maximum(rk, 1), 0.0).mean())
    grid = [1, 50, *range(100, 1001, 100)] if pn_grid is None else [int(m) for m in pn_grid]
    ends = sorted({min(m, n) for m in grid if m <= topk[-1]})
    res["p_at_n"] = {"n": ends, "precision": [float((hits[:, m - 1] / m).mean()) for m in ends]}
    return res


__all__ = ["evaluate_topk_faiss", "faiss_topk"]
