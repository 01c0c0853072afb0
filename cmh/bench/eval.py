"""``cmh bench eval``: the evaluation harness against the reference loop, the floor kernel and faiss, in one run.

Random ±1 codes and multi-hot labels at the papers' sizes (queries × database, label count): MIRFLICKR-25K
2,000 × 18,015 (24), MS-COCO 5,000 × 80,000 (80), NUS-WIDE 2,100 × 188,321 (21). Columns, measured in the same
process in interleaved rounds (each round times every column once; best of ``--repeat`` rounds, so a slow spell of
a shared machine hits all columns of a round alike), for every thread count of ``--threads`` (default 1 and all
cores):

- **reference**: the per-query NumPy loop of :mod:`cmh.metrics.reference` (mAP only, one thread; run on the first
  ``--ref-queries`` queries and scaled linearly to all, as marked);
- **map** / **full**: :func:`cmh.metrics.evaluate` with ``metrics=["map"]`` / every metric;
- **floor**: the compiled floor kernel — popcount distance, relevance and one histogram per query, nothing else,
  in the fastest form measured (per block of items the keys in one SIMD loop, then the increments) — run with
  one (**1q**) and with two queries per block (**2q**, the block loaded once for both; faster once the database
  leaves the core's cache); ``floor`` is the faster of the two, so the ratios are against the best pass either
  way (the scan itself runs two queries per pass past :data:`cmh.metrics._kernel.PAIR_BYTES` of packed
  database, one below it);
- **faiss**: faiss ``IndexBinaryFlat`` search of the k = 1,000 nearest (when faiss is installed) vs cmh ``map@1000``.

Targets (ratios of one run): map ≤ 1.5× floor, full ≤ 3× floor, map@1000 faster than faiss k = 1,000. The machine
load (``os.getloadavg``) is printed beside every row: on a shared machine the ratios are what counts. The numba
compile time is measured separately, in fresh processes with an empty cache: the first call compiles, a later
process loads the cache. ``--db-size 10k,100k,1M,10M`` switches to the scaling benchmark
(:mod:`cmh.bench._eval_scale`); ``--stages`` times the scan stage by stage against the floor
(:mod:`cmh.bench._eval_stages`). Peak memory: a fresh child process (``VmHWM`` after a reset through
``/proc/self/clear_refs``, minus ``VmRSS`` before the call; Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmh.bench._report import write_report

HELP = "evaluation speed vs reference loop, floor kernel and faiss; --db-size for the scaling table"

SIZES: dict[str, tuple[int, int, int]] = {
    "mirflickr": (2_000, 18_015, 24),
    "coco": (5_000, 80_000, 80),
    "nus": (2_100, 188_321, 21),
    "tiny": (200, 2_000, 10),
}
#: metric groups of the pytest-benchmark file (benchmarks/test_bench_eval.py)
GROUPS: dict[str, list[str] | None] = {
    "order": ["map", "map@k", "p_at_n"],
    "counts": ["map_tie_avg", "pr_radius", "p_r2"],
    "all": None,
}
TARGETS = {"map_floor": 1.5, "full_floor": 3.0}
FAISS_K = 1000
MEMORY_TARGET_MIB = 2048


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="mirflickr,coco,nus", help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument(
        "--db-size",
        default=None,
        metavar="N[,N...]",
        help="scaling benchmark instead: database sizes such as 10k,100k,1M,10M (2,000 queries, K = 64)",
    )
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    p.add_argument("--repeat", type=int, default=2, help="repeats of every column (best is reported)")
    p.add_argument(
        "--ref-queries",
        default="200",
        help="queries the reference loop runs on ('all' or a number; time scaled to all queries)",
    )
    p.add_argument("--threads", default="1,all", help="comma-separated thread counts ('all' = every core)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time child processes")
    p.add_argument("--chunk", type=int, default=1_000_000, help="--db-size: database rows per streamed shard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    p.add_argument(
        "--stages",
        action="store_true",
        help="instead: the compiled scan stage by stage (counts, records, map, top-k, full) as ratios to the floor",
    )


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


def load() -> str:
    """The 1-minute load average and the core count, e.g. ``"load 3.2/2"``."""
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()}"


_MEMORY_SCRIPT = """
import json, sys
from cmh.bench._report import PeakRSS, status_kib
from cmh.bench.eval import make_data
from cmh.metrics import evaluate
nq, n, classes, bits, seed, device = json.loads(sys.argv[1])
data = make_data(nq, n, classes, bits, seed)
evaluate(data[0][:1], data[1][:10], data[2][:1], data[3][:10], device=device)  # imports, compile/cache load
with PeakRSS() as peak:
    evaluate(*data, device=device)
