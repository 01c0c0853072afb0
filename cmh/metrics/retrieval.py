"""Batched retrieval metrics for ±1 hash codes (docs/metrics.md, the project's single evaluation protocol).

Ranking: ascending Hamming distance ``d = (K - q·b) / 2``, ties broken by ascending database index (stable).
Relevance: query and item share at least one label; graded relevance (NDCG) = number of shared labels.

Metrics computed from per-distance counts only (no ordering needed): ``map_tie_avg`` (McSherry & Najork,
"Computing information retrieval performance measures efficiently in the presence of tied scores", ECIR 2008),
``pr_radius`` and ``p_r2``. The stable-order metrics (``map``, ``map@k``, ``p_at_n``, ``ndcg@k``) need no sort
either: an item's rank is the number of items closer, plus those equally close with a smaller index, plus one.

CPU path: one compiled (numba) scan per query over the bit-packed database computes all of it at once
(:mod:`cmh.metrics._kernel`), queries in parallel on ``num_threads`` threads. Other devices (and the CPU without
numba, or with the private ``_force_torch``): torch matmuls for distances and label overlaps, per-distance
``bincount`` and one ``torch.sort(stable=True)`` per query chunk. Both give the same numbers (tests: 1e-12).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from cmh.base import resolve_device
from cmh.errors import CMHError

ALL_METRICS = ("map", "map@k", "map_tie_avg", "pr_radius", "p_at_n", "p_r2", "ndcg@k")
_ORDER_METRICS = {"map", "map@k", "p_at_n", "ndcg@k"}
_COUNT_METRICS = {"map_tie_avg", "pr_radius", "p_r2"}
#: approximate bytes per (query, database item) pair held at once while a chunk is processed
_BYTES_PER_PAIR = 64


class MetricsError(CMHError, ValueError):
    """Invalid codes or labels passed to the evaluation."""


def _to_array(x: Any, name: str) -> np.ndarray:
    """A 2-D numeric numpy view/copy of ``x`` (numpy, torch on any device, nested lists)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        x = t.float() if t.dtype == torch.bfloat16 else t
        a = x.numpy()
    else:
        a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise MetricsError(
            f"{name} has an unsupported type/dtype ({type(x).__name__}, {a.dtype}); pass a numeric "
            "numpy array or torch tensor"
        )
    if a.ndim != 2:
        raise MetricsError(f"{name} must be 2-D (n, K) but has shape {tuple(a.shape)}; reshape it to (n, K)")
    return a


def _codes_np(codes: Any, name: str) -> np.ndarray:
    """Validated ±1 codes as an int8 numpy array (n, K); see :func:`check_codes`."""
    a = _to_array(codes, name)
    if a.dtype == bool:
        a = a.astype(np.int8)
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise MetricsError(
            f"{name} contains NaN; encode with cmh.base.sign_codes (sign(0) = +1) before evaluating"
        )
    if a.size and not (np.abs(a) == 1).all():
        if ((a == 0) | (a == 1)).all():
            raise MetricsError(f"{name} holds 0/1 codes; convert them to ±1 with codes * 2 - 1")
        raise MetricsError(
            f"{name} must hold only -1 and +1; binarise with cmh.base.sign_codes (sign(0) = +1)"
        )
    return a.astype(np.int8, copy=False)


def _labels_np(labels: Any, name: str) -> np.ndarray:
    """Validated 0/1 multi-hot labels as a uint8 numpy array (n, c); see :func:`check_labels`."""
    a = _to_array(labels, name)
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise MetricsError(f"{name} contains NaN; labels must be 0/1 multi-hot")
    bad = (a > 1).any() if a.dtype in (np.uint8, bool) else ((a != 0) & (a != 1)).any()
    if a.size and bool(bad):
        raise MetricsError(f"{name} must be 0/1 multi-hot (single-label data: use cmh.data.one_hot)")
    return a.astype(np.uint8, copy=False)


def check_codes(codes: Any, name: str) -> torch.Tensor:
    """Validate ±1 codes (any numeric dtype) and return them as an int8 tensor (n, K) on the CPU."""
    return torch.from_numpy(np.ascontiguousarray(_codes_np(codes, name)))


