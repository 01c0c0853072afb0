"""``cmh sweep GRID`` and ``cmh reproduce RECIPE``: run every missing run of a YAML grid and record it.

``reproduce`` is ``sweep`` for a paper's recipe (e.g. ``ssah-cvpr18``): it runs only the datasets the
user supplies files for (``--data mirflickr25k=DIR --image-features mirflickr25k=FILE``) and then prints
cmh's numbers beside the paper's reported ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cmh.cli.common import add_device_argument, check_writable_dir, int_list, seed_list
from cmh.errors import CMHError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a YAML grid of methods × datasets × bits × seeds (e.g. `leaderboard`)"
    )
    p.add_argument("grid", help="a grid YAML file, or the name of one in cmh/configs (e.g. leaderboard)")
    _add_grid_arguments(p)
    p.set_defaults(func=sweep_command)

    r = sub.add_parser(
        "reproduce", help="run a paper's recipe on your feature files and compare with its tables"
    )
    r.add_argument("recipe", help="recipe name in cmh/configs (e.g. ssah-cvpr18) or a grid YAML file")
    _add_grid_arguments(r)
    r.set_defaults(func=reproduce_command)


def _add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", help="only these methods (comma-separated)")
    p.add_argument("--datasets", help="only these datasets (comma-separated)")
    p.add_argument("--data", action="append", metavar="NAME=PATH", help="files of dataset NAME (repeatable)")
    p.add_argument(
        "--image-features",
        action="append",
        metavar="NAME=FILE",
        help="image features for dataset NAME when its files have none (repeatable)",
    )
    p.add_argument("--bits", type=int_list, help="override the grid's code lengths, e.g. 16,32")
    p.add_argument("--seeds", type=seed_list, help="override the grid's seeds, e.g. 0,1,2")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="method option for every run (repeatable)"
    )
    p.add_argument("--out", help="results folder (default: the grid's 'out', else ./results)")
    p.add_argument("--overwrite", action="store_true", help="re-run runs whose record exists")
    p.add_argument("--dry-run", action="store_true", help="list the runs without running them")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time in separate processes, each with cpu_count/jobs torch threads (default 1)",
    )
    add_device_argument(p)


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CMHError(f"{flag} expects NAME=PATH, got '{item}' (e.g. {flag} mirflickr25k=/data/flickr)")
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def _apply_overrides(grid: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from cmh.config import parse_set

    datasets = {k: dict(v or {}) for k, v in (grid.get("datasets") or {}).items()}
    for name, path in _pairs(args.data, "--data").items():
        datasets.setdefault(name, {})["data"] = path
    for name, path in _pairs(args.image_features, "--image-features").items():
        datasets.setdefault(name, {})["image_features"] = path
    extra = parse_set(args.set)
    runs = []
    for block in grid["runs"]:
        block = dict(block)
        if args.bits:
            block["bits"] = args.bits
        if args.seeds:
            block["seeds"] = args.seeds
        block["set"] = {**(block.get("set") or {}), **extra}
        runs.append(block)
    return {**grid, "datasets": datasets, "runs": runs}


def _run_label(i: int, n: int, run: Any) -> str:
    codes = "" if run.database == "per-view" else f" ({run.database} database codes)"
    return f"[{i}/{n}] {run.method} {run.dataset} {run.bits} bits seed {run.seed}{codes}"


def _execute(run: Any, dataset: Any, device: str, out: str) -> tuple[Path, float, float, float]:
    """Train, evaluate and record one planned run; returns (record path, I→T mAP, T→I mAP, seconds)."""
    from cmh.runner import run_and_write

    t0 = time.perf_counter()
    record, path = run_and_write(
        _record_path(out, run, dataset),
        run.method,
        dataset,
        run.bits,
        run.seed,
        run.overrides,
        device,
        database=run.database,
    )
    return path, record["tasks"]["i2t"]["map"], record["tasks"]["t2i"]["map"], time.perf_counter() - t0


def _record_path(out: str, run: Any, dataset: Any) -> Path:
    """Where ``run``'s record lives: its identity (settings, dataset version) decides the file name."""
    from cmh.identity import resolve_record_path
    from cmh.runner import plan_record

    return resolve_record_path(
        out, plan_record(run.method, dataset, run.bits, run.seed, run.overrides, run.database)
    )