print(json.dumps([peak.mib, status_kib("VmHWM") / 1024]))
"""


def peak_memory_mib(nq: int, n: int, classes: int, bits: int, seed: int, device: str) -> tuple[float, float]:
    """(peak extra MiB during evaluate(all metrics), process peak MiB) of a fresh ``python -c`` child."""
    cmd = [sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([nq, n, classes, bits, seed, device])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    extra, total = json.loads(out.stdout.strip().splitlines()[-1])
    return extra, total


_COMPILE_SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
from cmh.metrics import evaluate
rng = np.random.default_rng(0)
c = rng.choice(np.array([-1, 1], np.int8), (50, 64)); l = (rng.random((50, 24)) < .2).astype(np.uint8)
t1 = time.perf_counter(); evaluate(c, c, l, l, device="cpu")
t2 = time.perf_counter(); evaluate(c, c, l, l, device="cpu")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def compile_seconds() -> dict[str, float]:
    """First-call seconds of :func:`evaluate` (all metrics, tiny data) in a fresh process with an empty numba
    cache (compiles), then in a second fresh process (loads the cache), and a warm call for comparison."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True, text=True, check=True
            )
            runs.append([float(x) for x in out.stdout.split()[-3:]])
    return {"first_call_compile_s": runs[0][1], "first_call_cached_s": runs[1][1], "warm_call_s": runs[1][2]}


def floor_columns(packed: list[np.ndarray], bits: int) -> dict[str, Any]:
    """The floor kernel as two columns for :func:`best_interleaved`: ``floor1`` (one query per database pass) and
    ``floor2`` (two), on the packed (codes, db codes, labels, db labels); :func:`floor_of` takes the faster."""
    from cmh.metrics._kernel import run_floor

    return {
        "floor1": lambda: run_floor(*packed, bits),
        "floor2": lambda: run_floor(*packed, bits, pairs=True),
    }


def floor_of(best: dict[str, tuple[float, float, Any]]) -> tuple[float, float]:
    """(wall, CPU seconds) of the faster floor kernel in a :func:`best_interleaved` result: the floor."""
    return min(best["floor1"][:2], best["floor2"][:2])


def best_interleaved(columns: dict[str, Any], repeat: int) -> dict[str, tuple[float, float, Any]]:
    """Time every column ``name -> callable`` ``repeat`` times, interleaved (one round runs each column once),
    so that a slow spell of a shared machine falls on every column of a round rather than on all repeats of one:
    ``name -> (best wall seconds, CPU seconds of that repeat, its result)``. The CPU time (all threads of this
    process) leaves out the time the process waited for a core on a loaded machine. One untimed round runs first,
    so that no timing includes numba compiling or loading its cache."""
    for f in columns.values():
        f()
    best: dict[str, tuple[float, float, Any]] = {}
    for _ in range(max(1, repeat)):
        for name, f in columns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            res = f()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, res)
    return best


def thread_counts(spec: str) -> list[int]:
    from cmh.errors import CMHError

    out = []
    for t in str(spec).split(","):
        t = t.strip()
        if t == "all":
            out.append(os.cpu_count() or 1)
        elif t.isdigit() and int(t) >= 1:
            out.append(int(t))
        else:
            raise CMHError(f"--threads takes positive counts or 'all' (e.g. 1,all), not {t!r}")
    return sorted(set(out))


