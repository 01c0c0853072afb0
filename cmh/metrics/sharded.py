"""Evaluation of a database split over shards (streamed one at a time) or over ``torch.distributed`` ranks.

The result equals :func:`cmh.metrics.evaluate` on the concatenated database *exactly* (bit for bit), for every
metric. The stable order ranks items by (distance, global index); shard ``s`` holds a contiguous range of global
indices, shards in index order. Two passes over the shards:

1. **counts** — per query and distance, the items and relevant items of each shard (and the per-grade counts for
   NDCG); summed, they give every count metric (``map_tie_avg``, ``pr_radius``, ``p_r2``) and the offsets below.
2. **ranks** — a relevant item of shard ``s`` at distance ``d`` has global rank = items closer in all shards +
   items at ``d`` in earlier shards + items at ``d`` before it in its own shard + 1 (the same for the hits among
   relevant items), so the compiled scan (:mod:`cmh.metrics._kernel`) runs on each shard with these per-distance
   offsets and returns outputs that add up over shards with exact arithmetic: integer counts, the AP sums in fixed
   point, and the top-k terms of map@k / NDCG@k stored by global rank (disjoint cells). The merged top lists are
   thus ordered by (distance, global index), as in one process.

Shards may be ±1 codes (n, K) or rows packed as on disk, ``np.packbits(codes > 0, axis=1)`` (n, ceil(K/8)) uint8.
Only one shard is in memory at a time when the shard source loads lazily (its ``__iter__`` reads each file as it
goes); the source is iterated twice, so it must be re-iterable (a list, or an object whose ``__iter__`` reopens the
files), not a generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmh.metrics.retrieval import (
    MetricsError,
    _codes_np,
    _labels_np,
    _parse_metrics,
    aggregate,
    default_pn_grid,
    kernel_module,
    kernel_plan,
    numba_threads,
    per_query_from_scan,
)

#: a shard: (codes, labels); labels None = the matching rows of ``db_labels``
Shard = tuple[Any, Any]


def _packed_codes(codes: Any, bits: int, name: str) -> np.ndarray:
    """Packed uint64 words of ±1 codes (n, K) or of packbits rows (n, ceil(K/8)) uint8 (padding bits checked)."""
    kern = kernel_module()
    a = np.asarray(codes)
    nbytes = -(-bits // 8)
    if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] == nbytes and a.shape[1] != bits:
        if bits % 8 and a.shape[0] and (a[:, -1] & ((1 << (8 - bits % 8)) - 1)).any():
            raise MetricsError(
                f"{name}: packed rows have bits set past bit {bits}; pack with np.packbits(codes > 0, axis=1)"
            )
        return kern.pack_rows(np.ascontiguousarray(a), bits=bits)
    c = _codes_np(codes, name)
    if c.shape[1] != bits:
        raise MetricsError(
            f"{name} have {c.shape[1]} bits but the queries {bits}; encode both with the same model "
            f"(packed rows must be (n, {nbytes}) uint8)"
        )
    return kern.pack_rows(c)


@dataclass
class ShardedEvaluation:
    """The two passes of a sharded evaluation for one query set; :func:`evaluate_sharded` and
    :func:`evaluate_distributed` drive it. ``query_codes`` ±1 (nq, K), or packed uint8 rows with ``bits``."""

    query_codes: Any
    query_labels: Any
    metrics: Iterable[str] | None = None
    topk: Sequence[int] = (50, 500, 1000)
    pn_grid: Sequence[int] | None = None
    ndcg_k: Sequence[int] = (50, 100, 1000)
    bits: int | None = None
    db_labels: Any = None
    num_threads: int | None = None
    return_per_query: bool = False
    progress: Callable[[str], Any] | None = None
    n: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if kernel_module() is None:
            raise MetricsError("sharded evaluation needs numba; install it with pip install numba")
        self.want = _parse_metrics(self.metrics)
        if self.bits is None:
            self.bits = _codes_np(self.query_codes, "query codes").shape[1]
        self.qc = _packed_codes(self.query_codes, self.bits, "query codes")
        ql = _labels_np(self.query_labels, "query labels")
        if ql.shape[0] != self.qc.shape[0]:
            raise MetricsError(
                f"query labels have {ql.shape[0]} rows but query codes {self.qc.shape[0]}; pass matching parts"
            )
        if self.qc.shape[0] == 0:
            raise MetricsError("need at least one query")
        self.nclass = ql.shape[1]
        self.qlp = kernel_module().pack_rows(ql)
        self.topk = sorted({int(k) for k in self.topk})
        self.ndcg_k = sorted({int(k) for k in self.ndcg_k})
        if any(k < 1 for k in [*self.topk, *self.ndcg_k]):
            raise MetricsError("topk and ndcg_k values must be >= 1")
        if self.db_labels is not None:
            self.db_labels = _labels_np(self.db_labels, "database labels")

    def _shards(self, shards: Iterable[Shard]) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
        """(global start, packed codes, packed labels) of each shard, validated, in order."""
        if iter(shards) is shards:
            raise MetricsError(
                "shards must be re-iterable (a list, or an object whose __iter__ reopens the files): "
                "the evaluation reads them twice, a generator only once"
            )
        start = 0
        for s, shard in enumerate(shards):
            try:
                codes, labels = shard
            except (TypeError, ValueError):
                raise MetricsError(f"shard {s} must be a (codes, labels) pair") from None
            dbc = _packed_codes(codes, self.bits, f"shard {s} codes")
            if labels is None:
                if self.db_labels is None:
                    raise MetricsError(f"shard {s} has no labels; pass db_labels for the whole database")
                labels = self.db_labels[start : start + dbc.shape[0]]
            lab = _labels_np(labels, f"shard {s} labels")
            if lab.shape[0] != dbc.shape[0] or lab.shape[1] != self.nclass:
                raise MetricsError(
                    f"shard {s} labels have shape {lab.shape} but need ({dbc.shape[0]}, {self.nclass}) "
                    "(one row per code, the queries' classes)"
                )
            if self.progress is not None:
                self.progress(f"shard {s}")
            yield start, dbc, kernel_module().pack_rows(lab)
            start += dbc.shape[0]

    def count_pass(self, shards: Iterable[Shard]) -> dict[str, np.ndarray]:
        """Pass 1 over some shards: summed ``hist``, ``relh`` (nq, K+1), ``ghist`` and ``n`` (items)."""
        graded = "ndcg@k" in self.want
        tot: dict[str, np.ndarray] = {}
        n = 0
        empty = np.zeros(0, np.int64)
        with numba_threads(self.num_threads):
            for _, dbc, dblp in self._shards(shards):
                raw = kernel_module().run_scan(
                    self.qc, dbc, self.qlp, dblp, self.bits, self.nclass,
                    graded=graded, order=False, probes=empty, tks=empty, nks=empty,
                )  # fmt: skip
                for key in ("hist", "relh", "ghist"):
                    tot[key] = tot[key] + raw[key] if key in tot else raw[key]
                n += dbc.shape[0]
        if not tot:
            nq, k1 = self.qc.shape[0], self.bits + 1
            tot = {"hist": np.zeros((nq, k1), np.int64), "relh": np.zeros((nq, k1), np.int64)}
            tot["ghist"] = np.zeros((nq, self.nclass + 1 if graded else 0), np.int64)
        tot["n"] = np.array(n)
        return tot

    def plan(self, n_total: int) -> dict[str, Any]:
        """Fix the database size (after the counts of every shard): P@n grid, probes, top widths."""
        if n_total < 1:
            raise MetricsError("need at least one database item (the shards are empty)")
        self.n = n_total
        self.pn = (
            sorted({int(m) for m in self.pn_grid}) if self.pn_grid is not None else default_pn_grid(n_total)
        )
        if any(m < 1 for m in self.pn):
            raise MetricsError("pn_grid values must be >= 1")
        self._plan = kernel_plan(self.want, self.topk, self.pn, self.ndcg_k, n_total)
        return self._plan

    def rank_pass(
        self, shards: Iterable[Shard], start_all: np.ndarray, start_rel: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Pass 2 over consecutive shards whose first one starts after ``start_all``/``start_rel`` (nq, K+1): the
        items / relevant items at smaller distances anywhere plus those at the same distance in earlier shards.
        Returns the summed ``apfix``, ``pcnt``, ``term``, ``gain`` (additive over any split)."""
        plan = self._plan
        run_all, run_rel = start_all.copy(), start_rel.copy()
        out: dict[str, np.ndarray] = {}
        with numba_threads(self.num_threads):
            for _, dbc, dblp in self._shards(shards):
                raw = kernel_module().run_scan(
                    self.qc, dbc, self.qlp, dblp, self.bits, self.nclass, offsets=(run_all, run_rel), dense=True,
                    **plan,
                )  # fmt: skip
                run_all += raw["hist"]
                run_rel += raw["relh"]
                for key in ("apfix", "pcnt", "term", "gain"):
                    out[key] = out[key] + raw[key] if key in out else raw[key]
                out["apfix"] = kernel_module().normalise_fixed(out["apfix"])
        if not out:
            nq = self.qc.shape[0]
            out = {
                "apfix": np.zeros((nq, 2), np.int64),
                "pcnt": np.zeros((nq, plan["probes"].size), np.int64),
                "term": np.zeros((nq, plan["tks"][-1] if plan["tks"].size else 0)),
                "gain": np.zeros((nq, plan["nks"][-1] if plan["nks"].size else 0)),
            }
        return out

    def result(self, counts: dict[str, np.ndarray], ranks: dict[str, np.ndarray] | None) -> dict[str, Any]:
        """The :func:`cmh.metrics.evaluate` dictionary from the merged counts and rank sums."""
        raw = {**counts, **(ranks or {})}
        if "apfix" in raw:
            raw["apfix"] = kernel_module().normalise_fixed(raw["apfix"])
        st = per_query_from_scan(raw, self._plan, self.want, self.topk, self.pn, self.ndcg_k, self.n)
        nq = self.qc.shape[0]
        return aggregate(
            st, self.want, nq, self.n, self.bits, self.topk, self.pn, self.ndcg_k, self.return_per_query
        )


