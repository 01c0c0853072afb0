"""``cmh sweep GRID`` and ``cmh reproduce RECIPE``: run every missing run of a YAML grid and record it.

``reproduce`` is ``sweep`` for a paper's recipe (e.g. ``ssah-cvpr18``): it runs only the datasets the
user supplies files for (``--data mirflickr25k=DIR --image-features mirflickr25k=FILE``) and then prints
cmh's numbers beside the paper's reported ones.

Backends: ``--jobs N`` (local, default 1) runs N runs at a time in worker processes on this machine;
``--backend ray [--address ADDR]`` submits every missing run as a Ray task with the CPUs/GPUs the grid's
``resources`` give it (docs/scale.md). Both write each record as its run ends, report a failed run and go
on, and skip runs whose record exists, so re-running the command resumes a sweep.
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
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: this machine (--jobs); ray: one Ray task per run on a Ray cluster (pip install 'cmh[ray]')",
    )
    p.add_argument(
        "--cpus-per-run",
        type=float,
        help="Ray backend: CPUs each run reserves (overrides the grid's resources)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        help="Ray backend: GPUs each run reserves, e.g. 1 or 0.5 (overrides the grid's resources)",
    )
    p.add_argument(
        "--address",
        help="Ray cluster to join (e.g. ray://head:10001 or auto; default: $RAY_ADDRESS or a local one)",
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
        for key, value in (
            ("cpus", getattr(args, "cpus_per_run", None)),
            ("gpus", getattr(args, "gpus_per_run", None)),
        ):
            if value is not None:
                block["resources"] = {**(block.get("resources") or {}), key: value}
        runs.append(block)
    return {**grid, "datasets": datasets, "runs": runs}


def _run_label(i: int, n: int, run: Any) -> str:
    codes = "" if run.database == "per-view" else f" ({run.database} database codes)"
    return f"[{i}/{n}] {run.method} {run.dataset} {run.bits} bits seed {run.seed}{codes}"


def _summary(record: dict[str, Any], path: Path, seconds: float) -> tuple[Path, float, float, float]:
    return path, record["tasks"]["i2t"]["map"], record["tasks"]["t2i"]["map"], seconds


def _execute(run: Any, dataset: Any, device: str, path: Path) -> tuple[Path, float, float, float]:
    """Train, evaluate and record one planned run; returns (record path, I→T mAP, T→I mAP, seconds)."""
    from cmh.runner import run_and_write

    t0 = time.perf_counter()
    record, path = run_and_write(
        path,
        run.method,
        dataset,
        run.bits,
        run.seed,
        run.overrides,
        device,
        database=run.database,
    )
    return _summary(record, path, time.perf_counter() - t0)


def _record_path(out: str, run: Any, dataset: Any) -> Path:
    """Where ``run``'s record lives: its identity (settings, dataset version) decides the file name."""
    from cmh.identity import resolve_record_path
    from cmh.runner import plan_record

    return resolve_record_path(
        out, plan_record(run.method, dataset, run.bits, run.seed, run.overrides, run.database)
    )


#: per worker process: datasets loaded so far (name -> dataset)
_WORKER_DATA: dict[str, Any] = {}


def _worker_dataset(grid: dict[str, Any], name: str) -> Any:
    from cmh.sweep import load_grid_dataset

    if name not in _WORKER_DATA:
        _WORKER_DATA[name] = load_grid_dataset(grid, name)
    return _WORKER_DATA[name]


