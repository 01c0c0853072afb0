"""``cmh bench eval --db-size 10k,100k,1M,10M``: time and peak memory of the full metric set as the database grows.

2,000 queries, K = 64 bits, real-like multi-label relevance: 24 classes with Zipf-like frequencies (about 2.6
labels per item, none empty, as in MIRFLICKR/NUS-WIDE) and codes correlated with the labels (each item's code is
the sign of the sum of its classes' random ±1 centres plus noise), so distances are tied and relevance is skewed
as in real runs. Each size runs in a fresh child process: the database is generated in blocks straight into
packed form (11 bytes per item), then evaluated with :func:`cmh.metrics.sharded.evaluate_sharded`, streaming
``--chunk`` rows at a time (two passes; no n_query × n_db array exists). Reported: seconds, nanoseconds per
query-item pair (constant if time is linear in n), the peak extra resident memory of the evaluation (``VmHWM``
after a reset, minus ``VmRSS`` before) and the child process's whole peak (interpreter, libraries and data included).
With ``--device cuda`` the codes are unpacked to ±1 and :func:`cmh.metrics.evaluate` runs on the GPU instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import numpy as np

from cmh.bench._report import write_report

N_QUERIES, BITS, CLASSES, BLOCK = 2_000, 64, 24, 100_000
MEMORY_TARGET_MIB = 2048


def parse_sizes(spec: str) -> list[int]:
    """``"10k,100k,1M,10M"`` -> [10000, 100000, 1000000, 10000000]."""
    from cmh.errors import CMHError

    mult = {"k": 10**3, "m": 10**6, "g": 10**9}
    out = []
    for tok in spec.split(","):
        t = tok.strip().lower()
        try:
            n = int(float(t[:-1]) * mult[t[-1]]) if t and t[-1] in mult else int(t)
        except ValueError:
            raise CMHError(f"--db-size takes sizes like 10k,100k,1M,10M, not {tok.strip()!r}") from None
        if n < 1:
            raise CMHError(f"--db-size values must be >= 1, not {tok.strip()!r}")
        out.append(n)
    return out


def _real_like(rng: np.random.Generator, m: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, K) ±1 int8 codes and (m, c) uint8 labels: Zipf-like class frequencies, codes near their classes."""
    c = centres.shape[0]
    freq = 1.0 / np.arange(1, c + 1) ** 0.8
    freq *= 2.6 / freq.sum()
    labels = (rng.random((m, c), dtype=np.float32) < freq.astype(np.float32)).astype(np.uint8)
    labels[np.arange(m), rng.integers(0, c, m)] = 1
    score = labels.astype(np.float32) @ centres + rng.normal(0, 1.5, (m, centres.shape[1])).astype(np.float32)
    return np.where(score >= 0, 1, -1).astype(np.int8), labels


def make_packed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Queries (±1 codes, labels) and the database as packbits rows (codes (n, K/8), labels (n, ceil(c/8)))."""
    centres = np.random.default_rng(seed).choice(np.array([-1, 1], np.float32), size=(CLASSES, BITS))
    q, ql = _real_like(np.random.default_rng([seed, 1]), N_QUERIES, centres)
    codes = np.empty((n, BITS // 8), np.uint8)
    labels = np.empty((n, -(-CLASSES // 8)), np.uint8)
    for b, s in enumerate(range(0, n, BLOCK)):
        c, lab = _real_like(np.random.default_rng([seed, 2, b]), min(BLOCK, n - s), centres)
        codes[s : s + len(c)] = np.packbits(c > 0, axis=1)
        labels[s : s + len(c)] = np.packbits(lab, axis=1)
    return q, ql, codes, labels


class PackedShards:
    """Re-iterable shards of ``chunk`` rows: packed codes as they are, labels unpacked one shard at a time."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray, chunk: int) -> None:
        self.codes, self.labels, self.chunk = codes, labels, chunk

    def __iter__(self) -> Any:
        for s in range(0, self.codes.shape[0], self.chunk):
            lab = np.unpackbits(self.labels[s : s + self.chunk], axis=1)[:, :CLASSES]
            yield self.codes[s : s + self.chunk], lab