def before(counts: np.ndarray) -> np.ndarray:
    """Per query, the counts at distances smaller than each distance (exclusive cumulative sum over axis 1)."""
    return np.cumsum(counts, 1) - counts


def evaluate_sharded(
    query_codes: Any,
    query_labels: Any,
    shards: Iterable[Shard],
    **options: Any,
) -> dict[str, Any]:
    """Evaluate queries against a database given as consecutive shards; equals :func:`cmh.metrics.evaluate` on
    the concatenated database exactly (every key, bit for bit).

    ``shards``: re-iterable of ``(codes, labels)`` in global index order; codes ±1 (n, K) or packed uint8
    (n, ceil(K/8)) from ``np.packbits(codes > 0, axis=1)``; labels (n, c) 0/1, or None with ``db_labels=`` (the
    whole database's labels). ``options``: ``metrics``, ``topk``, ``pn_grid``, ``ndcg_k``, ``num_threads``,
    ``return_per_query`` as for :func:`evaluate`; ``bits`` when the query codes are packed; ``progress``: a callable
    told about each shard read. Two passes read every shard twice, one shard in memory at a time."""
    ev = ShardedEvaluation(query_codes, query_labels, **options)
    counts = ev.count_pass(shards)
    plan = ev.plan(int(counts["n"]))
    ranks = ev.rank_pass(shards, before(counts["hist"]), before(counts["relh"])) if plan["order"] else None
    return ev.result(counts, ranks)


