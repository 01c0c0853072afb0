"""``cmh bench eval --stages``: where the compiled scan's time goes, stage by stage, as ratios to the floor.

For each size of ``--sizes`` and thread count of ``--threads``, on the packed random data of ``cmh bench eval``,
:func:`cmh.metrics._kernel.run_scan` runs with more and more of the work switched on — ``counts`` (per-distance
histograms only), ``records`` (the ordered scan that writes each relevant item's record, no metric), ``map``
(+ the AP loop), ``map+topk`` (+ the top-k outputs of map@k and P@n), ``full`` (+ NDCG's grades: every metric) —
timed in interleaved rounds with the two floor kernels (best of ``--repeat``), so each stage's ratio to the floor
is its cumulative cost. The differences between neighbouring columns are what each stage adds.
"""

from __future__ import annotations

import argparse
from typing import Any

from cmh.bench._report import write_report

STAGES = ("counts", "records", "map", "map+topk", "full")


def stage_plans(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run_scan keyword sets of :data:`STAGES`, cut down from the full set's ``plan`` (kernel_plan)."""
    none = plan["probes"][:0]
    bare = dict(plan, graded=False, need_ap=False, probes=none, tks=none, nks=none)
    return {
        "counts": dict(bare, order=False),
        "records": bare,
        "map": dict(bare, need_ap=True),
        "map+topk": dict(plan, graded=False, nks=none),
        "full": plan,
    }


def stage_rows(name: str, args: argparse.Namespace, threads: list[int]) -> list[dict[str, Any]]:
    """One row per thread count: the floor's seconds and every stage's seconds and ratio to it."""
    from cmh.bench.eval import SIZES, best_interleaved, floor_columns, floor_of, load, make_data
    from cmh.metrics import _kernel
    from cmh.metrics.retrieval import ALL_METRICS, default_pn_grid, kernel_plan, numba_threads

    nq, n, classes = SIZES[name]
    packed = [_kernel.pack_rows(x) for x in make_data(nq, n, classes, args.bits, args.seed)]
    plan = kernel_plan(set(ALL_METRICS), (50, 500, 1000), default_pn_grid(n), (50, 100, 1000), n)
    columns = {
        **floor_columns(packed, args.bits),
        **{
            stage: (lambda kw=kw: _kernel.run_scan(*packed, args.bits, classes, **kw))
            for stage, kw in stage_plans(plan).items()
        },
    }
    rows = []
    for t in threads:
        before = load()
        with numba_threads(t):
            best = best_interleaved(columns, args.repeat)
        floor = floor_of(best)[0]
        row: dict[str, Any] = {"size": name, "threads": t, "floor_s": floor, "load": f"{before} → {load()}"}
        for stage in STAGES:
            row[f"{stage}_s"] = best[stage][0]
            row[f"{stage}_vs_floor"] = best[stage][0] / floor
        rows.append(row)
    return rows


def run_stages(args: argparse.Namespace, names: list[str], threads: list[int]) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.bench.eval import load

    console = Console(width=max(Console().width, 160))
    console.print(f"{args.bits} bits, random codes/labels (seed {args.seed}); {load()} at start")
    rows = [row for name in names for row in stage_rows(name, args, threads)]
    table = Table(
        title="cmh bench eval --stages — seconds (× the floor), cumulative, best of interleaved repeats"
    )
    for col in ("size", "thr", "floor", *STAGES, "load"):
        table.add_column(col, justify="left" if col in ("size", "load") else "right")
    for r in rows:
        cells = [f"{r[f'{s}_s']:.3f} ({r[f'{s}_vs_floor']:.2f}×)" for s in STAGES]
        table.add_row(r["size"], str(r["threads"]), f"{r['floor_s']:.3f}", *cells, r["load"])
    console.print(table)
    if args.json:
        write_report(args.json, args, results=rows)
    return 0
