"""``cmh sweep GRID``: run every missing (dataset, method, bits, seed) of a YAML grid and record it."""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from cmh.cli.common import add_device_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a YAML grid of methods × datasets × bits × seeds (e.g. `leaderboard`)")
    p.add_argument("grid", help="a grid YAML file, or the name of one in cmh/configs (leaderboard, smoke, ...)")
    p.add_argument("--methods", help="only these methods (comma-separated)")
    p.add_argument("--datasets", help="only these datasets (comma-separated)")
    p.add_argument("--out", help="results folder (default: the grid's 'out', else ./results)")
    p.add_argument("--overwrite", action="store_true", help="re-run runs whose record exists")
    p.add_argument("--dry-run", action="store_true", help="list the runs without running them")
    add_device_argument(p)
    p.set_defaults(func=sweep_command)


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def sweep_command(args: argparse.Namespace) -> int:
    from cmh.data.catalog import load_dataset
    from cmh.results import record_path, write_record
    from cmh.runner import run_once
    from cmh.sweep import dataset_args, load_grid, plan

    console = Console()
    grid = load_grid(args.grid)
    out = args.out or grid.get("out", "results")
    runs = list(plan(grid, _names(args.methods), _names(args.datasets)))
    loaded: dict[str, object] = {}
    todo = []
    for run in runs:
        if run.dataset not in loaded:
            loaded[run.dataset] = load_dataset(run.dataset, **dataset_args(grid, run.dataset))
        path = record_path(out, loaded[run.dataset].name, run.method, run.bits, run.seed)
        if args.overwrite or not path.exists():
            todo.append(run)
    console.print(f"{len(runs)} runs in the grid, {len(todo)} to do, {len(runs) - len(todo)} recorded already")
    for i, run in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {run.method} {run.dataset} {run.bits} bits seed {run.seed}"
        if args.dry_run:
            console.print(label)
            continue
        t0 = time.perf_counter()
        record = run_once(run.method, loaded[run.dataset], run.bits, run.seed, run.overrides, args.device)
        path = write_record(record, out)
        console.print(
            f"{label}: I→T {record['tasks']['i2t']['map']:.4f}  T→I {record['tasks']['t2i']['map']:.4f}  "
            f"({time.perf_counter() - t0:.1f} s) -> {path}"
        )
    return 0