def check_labels(labels: Any, name: str) -> torch.Tensor:
    """Validate multi-hot labels (n, c) and return them as a uint8 tensor on the CPU."""
    return torch.from_numpy(np.ascontiguousarray(_labels_np(labels, name)))


def default_pn_grid(n_db: int) -> list[int]:
    """1, 50, 100, 200, ..., 1000, 2000, 5000, 10000, 20000, 50000, ... (clipped), then n_db."""
    grid = [1, 50, *range(100, 1001, 100)]
    m = 1000
    while True:
        for f in (2, 5, 10):
            if m * f < n_db:
                grid.append(m * f)
        m *= 10
        if m >= n_db:
            break
    out = sorted({n for n in grid if n <= n_db} | {n_db})
    return out


def _parse_metrics(metrics: Iterable[str] | None) -> set[str]:
    if metrics is None:
        return set(ALL_METRICS)
    out = set()
    for m in metrics:
        key = "map@k" if m.startswith("map@") else "ndcg@k" if m.startswith("ndcg") else m
        if key not in ALL_METRICS:
            from cmh.errors import did_you_mean

            raise MetricsError(
                f"unknown metric '{m}'{did_you_mean(m, ALL_METRICS)}; choose from {', '.join(ALL_METRICS)}"
            )
        out.add(key)
    return out


def _kmax(want: set[str], topk: Sequence[int], pn: Sequence[int], ndcg_k: Sequence[int]) -> int:
    return max(
        [
            *(topk if "map@k" in want else []),
            *(pn if "p_at_n" in want else []),
            *(ndcg_k if "ndcg@k" in want else []),
            1,
        ]
    )


def _topk_metrics(
    out: dict[str, np.ndarray],
    rs: torch.Tensor,
    hits: torch.Tensor,
    want: set[str],
    topk: Sequence[int],
    pn: Sequence[int],
    n: int,
    dev: torch.device,
) -> None:
    """map@k and p_at_n from the relevance of the first items of the stable order (torch path)."""
    if "map@k" in want:
        for k in topk:
            kk = min(k, n)
            num = (hits[:, :kk].double() * rs[:, :kk]).matmul(
                1.0 / torch.arange(1, kk + 1, device=dev, dtype=torch.float64)
            )
            rk = hits[:, kk - 1].double()
            out[f"ap@{k}"] = torch.where(rk > 0, num / rk.clamp(min=1), 0.0).cpu().numpy()
    if "p_at_n" in want:
        idx = torch.tensor([min(m, n) - 1 for m in pn], device=dev)
        out["p_at_n"] = (hits[:, idx].double() / (idx + 1).double()).cpu().numpy()


def _chunk_stats(
    qc: torch.Tensor,
    dbc: torch.Tensor,
    ql: torch.Tensor,
    dbl: torch.Tensor,
    bits: int,
    nclass: int,
    want: set[str],
    topk: Sequence[int],
    pn: Sequence[int],
    ndcg_k: Sequence[int],
) -> dict[str, np.ndarray]:
    """Per-query statistics of one chunk of queries with torch on any device (results as numpy on the CPU)."""
    dev = dbc.device
    b, n = qc.shape[0], dbc.shape[0]
    k1 = bits + 1
    # exact small-integer matmuls in float32 (|q·b| <= K, label overlap <= c < 2**24)
    dist = ((bits - qc.float() @ dbc.float().T) * 0.5).round_().to(torch.uint8 if bits < 256 else torch.int16)
    grade = ql.float() @ dbl.float().T
    rel = grade > 0
    n_rel = rel.sum(1, dtype=torch.int64)
    out: dict[str, np.ndarray] = {"n_rel": n_rel.cpu().numpy()}
    if want & _COUNT_METRICS:
        key = dist.long() * 2 + rel.long() + (torch.arange(b, device=dev) * (2 * k1)).unsqueeze(1)
        out["counts"] = torch.bincount(key.flatten(), minlength=b * 2 * k1).view(b, k1, 2).cpu().numpy()
        del key
    if want & _ORDER_METRICS:
        kmax = _kmax(want, topk, pn, ndcg_k)
        order = torch.sort(dist, dim=1, stable=True).indices
        if "map" not in want and kmax < n:
            order = order[:, :kmax]
        rs = torch.gather(rel, 1, order)
        hits = rs.cumsum(1, dtype=torch.int32)
        if "map" in want:
            # AP·R = sum over relevant positions p (1-based) of hits(p) / p
            num = (hits.double() * rs).matmul(1.0 / torch.arange(1, n + 1, device=dev, dtype=torch.float64))
            out["ap"] = torch.where(n_rel > 0, num / n_rel.clamp(min=1).double(), 0.0).cpu().numpy()
        top = min(kmax, n)
        _topk_metrics(out, rs[:, :top], hits[:, :top], want, topk, pn, n, dev)
        if "ndcg@k" in want:
            gi = grade.round().long()
            gs = torch.gather(gi, 1, order[:, : min(max(ndcg_k), n)]).double().cpu().numpy()
            key = gi + (torch.arange(b, device=dev) * (nclass + 1)).unsqueeze(1)
            ghist = (
                torch.bincount(key.flatten(), minlength=b * (nclass + 1)).view(b, nclass + 1).cpu().numpy()
            )
            out.update(_ndcg(gs, ghist, ndcg_k, n))
    return out


