"""``cmh bench eval``: speed and peak memory of :func:`cmh.metrics.evaluate` against the per-query NumPy loop.

Random ±1 codes and multi-hot labels at the papers' sizes (queries × database, label count):
MIRFLICKR-25K 2,000 × 18,015 (24), MS-COCO 5,000 × 80,000 (80), NUS-WIDE 2,100 × 188,321 (21). Both sides run in the
same process, one after the other, so machine load affects them alike (still: on a shared machine the numbers are
noisy; repeat and read the ratios). The reference (``cmh.metrics.reference``: one query at a time, float distances,
stable ``argsort``, precision at the hits) may run on the first ``--ref-queries`` queries only; its time is then
scaled linearly to all queries and the table says so. mAP of the evaluated queries must agree to 1e-9.
``evaluate`` runs with ``--threads`` threads on CPU (default ``torch.get_num_threads()``); the reference loop is
single-threaded NumPy (its small BLAS calls may use more threads).

Groups: ``order`` = map, map@k, p_at_n (need the full stable order); ``counts`` = map_tie_avg, pr_radius, p_r2
(per-distance counts only); ``all`` = every metric including NDCG@k. Ratios are reference time / group time.
Peak memory: in a fresh ``python -c`` child, the peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the call) minus the resident set before ``evaluate`` on all metrics (the data
already in memory) — i.e. the extra resident memory the evaluation needed, including torch/numpy buffers that
``tracemalloc`` would not see. Linux only (the column shows "—" elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmh.bench._report import write_report

HELP = "evaluation speed (all metrics, by group) and peak memory vs the per-query NumPy reference loop"

SIZES: dict[str, tuple[int, int, int]] = {
    "mirflickr": (2_000, 18_015, 24),
    "coco": (5_000, 80_000, 80),
    "nus": (2_100, 188_321, 21),
    "tiny": (200, 2_000, 10),
}
GROUPS: dict[str, list[str] | None] = {
    "order": ["map", "map@k", "p_at_n"],
    "counts": ["map_tie_avg", "pr_radius", "p_r2"],
    "all": None,
}
TARGETS = {"order": 10.0, "counts": 30.0, "all": None}
MEMORY_TARGET_MIB = 2048


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="mirflickr,coco,nus", help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="interleaved repeats of the reference and every group (best of each is reported)",
    )
    p.add_argument(
        "--ref-queries",
        default="300",
        help="queries the reference loop runs on ('all' or a number; time scaled to all queries)",
    )
    p.add_argument("--memory-budget-mb", type=float, default=512)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="evaluate()'s num_threads (default: torch.get_num_threads()); 1 = single-threaded",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")


def make_data(nq: int, n: int, classes: int, bits: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random ±1 int8 codes and multi-hot labels (about 3 labels per item; no empty label rows)."""
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), size=(nq, bits))
    db = rng.choice(np.array([-1, 1], np.int8), size=(n, bits))
    density = min(0.5, 3.0 / classes)
    ql = (rng.random((nq, classes)) < density).astype(np.uint8)
    dbl = (rng.random((n, classes)) < density).astype(np.uint8)
    ql[np.arange(nq), rng.integers(0, classes, nq)] = 1
    dbl[np.arange(n), rng.integers(0, classes, n)] = 1
    return q, db, ql, dbl


_MEMORY_SCRIPT = """
import json, sys
from cmh.bench._report import PeakRSS, status_kib
from cmh.bench.eval import make_data
from cmh.metrics import evaluate
nq, n, classes, bits, seed, device, budget = json.loads(sys.argv[1])
data = make_data(nq, n, classes, bits, seed)
evaluate(data[0][:1], data[1][:10], data[2][:1], data[3][:10], device=device)  # imports, thread pools
with PeakRSS() as peak:
    evaluate(*data, device=device, memory_budget_mb=budget)
print(json.dumps([peak.mib, status_kib("VmHWM") / 1024]))
"""