def evaluate_distributed(
    query_codes: Any,
    query_labels: Any,
    local_shards: Iterable[Shard],
    *,
    group: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`evaluate_sharded` over the ranks of an initialised ``torch.distributed`` process group: every rank
    passes the same queries and its own consecutive shards (rank r's items follow rank r-1's in the global index
    order); every rank returns the same result, equal to one process on the whole database. Collectives: one
    all-gather of the per-distance counts (nq × (K+1) per rank) and one all-reduce of the rank sums (gloo on
    CPU; with NCCL the buffers go through the current CUDA device)."""
    import torch
    import torch.distributed as dist

    ev = ShardedEvaluation(query_codes, query_labels, **options)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else None
    rank, world = dist.get_rank(group), dist.get_world_size(group)

    def to_t(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(dev) if dev is not None else t

    local = ev.count_pass(local_shards)
    stacked = to_t(np.stack([local["hist"], local["relh"]]))
    gathered = [torch.empty_like(stacked) for _ in range(world)]
    dist.all_gather(gathered, stacked, group=group)
    per_rank = np.stack([g.cpu().numpy() for g in gathered])  # (world, 2, nq, K+1)
    n_t = to_t(np.array([int(local["n"])], np.int64))
    dist.all_reduce(n_t, group=group)
    counts = {"hist": per_rank[:, 0].sum(0), "relh": per_rank[:, 1].sum(0), "n": np.array(int(n_t.item()))}
    counts["ghist"] = local["ghist"]
    if local["ghist"].size:
        gh = to_t(local["ghist"])
        dist.all_reduce(gh, group=group)
        counts["ghist"] = gh.cpu().numpy()
    plan = ev.plan(int(counts["n"]))
    ranks = None
    if plan["order"]:
        start_all = before(counts["hist"]) + per_rank[:rank, 0].sum(0)
        start_rel = before(counts["relh"]) + per_rank[:rank, 1].sum(0)
        mine = ev.rank_pass(local_shards, start_all, start_rel)
        ranks = {}
        for key, arr in mine.items():
            t = to_t(arr)
            dist.all_reduce(t, group=group)  # integers, or disjoint float cells: exact in any order
            ranks[key] = t.cpu().numpy()
    return ev.result(counts, ranks)


__all__ = ["ShardedEvaluation", "evaluate_distributed", "evaluate_sharded"]