_CHILD = """
import json, sys, time
import numpy as np
from cmh.bench._report import PeakRSS, status_kib
from cmh.bench._eval_scale import PackedShards, make_packed, CLASSES
n, seed, chunk, device, threads = json.loads(sys.argv[1])
t0 = time.perf_counter()
q, ql, codes, labels = make_packed(n, seed)
gen_s = time.perf_counter() - t0
if device == "cpu":
    from cmh.metrics.sharded import evaluate_sharded
    shards = PackedShards(codes, labels, chunk)
    evaluate_sharded(q[:2], ql[:2], PackedShards(codes[:1000], labels[:1000], 1000))  # compile / cache load
    with PeakRSS() as peak:
        t0, c0 = time.perf_counter(), time.process_time()
        res = evaluate_sharded(q, ql, shards, num_threads=threads)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
else:
    import torch
    from cmh.metrics import evaluate
    db = np.where(np.unpackbits(codes, axis=1) > 0, 1, -1).astype(np.int8)
    dbl = np.unpackbits(labels, axis=1)[:, :CLASSES]
    qt, dbt, qlt, dblt = (torch.from_numpy(x).to(device) for x in (q, db, ql, dbl))
    evaluate(qt[:2], dbt[:1000], qlt[:2], dblt[:1000], device=device)
    torch.cuda.synchronize()
    with PeakRSS() as peak:
        best = float("inf")
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            res = evaluate(qt, dbt, qlt, dblt, device=device)
            torch.cuda.synchronize()
            if time.perf_counter() - t0 < best:
                best, cpu = time.perf_counter() - t0, time.process_time() - c0
        secs = best
print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "generate_s": gen_s, "extra_mib": peak.mib,
                  "process_mib": status_kib("VmHWM") / 1024, "map": res["map"], "map_tie_avg": res["map_tie_avg"],
                  "ndcg@1000": res["ndcg@1000"], "n_database": res["n_database"]}))
"""


def measure(n: int, args: argparse.Namespace, threads: int | None) -> dict[str, Any]:
    """One database size in a fresh child process (clean peak memory); returns its JSON row."""
    spec = json.dumps([n, args.seed, args.chunk, args.device, threads])
    out = subprocess.run([sys.executable, "-c", _CHILD, spec], capture_output=True, text=True)
    if out.returncode:
        from cmh.errors import CMHError

        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise CMHError(f"the --db-size {n} child process failed ({last}); rerun with a smaller size")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_scale(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.bench.eval import load, thread_counts
    from cmh.errors import CMHError

    sizes = parse_sizes(args.db_size)
    if args.chunk < 1:
        raise CMHError(f"--chunk must be >= 1, not {args.chunk}")
    threads = max(thread_counts(args.threads))
    console = Console(width=max(Console().width, 200))  # wide tables stay readable in logs
    console.print(
        f"{N_QUERIES:,} queries, K = {BITS}, {CLASSES} classes (real-like), device {args.device}, "
        f"{threads} threads, shards of {args.chunk:,} rows; {load()}"
    )
    rows = []
    for n in sizes:
        before = load()
        row = {"db_size": n, "threads": threads, **measure(n, args, threads), "load": f"{before} → {load()}"}
        row["ns_per_pair"] = row["seconds"] / (N_QUERIES * n) * 1e9
        row["cpu_ns_per_pair"] = row["cpu_seconds"] / (N_QUERIES * n) * 1e9
        rows.append(row)
        console.print(f"  {n:,}: {row['seconds']:.2f} s ({load()})")
    table = Table(title="cmh bench eval --db-size — full metric set, streamed shards")
    for col in (
        "database",
        "seconds",
        "CPU s",
        "ns / pair",
        "CPU ns / pair",
        "extra MiB",
        "process peak MiB",
        "mAP",
        "load",
    ):
        table.add_column(col, justify="left" if col in ("database", "load") else "right")
    for r in rows:
        peak = f"{r['process_mib']:.0f}"
        table.add_row(
            f"{r['db_size']:,}",
            f"{r['seconds']:.2f}",
            f"{r['cpu_seconds']:.2f}",
            f"{r['ns_per_pair']:.2f}",
            f"{r['cpu_ns_per_pair']:.2f}",
            f"{r['extra_mib']:.0f}" if r["extra_mib"] is not None else "—",
            peak if r["process_mib"] <= MEMORY_TARGET_MIB else f"[red]{peak}[/red]",
            f"{r['map']:.4f}",
            r["load"],
        )
    console.print(table)
    console.print(
        "ns / pair = seconds / (queries × database): constant when time is linear in n; CPU = process_time (all "
        "threads; excludes waiting for a core on a loaded machine). Peak memory: the child "
        f"process's VmHWM (everything), target ≤ {MEMORY_TARGET_MIB} MiB at 1M."
    )
    if args.json:
        write_report(args.json, args, results=rows)
    return 0