#: per worker process: datasets loaded so far (name -> dataset)
_WORKER_DATA: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    """Give each worker its share of the CPU: torch and the BLAS/OpenMP pools NumPy and SciPy use."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # stays in force for the worker's life


def _worker_run(grid: dict[str, Any], run: Any, device: str, out: str) -> tuple[Path, float, float, float]:
    from cmh.sweep import load_grid_dataset

    if run.dataset not in _WORKER_DATA:
        _WORKER_DATA[run.dataset] = load_grid_dataset(grid, run.dataset)
    return _execute(run, _WORKER_DATA[run.dataset], device, out)


def run_grid(
    grid: dict[str, Any], args: argparse.Namespace, console: Console, datasets: list[str] | None = None
) -> tuple[str, list[Path]]:
    """Run every missing run of ``grid`` (restricted to ``datasets``); returns (results folder, written paths).

    With ``args.jobs > 1`` the runs go to that many worker processes (spawned, each with
    ``cpu_count // jobs`` torch threads and its own copy of the datasets); records are written by the
    workers, atomically, as each run ends.
    """
    from cmh.sweep import load_grid_dataset, plan

    out = args.out or grid.get("out", "results")
    if not args.dry_run:
        check_writable_dir(out, "--out")
    runs = list(plan(grid, _names(args.methods), datasets or _names(args.datasets)))
    loaded: dict[str, Any] = {}
    unprepared: dict[str, str] = {}
    first_error: CMHError | None = None
    todo = []
    for run in runs:
        if run.dataset in unprepared:
            continue
        if run.dataset not in loaded:
            try:
                loaded[run.dataset] = load_grid_dataset(grid, run.dataset)
            except CMHError as exc:
                prepare = ((grid.get("datasets") or {}).get(run.dataset) or {}).get("prepare")
                if not prepare or _names(args.datasets):
                    raise  # a dataset the user asked for by name must load
                unprepared[run.dataset] = prepare
                first_error = first_error or exc
                continue
        if args.overwrite or not _record_path(out, run, loaded[run.dataset]).exists():
            todo.append(run)
    if first_error is not None and not loaded:
        raise first_error  # nothing in the grid can run here: say why
    for name, prepare in unprepared.items():
        n = sum(r.dataset == name for r in runs)
        console.print(
            f"[yellow]{name} is not built here, so its {n} runs are skipped: build it with `{prepare}` and run "
            "this sweep again (or leave it out with --datasets)[/]"
        )
    runs = [r for r in runs if r.dataset not in unprepared]
    jobs = max(1, args.jobs)
    console.print(
        f"{len(runs)} runs in the grid, {len(todo)} to do, {len(runs) - len(todo)} recorded already"
        + (f"; {min(jobs, len(todo))} at a time" if jobs > 1 and todo and not args.dry_run else "")
    )
    written: list[Path] = []
    failed: list[str] = []

    def report(label: str, outcome: tuple[Path, float, float, float] | CMHError) -> None:
        if isinstance(outcome, CMHError):  # one failing run must not stop a long sweep
            failed.append(f"{label}: {outcome}")
            console.print(f"[red]{label}: failed: {outcome}[/]")
            return
        path, i2t, t2i, seconds = outcome
        written.append(path)
        console.print(f"{label}: I→T {i2t:.4f}  T→I {t2i:.4f}  ({seconds:.1f} s) -> {path}")

    labels = [_run_label(i, len(todo), run) for i, run in enumerate(todo, 1)]
    if args.dry_run:
        for label in labels:
            console.print(label)
    elif jobs == 1 or len(todo) < 2:
        for label, run in zip(labels, todo, strict=True):
            try:
                outcome: tuple[Path, float, float, float] | CMHError = _execute(
                    run, loaded[run.dataset], args.device, out
                )
            except CMHError as exc:
                outcome = exc
            report(label, outcome)
    else:
        _run_parallel(grid, todo, labels, args.device, out, jobs, report)
    if failed:
        raise CMHError(
            f"{len(failed)} of {len(todo)} runs failed (the others are recorded); first: {failed[0]}"
        )
    return out, written


def _run_parallel(
    grid: dict[str, Any], todo: list[Any], labels: list[str], device: str, out: str, jobs: int, report: Any
) -> None:
    """Run ``todo`` on ``jobs`` spawned worker processes; ``report(label, outcome)`` as each ends."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = min(jobs, len(todo))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    )
    try:
        futures = {
            pool.submit(_worker_run, grid, run, device, out): label
            for run, label in zip(todo, labels, strict=True)
        }
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except CMHError as exc:
                outcome = exc
            report(futures[future], outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def sweep_command(args: argparse.Namespace) -> int:
    from cmh.sweep import load_grid

    run_grid(_apply_overrides(load_grid(args.grid), args), args, Console())
    return 0


def reproduce_command(args: argparse.Namespace) -> int:
    from cmh.sweep import load_grid

    console = Console()
    grid = _apply_overrides(load_grid(args.recipe), args)
    given = [name for name, spec in grid["datasets"].items() if "data" in spec]
    wanted = _names(args.datasets) or given
    if not wanted:
        names = ", ".join(grid["datasets"])
        raise CMHError(
            f"recipe '{args.recipe}' needs your feature files: pass --data NAME=PATH for one of {names} "
            "(see docs/reproduce.md)"
        )
    missing = [n for n in wanted if n not in given]
    if missing:
        raise CMHError(f"no files for {', '.join(missing)}; pass --data {missing[0]}=PATH")
    console.print(f"[bold]{grid.get('title', args.recipe)}[/]: datasets {', '.join(wanted)}")
    out, _ = run_grid(grid, args, console, datasets=wanted)
    if args.dry_run:
        return 0
    try:
        from cmh.compare import print_comparison
    except ImportError:  # pragma: no cover - compare lands separately
        return 0
    for name in wanted:
        print_comparison(results=out, dataset=name, reported=True, console=console)
    return 0