def _tie_avg_ap(hist: np.ndarray, relh: np.ndarray, n: int) -> np.ndarray:
    """(nq,) tie-averaged AP from the per-distance counts (nq, K+1) of all / relevant items among ``n``
    (:func:`cmh.metrics._kernel.tie_avg_ap`: closed forms in harmonic numbers)."""
    from cmh.metrics._kernel import tie_avg_ap

    harm = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))])
    return tie_avg_ap(np.ascontiguousarray(hist, np.int64), np.ascontiguousarray(relh, np.int64), harm)


def _ideal_dcg(ghist: np.ndarray, kmax: int) -> np.ndarray:
    """(b, kmax) cumulative ideal DCG: position p holds grade #{v >= 1 : (items with grade >= v) > p} (the grades
    sorted in decreasing order), gain 2^g - 1, discount 1/log2(p + 1); ``ghist`` (b, c+1): items per grade."""
    b = ghist.shape[0]
    disc = 1.0 / np.log2(np.arange(2, kmax + 2, dtype=np.float64))
    at_least = np.cumsum(ghist[:, ::-1], 1)[:, ::-1][:, 1:]  # (b, c): items with grade >= v, v = 1..c
    # +1 on positions [0, at_least_v) for every grade v: a difference array and one cumsum
    diff = np.zeros((b, kmax + 1))
    diff[:, 0] = at_least.shape[1]
    np.add.at(diff, (np.repeat(np.arange(b), at_least.shape[1]), np.minimum(at_least, kmax).ravel()), -1.0)
    ideal = np.cumsum(diff, 1)[:, :kmax]
    return np.cumsum((np.exp2(ideal) - 1) * disc, 1)


def _ndcg_from(dcg: np.ndarray, idcg: np.ndarray, ks: Sequence[int], n: int) -> dict[str, np.ndarray]:
    """NDCG@k from cumulative DCG and ideal DCG (b, >= min(k, n)); 0 when IDCG@k = 0 (no relevant item)."""
    out = {}
    for k in ks:
        kk = min(k, n)
        d, i = dcg[:, kk - 1], idcg[:, kk - 1]
        out[f"ndcg@{k}"] = np.where(i > 0, d / np.maximum(i, 1e-300), 0.0)
    return out


def _ndcg(g: np.ndarray, ghist: np.ndarray, ks: Sequence[int], n: int) -> dict[str, np.ndarray]:
    """NDCG@k with gain 2^g - 1 and discount 1/log2(p + 1), g = number of shared labels (torch path).

    ``g`` (b, kmax) float: grades in ranked order; ``ghist`` (b, c+1): items per grade."""
    kmax = g.shape[1]
    disc = 1.0 / np.log2(np.arange(2, kmax + 2, dtype=np.float64))
    return _ndcg_from(np.cumsum((np.exp2(g) - 1) * disc, 1), _ideal_dcg(ghist, kmax), ks, n)


