"""REFERENCE ONLY: the plain per-query NumPy loop that :func:`cmh.metrics.evaluate` is tested and benchmarked
against. Slow by design (one query at a time, float distances, stable merge sort); do not use it for results.

Same protocol as docs/metrics.md: ascending Hamming distance, ties by ascending database index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reference_metrics(
    qb: np.ndarray,
    db: np.ndarray,
    ql: np.ndarray,
    dbl: np.ndarray,
    topk: Sequence[int] = (),
    pn: Sequence[int] = (),
    ndcg_k: Sequence[int] = (),
    ranking: bool = True,
    counts: bool = True,
) -> dict[str, np.ndarray]:
    """Per-query metrics, one query at a time. Returns arrays with one row per query:
    ``ap``, ``ap@k``, ``p_at_n`` (nq, len(pn)), ``ndcg@k``, ``ap_tie`` (by explicit enumeration formula),
    ``cum``/``relcum`` (nq, K+1) retrieved/relevant within each radius, ``n_rel``."""
    qb, db = np.asarray(qb, np.float64), np.asarray(db, np.float64)
    ql, dbl = np.asarray(ql, np.float64), np.asarray(dbl, np.float64)
    nq, bits = qb.shape
    n = db.shape[0]
    out: dict[str, list] = {}
    for i in range(nq):
        d = 0.5 * (bits - db @ qb[i])
        grade = dbl @ ql[i]
        rel = grade > 0
        r = int(rel.sum())
        out.setdefault("n_rel", []).append(r)
        if ranking:
            order = np.argsort(d, kind="stable")
            rs = rel[order]
            hits = np.cumsum(rs)
            pos = np.arange(1, n + 1)
            out.setdefault("ap", []).append(float(np.sum(hits[rs] / pos[rs]) / r) if r else 0.0)
            for k in topk:
                kk = min(k, n)
                rk = hits[kk - 1]
                v = float(np.sum(hits[:kk][rs[:kk]] / pos[:kk][rs[:kk]]) / rk) if rk else 0.0
                out.setdefault(f"ap@{k}", []).append(v)
            if len(pn):
                out.setdefault("p_at_n", []).append([hits[min(m, n) - 1] / min(m, n) for m in pn])
            for k in ndcg_k:
                kk = min(k, n)
                disc = 1.0 / np.log2(np.arange(2, kk + 2))
                dcg = np.sum((2.0 ** grade[order][:kk] - 1) * disc)
                idcg = np.sum((2.0 ** np.sort(grade)[::-1][:kk] - 1) * disc)
                out.setdefault(f"ndcg@{k}", []).append(dcg / idcg if idcg > 0 else 0.0)
        if counts:
            di = d.astype(np.int64)
            hist = np.bincount(di, minlength=bits + 1)
            relh = np.bincount(di[rel], minlength=bits + 1)
            out.setdefault("cum", []).append(np.cumsum(hist))
            out.setdefault("relcum", []).append(np.cumsum(relh))
            # tie-averaged AP: expected precision over uniformly random orders inside each tie group
            ap, before, relbefore = 0.0, 0, 0
            for nd, rd in zip(hist, relh, strict=True):
                if rd:
                    j = np.arange(1, nd + 1)
                    exp_hits = relbefore + 1 + (j - 1) * ((rd - 1) / (nd - 1) if nd > 1 else 0.0)
                    ap += rd / nd * np.sum(exp_hits / (before + j))
                before += nd
                relbefore += rd
            out.setdefault("ap_tie", []).append(ap / r if r else 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def reference_map(qb: np.ndarray, db: np.ndarray, ql: np.ndarray, dbl: np.ndarray) -> float:
    """mAP@all under the stable order, per-query loop (the benchmark's baseline)."""
    return float(reference_metrics(qb, db, ql, dbl, counts=False)["ap"].mean())