def _worker_init(threads: int) -> None:
    """Give each worker its share of the CPU: torch and the BLAS/OpenMP pools NumPy and SciPy use."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # stays in force for the worker's life


def _worker_run(grid: dict[str, Any], run: Any, device: str, path: Path) -> tuple[Path, float, float, float]:
    return _execute(run, _worker_dataset(grid, run.dataset), device, path)


def run_grid(
    grid: dict[str, Any], args: argparse.Namespace, console: Console, datasets: list[str] | None = None
) -> tuple[str, list[Path]]:
    """Run every missing run of ``grid`` (restricted to ``datasets``); returns (results folder, written paths).

    With ``args.jobs > 1`` the runs go to that many worker processes (spawned, each with
    ``cpu_count // jobs`` torch threads and its own copy of the datasets); records are written by the
    workers, atomically, as each run ends. With ``args.backend == "ray"`` each run is a Ray task
    (:func:`_run_ray`); its record comes back to this process, which writes it as the task ends.
    """
    from cmh.sweep import load_grid_dataset, plan

    backend = getattr(args, "backend", "local")
    if backend != "ray" and getattr(args, "address", None):
        raise CMHError("--address is the Ray cluster of --backend ray; add --backend ray or drop --address")
    if backend == "ray" and args.jobs != 1:
        raise CMHError("--jobs is for the local backend; with --backend ray the grid's resources decide")
    out = args.out or grid.get("out", "results")
    if not args.dry_run:
        check_writable_dir(out, "--out")
    runs = list(plan(grid, _names(args.methods), datasets or _names(args.datasets)))
    loaded: dict[str, Any] = {}
    unprepared: dict[str, str] = {}
    first_error: CMHError | None = None
    todo: list[Any] = []
    paths: list[Path] = []  # each todo run's record path (its identity), planned once
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
        path = _record_path(out, run, loaded[run.dataset])
        if args.overwrite or not path.exists():
            todo.append(run)
            paths.append(path)
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
    ray = _import_ray() if backend == "ray" and todo and not args.dry_run else None
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
    elif ray is not None:
        _run_ray(ray, grid, todo, labels, paths, args.device, args.address, report, console)
    elif jobs == 1 or len(todo) < 2:
        for label, run, path in zip(labels, todo, paths, strict=True):
            try:
                outcome: tuple[Path, float, float, float] | CMHError = _execute(
                    run, loaded[run.dataset], args.device, path
                )
            except CMHError as exc:
                outcome = exc
            report(label, outcome)
    else:
        _run_parallel(grid, todo, labels, paths, args.device, jobs, report)
    if failed:
        raise CMHError(
            f"{len(failed)} of {len(todo)} runs failed (the others are recorded); first: {failed[0]}"
        )
    return out, written


def _run_parallel(
    grid: dict[str, Any],
    todo: list[Any],
    labels: list[str],
    paths: list[Path],
    device: str,
    jobs: int,
    report: Any,
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
            pool.submit(_worker_run, grid, run, device, path): label
            for run, label, path in zip(todo, labels, paths, strict=True)
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


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CMHError(
            "--backend ray needs Ray: pip install 'cmh[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


def _driver_paths(grid: dict[str, Any]) -> dict[str, Any]:
    """The grid with ``$CMH_DATA`` in dataset paths expanded here, so that Ray workers need not set it."""
    from cmh.sweep import default_data_root

    root = default_data_root()
    datasets = {
        name: {
            k: v.replace("$CMH_DATA", root) if k in ("data", "image_features") and isinstance(v, str) else v
            for k, v in (spec or {}).items()
        }
        for name, spec in (grid.get("datasets") or {}).items()
    }
    return {**grid, "datasets": datasets}


def _task_device(device: str, run: Any) -> str:
    """The device of a run in a Ray task: Ray's GPU when the run reserves one, else the CPU unless asked."""
    if run.gpus > 0:
        return "cuda" if device in ("auto", "cuda") else device
    return "cpu" if device == "auto" else device


def _ray_cell(
    grid: dict[str, Any], run: Any, device: str, path: str
) -> tuple[dict[str, Any] | None, str | None, float]:
    """One Ray task: ``(record, None, seconds)``, or ``(None, one-line error, seconds)`` for bad input.

    Deep methods checkpoint beside the record's ``path`` (as the local backend does; on a file system the
    nodes share, a task Ray retries elsewhere resumes there); the checkpoints go when the run ends.
    """
    from cmh.runner import checkpoint_dir_for, remove_checkpoints, run_once

    t0 = time.perf_counter()
    _worker_init(max(1, int(run.cpus)))
    ckpt = checkpoint_dir_for(path)
    try:
        dataset = _worker_dataset(grid, run.dataset)
        record = run_once(
            run.method,
            dataset,
            run.bits,
            run.seed,
            run.overrides,
            device,
            database=run.database,
            checkpoint_dir=ckpt,
        )
    except CMHError as exc:
        return None, str(exc), time.perf_counter() - t0
    remove_checkpoints(ckpt)
    return record, None, time.perf_counter() - t0


def _run_ray(
    ray: Any,
    grid: dict[str, Any],
    todo: list[Any],
    labels: list[str],
    paths: list[Path],
    device: str,
    address: str | None,
    report: Any,
    console: Console,
) -> None:
    """Submit ``todo`` as Ray tasks (the runs' CPUs/GPUs); write each record at its ``paths`` entry and
    ``report`` as each task ends.

    Joins the cluster at ``address`` (or ``$RAY_ADDRESS``, or starts a local Ray) unless this process is
    connected to Ray already. A task that Ray loses (a worker or node died after Ray's retries) is
    reported as a failed run, like a run that stopped on bad input.
    """
    from cmh.results import write_record

    joined = not ray.is_initialized()
    if joined:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CMHError(
                f"cannot join the Ray cluster {address or '(local)'}: {_first_line(exc)}; start it with "
                "`ray start --head` or pass --address"
            ) from None
    try:
        have = ray.cluster_resources()
        console.print(
            f"on Ray: {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs in the cluster; each run takes "
            + ", ".join(sorted({f"{r.cpus:g} CPU {r.gpus:g} GPU" for r in todo}))
        )
        if any(r.gpus > have.get("GPU", 0) or r.cpus > have.get("CPU", 0) for r in todo):
            console.print(
                "[yellow]some runs ask for more CPUs/GPUs than the cluster has now; they wait until an "
                "autoscaler adds such a node (lower the grid's resources otherwise)[/]"
            )
        cell = ray.remote(_ray_cell)
        grid_ref = ray.put(_driver_paths(grid))
        pending = {
            cell.options(num_cpus=run.cpus, num_gpus=run.gpus).remote(
                grid_ref, run, _task_device(device, run), str(path)
            ): (label, path)
            for run, label, path in zip(todo, labels, paths, strict=True)
        }
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                label, path = pending.pop(ref)
                try:
                    record, error, seconds = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    report(label, CMHError(f"the Ray task failed: {_first_line(exc)}"))
                    continue
                if error is not None:
                    report(label, CMHError(error))
                else:
                    report(label, _summary(record, write_record(record, path=path), seconds))
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
    finally:
        if joined:
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    """A one-line account of ``exc`` (for Ray's errors, which carry the task's traceback: its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else exc.__class__.__name__


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