def kernel_plan(
    want: set[str], topk: Sequence[int], pn: Sequence[int], ndcg_k: Sequence[int], n: int
) -> dict[str, Any]:
    """What the compiled scan computes for these metrics over ``n`` items: ``graded``, ``order``, ``need_ap``,
    the sorted ``probes`` (clipped k of map@k and n of P@n) and top widths ``tks`` / ``nks`` (clipped k of
    map@k / NDCG@k)."""

    def clipped(ks: Iterable[int], metric: str) -> np.ndarray:
        return np.array(sorted({min(int(k), n) for k in (ks if metric in want else [])}), dtype=np.int64)

    return {
        "graded": "ndcg@k" in want,
        "order": bool(want & _ORDER_METRICS),
        "need_ap": "map" in want,
        "probes": np.union1d(clipped(topk, "map@k"), clipped(pn, "p_at_n")).astype(np.int64),
        "tks": clipped(topk, "map@k"),
        "nks": clipped(ndcg_k, "ndcg@k"),
    }


def per_query_from_scan(
    raw: dict[str, np.ndarray],
    plan: dict[str, Any],
    want: set[str],
    topk: Sequence[int],
    pn: Sequence[int],
    ndcg_k: Sequence[int],
    n: int,
) -> dict[str, np.ndarray]:
    """The per-query statistics (``n_rel``, ``counts``, ``ap``, ``ap@k``, ``p_at_n``, ``ndcg@k``) from the merged
    outputs of the compiled scan (:mod:`cmh.metrics._kernel`) over a whole database of ``n`` items: the top-k
    sums ``term_at``/``gain_at``, or the merged per-rank rows ``term``/``gain`` of a sharded evaluation."""
    kern = kernel_module()
    relh = raw["relh"]
    n_rel = relh.sum(1)
    st: dict[str, np.ndarray] = {"n_rel": n_rel}
    if want & _COUNT_METRICS:
        st["counts"] = np.stack([raw["hist"] - relh, relh], axis=2)
    if "map" in want:
        num = raw["apfix"][:, 0].astype(np.float64) + raw["apfix"][:, 1] / kern.FIX_SCALE
        st["ap"] = np.where(n_rel > 0, num / np.maximum(n_rel, 1), 0.0)
    col = {int(m): c for c, m in enumerate(plan["probes"])}
    if "map@k" in want:
        tks = plan["tks"]
        sums = raw["term_at"] if "term_at" in raw else kern.prefix_at(raw["term"], tks)  # Σ over the first k
        at = {int(k): c for c, k in enumerate(tks)}
        for k in topk:
            kk = min(k, n)
            hk = raw["pcnt"][:, col[kk]]
            st[f"ap@{k}"] = np.where(hk > 0, sums[:, at[kk]] / np.maximum(hk, 1), 0.0)
    if "p_at_n" in want:
        ends = [min(m, n) for m in pn]
        st["p_at_n"] = raw["pcnt"][:, [col[m] for m in ends]] / np.array(ends, dtype=np.float64)
    if "ndcg@k" in want:
        nks = plan["nks"]
        disc = 1.0 / np.log2(np.arange(2, nks[-1] + 2, dtype=np.float64))
        dcg = raw["gain_at"] if "gain_at" in raw else kern.prefix_at(raw["gain"], nks)
        idcg = kern.ideal_dcg_at(np.ascontiguousarray(raw["ghist"]), nks, disc)
        at = {int(k): c for c, k in enumerate(nks)}
        for k in ndcg_k:
            c = at[min(k, n)]
            st[f"ndcg@{k}"] = np.where(idcg[:, c] > 0, dcg[:, c] / np.maximum(idcg[:, c], 1e-300), 0.0)
    return st


@functools.cache
def kernel_module() -> Any:
    """:mod:`cmh.metrics._kernel` (imported on first use: numba takes a moment), or None without numba — then
    the CPU scans with the torch path (same numbers, slower; the tie-averaged AP's closed form is compiled on every
    path, which is why numba is a regular dependency)."""
    try:
        from cmh.metrics import _kernel
    except ImportError:  # pragma: no cover - numba is a regular dependency
        return None
    return _kernel