def peak_memory_mib(
    nq: int, n: int, classes: int, bits: int, seed: int, device: str, budget: float
) -> tuple[float, float]:
    """(peak extra MiB during evaluate, process peak MiB) of a fresh ``python -c`` child (Linux ``/proc``): the
    peak-RSS counter is reset just before the call (``/proc/self/clear_refs``), so extra = VmHWM - VmRSS before.
    (``ru_maxrss`` is not used: a child started from a big parent inherits the parent's high-water mark.)"""
    cmd = [sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([nq, n, classes, bits, seed, device, budget])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    extra, total = json.loads(out.stdout.strip().splitlines()[-1])
    return extra, total


def _best(f: Any, repeat: int) -> tuple[float, Any]:
    best, res = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res = f()
        best = min(best, time.perf_counter() - t0)
    return best, res


def bench_size(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from cmh.metrics import evaluate
    from cmh.metrics.reference import reference_metrics

    nq, n, classes = SIZES[name]
    q, db, ql, dbl = make_data(nq, n, classes, args.bits, args.seed)
    n_ref = nq if args.ref_queries == "all" else min(nq, int(args.ref_queries))
    # interleaved repeats (reference, then each group), best of each: load changes hit both sides alike
    times: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(max(1, args.repeat)):
        t, ref = _best(lambda: reference_metrics(q[:n_ref], db, ql[:n_ref], dbl, counts=False), 1)
        times["ref"] = min(times.get("ref", float("inf")), t)
        for group, metrics in GROUPS.items():
            t, results[group] = _best(
                lambda m=metrics: evaluate(
                    q,
                    db,
                    ql,
                    dbl,
                    metrics=m,
                    device=args.device,
                    memory_budget_mb=args.memory_budget_mb,
                    num_threads=args.threads,
                    return_per_query=True,
                ),
                1,
            )
            times[group] = min(times.get(group, float("inf")), t)
    t_ref_all = times["ref"] * nq / n_ref
    row: dict[str, Any] = {
        "size": name,
        "queries": nq,
        "database": n,
        "classes": classes,
        "bits": args.bits,
        "ref_queries": n_ref,
        "ref_s": t_ref_all,
        "ref_extrapolated": n_ref < nq,
        "map_max_abs_diff": 0.0,
    }
    for group in GROUPS:
        row[f"{group}_s"] = times[group]
        row[f"{group}_ratio"] = t_ref_all / times[group]
        res = results[group]
        if "ap_per_query" in res:
            diff = np.max(np.abs(np.asarray(res["ap_per_query"][:n_ref]) - ref["ap"]))
            row["map_max_abs_diff"] = max(row["map_max_abs_diff"], float(diff))
    row["map_identical"] = row["map_max_abs_diff"] < 1e-9
    if not args.no_memory and Path("/proc/self/clear_refs").exists():
        row["extra_mib"], row["process_mib"] = peak_memory_mib(
            nq, n, classes, args.bits, args.seed, args.device, args.memory_budget_mb
        )
    return row


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.errors import CMHError

    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in names if s not in SIZES]
    if bad:
        raise CMHError(f"unknown size(s) {', '.join(bad)}; choose from {', '.join(SIZES)}")
    if args.threads is not None and args.threads < 1:
        raise CMHError(f"--threads must be >= 1, not {args.threads}")
    if args.ref_queries != "all" and not args.ref_queries.isdigit():
        raise CMHError(f"--ref-queries must be 'all' or a positive number, not {args.ref_queries!r}")
    console = Console()
    import torch

    threads = torch.get_num_threads() if args.threads is None else args.threads
    console.print(
        f"CPU cores: {os.cpu_count()}, evaluate threads: {threads}, device: {args.device}; "
        f"{args.bits} bits, random codes/labels (seed {args.seed})"
    )
    rows = []
    for name in names:
        rows.append(bench_size(name, args))
        console.print(f"  {name}: done")

    def ok(v: float, target: float | None) -> str:
        if target is None:
            return f"{v:.1f}×"
        return f"[green]{v:.1f}×[/green]" if v >= target else f"[red]{v:.1f}× (<{target:.0f}×)[/red]"

    table = Table(title="cmh bench eval — evaluate() vs per-query NumPy reference (same run)")
    for col in (
        "size",
        "q × db",
        "reference s",
        "order s",
        "ratio",
        "counts s",
        "ratio",
        "all s",
        "ratio",
        "mAP same",
        "extra MiB",
    ):
        table.add_column(col, justify="left" if col == "size" else "right")
    for r in rows:
        ref = f"{r['ref_s']:.2f}" + (f" (from {r['ref_queries']} q)" if r["ref_extrapolated"] else "")
        mem = (
            "—"
            if "extra_mib" not in r
            else (
                f"{r['extra_mib']:.0f}"
                if r["extra_mib"] <= MEMORY_TARGET_MIB
                else f"[red]{r['extra_mib']:.0f}[/red]"
            )
        )
        table.add_row(
            r["size"],
            f"{r['queries']:,} × {r['database']:,}",
            ref,
            f"{r['order_s']:.2f}",
            ok(r["order_ratio"], TARGETS["order"]),
            f"{r['counts_s']:.2f}",
            ok(r["counts_ratio"], TARGETS["counts"]),
            f"{r['all_s']:.2f}",
            ok(r["all_ratio"], None),
            "yes" if r["map_identical"] else f"[red]no ({r['map_max_abs_diff']:.1e})[/red]",
            mem,
        )
    console.print(table)
    console.print(
        "order = map, map@k, p_at_n; counts = map_tie_avg, pr_radius, p_r2; all = every metric incl. "
        "NDCG@k. Reference = per-query loop computing mAP (distance, stable argsort, precision at hits)"
        + (
            "; its time is scaled from the first queries where marked"
            if any(r["ref_extrapolated"] for r in rows)
            else ""
        )
        + ". extra MiB = peak RSS growth (VmHWM) of a fresh child process during evaluate(all metrics); process peak in the JSON. "
        "Targets: order ≥10×, counts ≥30×, ≤2048 MiB."
    )
    if args.json:
        write_report(args.json, args, results=rows)
    return 0 if all(r["map_identical"] for r in rows) else 1