def bench_size(name: str, args: argparse.Namespace, threads: list[int]) -> list[dict[str, Any]]:
    """One row per thread count at size ``name``: every column's best seconds, ratios, load, exactness."""
    from cmh.metrics import evaluate
    from cmh.metrics._kernel import pack_rows
    from cmh.metrics.reference import reference_metrics
    from cmh.metrics.retrieval import numba_threads

    nq, n, classes = SIZES[name]
    q, db, ql, dbl = make_data(nq, n, classes, args.bits, args.seed)
    n_ref = nq if args.ref_queries == "all" else min(nq, int(args.ref_queries))
    t0 = time.perf_counter()
    ref = reference_metrics(q[:n_ref], db, ql[:n_ref], dbl, counts=False)
    t_ref = (time.perf_counter() - t0) * nq / n_ref
    packed = [pack_rows(x) for x in (q, db, ql, dbl)]
    try:
        from cmh.metrics.topk_faiss import faiss_topk

        faiss_topk(q[:2], db, FAISS_K)  # loads faiss
    except Exception:  # noqa: BLE001 - faiss is optional: its column is left empty
        faiss_topk = None
    rows = []
    for t in threads:
        cols: dict[str, float] = {}
        load_before = load()

        def timed(metrics: list[str] | None, topk: tuple[int, ...] = (50, 500, 1000), t: int = t) -> Any:
            kw = dict(metrics=metrics, topk=topk, device=args.device, num_threads=t, return_per_query=True)
            return lambda: evaluate(q, db, ql, dbl, **kw)

        columns = {
            "map": timed(["map"]),
            "full": timed(None),
            "map1000": timed(["map@k"], (FAISS_K,)),
            **floor_columns(packed, args.bits),
        }
        if faiss_topk is not None:
            columns["faiss"] = lambda t=t: faiss_topk(q, db, FAISS_K, num_threads=t)
        with numba_threads(t):  # the floor kernels' threads (evaluate sets its own)
            best = best_interleaved(columns, args.repeat)
        for col, (wall, cpu, _) in best.items():
            cols[f"{col}_s"], cols[f"{col}_cpu_s"] = wall, cpu
        res_map = best["map"][2]
        cols["floor_s"], cols["floor_cpu_s"] = floor_of(best)
        diff = float(np.max(np.abs(np.asarray(res_map["ap_per_query"][:n_ref]) - ref["ap"])))
        row = {
            "size": name,
            "queries": nq,
            "database": n,
            "classes": classes,
            "bits": args.bits,
            "threads": t,
            "ref_s": t_ref,
            "ref_queries": n_ref,
            "ref_extrapolated": n_ref < nq,
            **cols,
            "map_vs_floor": cols["map_s"] / cols["floor_s"],
            "full_vs_floor": cols["full_s"] / cols["floor_s"],
            "map_vs_floor_cpu": cols["map_cpu_s"] / max(cols["floor_cpu_s"], 1e-9),
            "full_vs_floor_cpu": cols["full_cpu_s"] / max(cols["floor_cpu_s"], 1e-9),
            "ref_vs_map": t_ref / cols["map_s"],
            "ref_vs_full": t_ref / cols["full_s"],
            "faiss_vs_map1000": cols["faiss_s"] / cols["map1000_s"] if "faiss_s" in cols else None,
            "map_max_abs_diff": diff,
            "map_identical": diff < 1e-12,
            "load": f"{load_before} → {load()}",
        }
        rows.append(row)
    if not args.no_memory and Path("/proc/self/clear_refs").exists():
        rows[0]["extra_mib"], rows[0]["process_mib"] = peak_memory_mib(
            nq, n, classes, args.bits, args.seed, args.device
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.errors import CMHError

    if args.db_size:
        from cmh.bench._eval_scale import run_scale

        return run_scale(args)
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in names if s not in SIZES]
    if bad:
        raise CMHError(f"unknown size(s) {', '.join(bad)}; choose from {', '.join(SIZES)}")
    if args.ref_queries != "all" and not (args.ref_queries.isdigit() and int(args.ref_queries) > 0):
        raise CMHError(f"--ref-queries must be 'all' or a positive number, not {args.ref_queries!r}")
    threads = thread_counts(args.threads)
    if args.stages:
        from cmh.bench._eval_stages import run_stages

        if args.device != "cpu":
            raise CMHError(f"--stages times the compiled CPU kernel; drop --device {args.device}")

        return run_stages(args, names, threads)
    console = Console(width=max(Console().width, 200))  # wide tables stay readable in logs
    console.print(
        f"CPU cores: {os.cpu_count()}, threads: {threads}, device: {args.device}; {args.bits} bits, "
        f"random codes/labels (seed {args.seed}); {load()} at start"
    )
    compiled = None if args.no_compile else compile_seconds()
    if compiled:
        console.print(
            "numba compile: first evaluate() in a fresh process with an empty cache "
            f"{compiled['first_call_compile_s']:.1f} s; next process (cache) {compiled['first_call_cached_s']:.2f} s; "
            f"warm call {compiled['warm_call_s'] * 1000:.1f} ms"
        )
    rows = []
    for name in names:
        rows.extend(bench_size(name, args, threads))
        console.print(f"  {name}: done ({load()})")

    def ratio(v: float | None, target: float | None, below: bool = True) -> str:
        if v is None:
            return "—"
        good = target is None or (v <= target if below else v >= target)
        return f"[green]{v:.2f}×[/green]" if good else f"[red]{v:.2f}×[/red]"

    table = Table(title="cmh bench eval — one run, seconds (best of repeats)")
    for col in (
        "size",
        "thr",
        "reference",
        "map",
        "full",
        "floor 1q",
        "floor 2q",
        "map/floor",
        "full/floor",
        "ref/map",
        "ref/full",
        "faiss k=1000",
        "map@1000",
        "faiss/map@1000",
        "same mAP",
        "load",
    ):
        table.add_column(col, justify="left" if col in ("size", "load") else "right")
    for r in rows:
        ref = f"{r['ref_s']:.2f}" + ("*" if r["ref_extrapolated"] else "")
        table.add_row(
            r["size"],
            str(r["threads"]),
            ref,
            f"{r['map_s']:.3f}",
            f"{r['full_s']:.3f}",
            f"{r['floor1_s']:.3f}",
            f"{r['floor2_s']:.3f}",
            ratio(r["map_vs_floor"], TARGETS["map_floor"]) + f" ({r['map_vs_floor_cpu']:.2f}×)",
            ratio(r["full_vs_floor"], TARGETS["full_floor"]) + f" ({r['full_vs_floor_cpu']:.2f}×)",
            f"{r['ref_vs_map']:.0f}×",
            f"{r['ref_vs_full']:.0f}×",
            f"{r['faiss_s']:.3f}" if "faiss_s" in r else "—",
            f"{r['map1000_s']:.3f}",
            ratio(r["faiss_vs_map1000"], 1.0, below=False),
            "yes" if r["map_identical"] else f"[red]no ({r['map_max_abs_diff']:.1e})[/red]",
            r["load"],
        )
    console.print(table)
    mem = [
        f"{r['size']} {r['extra_mib']:.0f} MiB (process {r['process_mib']:.0f})"
        for r in rows
        if "extra_mib" in r
    ]
    console.print(
        "reference = per-query NumPy loop for mAP (* = scaled from the first queries); map = evaluate(metrics=['map']); "
        "full = every metric; floor = compiled popcount + relevance + histogram only (SIMD keys, then increments) with "
        "one (1q) or two (2q) queries per database block, ratios against the faster; faiss = IndexBinaryFlat "
        "k = 1,000 vs cmh map@1000. Ratios in brackets: by CPU time (process_time) instead of wall time. Targets: map/floor ≤ 1.5×, full/floor ≤ 3×, faiss/map@1000 > 1×."
        + (f" Peak extra memory of evaluate(all): {'; '.join(mem)}." if mem else "")
    )
    if args.json:
        write_report(args.json, args, results=rows, compile=compiled)
    return 0 if all(r["map_identical"] for r in rows) else 1