@contextlib.contextmanager
def numba_threads(num_threads: int | None) -> Iterator[None]:
    """Run the compiled kernels on ``num_threads`` threads (default ``torch.get_num_threads()``), capped by the
    cores and numba's pool; restores the previous setting."""
    import numba

    want = torch.get_num_threads() if num_threads is None else int(num_threads)
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(want, os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def evaluate(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    metrics: Iterable[str] | None = None,
    topk: Sequence[int] = (50, 500, 1000),
    pn_grid: Sequence[int] | None = None,
    ndcg_k: Sequence[int] = (50, 100, 1000),
    device: str | torch.device = "auto",
    memory_budget_mb: float = 512,
    num_threads: int | None = None,
    return_per_query: bool = False,
    _force_torch: bool = False,
) -> dict[str, Any]:
    """Evaluate Hamming ranking of ±1 codes (docs/metrics.md); returns JSON-serialisable floats/lists.

    query_codes (nq, K), db_codes (ndb, K): ±1 codes (int8/float/any numeric; numpy or torch).
    query_labels (nq, c), db_labels (ndb, c): 0/1 multi-hot labels.
    On CPU, codes and labels are bit-packed and compared by popcount (numpy), query chunks run on ``num_threads``
    threads (default ``torch.get_num_threads()``); on other devices (or with the private ``_force_torch``, used by
    the tests) the same statistics come from torch matmuls. Results do not depend on chunking or threads.
    ``metrics``: subset of ``map, map@k, map_tie_avg, pr_radius, p_at_n, p_r2, ndcg@k`` (None = all).
    """
    want = _parse_metrics(metrics)
    q, db = _codes_np(query_codes, "query codes"), _codes_np(db_codes, "database codes")
    ql, dbl = _labels_np(query_labels, "query labels"), _labels_np(db_labels, "database labels")
    if q.shape[1] != db.shape[1]:
        raise MetricsError(
            f"query codes have {q.shape[1]} bits but database codes {db.shape[1]}; "
            "encode both with the same model"
        )
    if ql.shape[0] != q.shape[0]:
        raise MetricsError(
            f"query labels have {ql.shape[0]} rows but query codes {q.shape[0]}; pass matching parts"
        )
    if dbl.shape[0] != db.shape[0]:
        raise MetricsError(
            f"database labels have {dbl.shape[0]} rows but database codes {db.shape[0]}; pass matching parts"
        )
    if ql.shape[1] != dbl.shape[1]:
        raise MetricsError(
            f"query labels have {ql.shape[1]} classes but database labels {dbl.shape[1]}; "
            "use the same label vocabulary"
        )
    if q.shape[0] == 0 or db.shape[0] == 0:
        raise MetricsError("need at least one query and one database item")
    topk = sorted({int(k) for k in topk})
    ndcg_k = sorted({int(k) for k in ndcg_k})
    if any(k < 1 for k in [*topk, *ndcg_k]):
        raise MetricsError("topk and ndcg_k values must be >= 1")
    nq, n, bits = q.shape[0], db.shape[0], q.shape[1]
    pn = sorted({int(m) for m in pn_grid}) if pn_grid is not None else default_pn_grid(n)
    if any(m < 1 for m in pn):
        raise MetricsError("pn_grid values must be >= 1")
    if num_threads is not None and int(num_threads) < 1:
        raise MetricsError(f"num_threads must be >= 1, not {num_threads}")
    dev = resolve_device(device)
    chunk = max(1, int(memory_budget_mb * 2**20 // (_BYTES_PER_PAIR * n)))
    nclass = ql.shape[1]
    _kernel = kernel_module()
    if dev.type == "cpu" and not _force_torch and _kernel is not None and bits < 2**16 and nclass < 2**16:
        plan = kernel_plan(want, topk, pn, ndcg_k, n)
        with numba_threads(num_threads):
            raw = _kernel.run_scan(
                _kernel.pack_rows(q),
                _kernel.pack_rows(db),
                _kernel.pack_rows(ql),
                _kernel.pack_rows(dbl),
                bits,
                nclass,
                **plan,
            )
        st = per_query_from_scan(raw, plan, want, topk, pn, ndcg_k, n)
        return aggregate(st, want, nq, n, bits, topk, pn, ndcg_k, return_per_query)
    qt, dbt, qlt, dblt = (torch.from_numpy(np.ascontiguousarray(x)) for x in (q, db, ql, dbl))
    dbc, dbl_d = dbt.to(dev), dblt.to(dev)
    parts = [
        _chunk_stats(
            qt[s : s + chunk].to(dev),
            dbc,
            qlt[s : s + chunk].to(dev),
            dbl_d,
            bits,
            nclass,
            want,
            topk,
            pn,
            ndcg_k,
        )
        for s in range(0, nq, chunk)
    ]
    st = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return aggregate(st, want, nq, n, bits, topk, pn, ndcg_k, return_per_query)


def aggregate(
    st: dict[str, np.ndarray],
    want: set[str],
    nq: int,
    n: int,
    bits: int,
    topk: Sequence[int],
    pn: Sequence[int],
    ndcg_k: Sequence[int],
    return_per_query: bool,
) -> dict[str, Any]:
    """The result dictionary of :func:`evaluate` from per-query statistics (one row per query): ``n_rel``,
    ``counts`` (nq, K+1, 2) [non-relevant, relevant], ``ap``, ``ap@k``, ``p_at_n``, ``ndcg@k`` (those asked for)."""
    n_rel = st["n_rel"]
    res: dict[str, Any] = {
        "n_queries": nq,
        "n_database": n,
        "bits": bits,
        "n_zero_relevance": int((n_rel == 0).sum()),
    }
    if "map" in want:
        res["map"] = float(st["ap"].mean())
    if "counts" in st and want & _COUNT_METRICS:
        relh = st["counts"][:, :, 1]
        hist = st["counts"][:, :, 0] + relh  # not .sum(2): numpy reduces a length-2 last axis slowly
        cum, relcum = np.cumsum(hist, 1).astype(np.float64), np.cumsum(relh, 1).astype(np.float64)
        if "map_tie_avg" in want:
            st["ap_tie"] = _tie_avg_ap(hist, relh, n)
            res["map_tie_avg"] = float(st["ap_tie"].mean())
    if "map@k" in want:
        for k in topk:
            res[f"map@{k}"] = float(st[f"ap@{k}"].mean())
    if "p_r2" in want:
        r = min(2, bits)
        ok = cum[:, r] > 0
        res["p_r2"] = float((relcum[ok, r] / cum[ok, r]).mean()) if bool(ok.any()) else 0.0
        res["p_r2_n_empty"] = int((~ok).sum())
    if "pr_radius" in want:
        ok = cum > 0
        prec = np.where(ok, relcum / np.maximum(cum, 1), 0.0).sum(0) / np.maximum(ok.sum(0), 1)
        has = n_rel > 0
        rec = (relcum[has] / n_rel[has, None]).mean(0) if bool(has.any()) else np.zeros(bits + 1)
        res["pr_radius"] = {
            "radius": list(range(bits + 1)),
            "precision": [float(x) for x in prec],
            "recall": [float(x) for x in rec],
            "n_empty": [int(x) for x in (~ok).sum(0)],
        }
    if "p_at_n" in want:
        res["p_at_n"] = {"n": [min(m, n) for m in pn], "precision": [float(x) for x in st["p_at_n"].mean(0)]}
    if "ndcg@k" in want:
        for k in ndcg_k:
            res[f"ndcg@{k}"] = float(st[f"ndcg@{k}"].mean())
    if return_per_query:
        if "map" in want:
            res["ap_per_query"] = [float(x) for x in st["ap"]]
        if "map_tie_avg" in want:
            res["ap_tie_avg_per_query"] = [float(x) for x in st["ap_tie"]]
    return res


class RetrievalEvaluator:
    """Stateful wrapper (torchmetrics-style): ``update(query_codes, query_labels)`` accumulates query chunks
    against a fixed database; ``compute()`` evaluates them all with :func:`evaluate` (same results)."""

    def __init__(self, db_codes: Any, db_labels: Any, **options: Any) -> None:
        self.db_codes, self.db_labels, self.options = (
            check_codes(db_codes, "database codes"),
            check_labels(db_labels, "database labels"),
            options,
        )
        self._codes: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, query_codes: Any, query_labels: Any) -> None:
        self._codes.append(check_codes(query_codes, "query codes").cpu())
        self._labels.append(check_labels(query_labels, "query labels").cpu())

    def reset(self) -> None:
        self._codes, self._labels = [], []

    def compute(self) -> dict[str, Any]:
        if not self._codes:
            raise MetricsError("no queries: call update() before compute()")
        return evaluate(
            torch.cat(self._codes), self.db_codes, torch.cat(self._labels), self.db_labels, **self.options
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
