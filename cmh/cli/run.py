"""``cmh run METHOD``: train, encode, evaluate both tasks and write one result record per (bits, seed).

A record's file name carries its identity (settings and dataset version, :mod:`cmh.identity`): a record that
exists for exactly this run is shown instead of training again; any other settings train and get their own
record. Deep methods checkpoint every epoch beside the record folder and resume after a kill by default.

Under ``torchrun --nproc-per-node N -m cmh run ...`` the ranks join one process group
(:func:`cmh.methods._dist.init_from_env`), deep methods train data-parallel, every rank evaluates, and
rank 0 alone prints and writes records, codes and checkpoints (docs/scale.md).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cmh.cli.common import (
    add_dataset_arguments,
    add_device_argument,
    check_writable_dir,
    check_writable_file,
    int_list,
    load_dataset_from_args,
    seed_list,
)
from cmh.results import DATABASE_CODES, load_record


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="train a method, evaluate I→T and T→I, write result records",
        description="Train a method, evaluate I→T and T→I, and write one result record per (bits, seed). "
        "A record's file name carries its settings and dataset version, so a run with other options or another "
        "split gets its own record; a record that exists for exactly this run is shown instead of training "
        "again (--overwrite trains again). Deep methods write a checkpoint after every epoch to "
        "<out>/<dataset>/<method>/<bits>/.checkpoints/ and the same command after a kill resumes from the last "
        "epoch and writes the identical record; checkpoints are removed once the record is written "
        "(--keep-checkpoints keeps them, --no-resume starts from scratch).",
    )
    p.add_argument("method", help="method name (see `cmh list methods`)")
    add_dataset_arguments(p)
    p.add_argument("--bits", type=int_list, default=[32], help="code lengths, e.g. 16,32,64 (default 32)")
    p.add_argument("--seeds", type=seed_list, default=[0], help="method seeds, e.g. 0,1,2 (default 0)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a method option (repeatable)"
    )
    p.add_argument("--config", metavar="YAML", help="a YAML file of method option overrides")
    add_device_argument(p)
    p.add_argument("--out", default="results", help="results folder (default ./results)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing records instead of skipping those runs"
    )
    p.add_argument(
        "--database",
        choices=DATABASE_CODES,
        default="per-view",
        help="database codes: each view's own (per-view, default) or one code from both views "
        "(unified, the CMFH/SePH papers' protocol; methods with encode_pair)",
    )
    p.add_argument("--no-save", action="store_true", help="print the metrics but write no record")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the per-epoch checkpoints of deep methods after the record is written",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="deep methods: ignore (and delete) checkpoints of an interrupted run and train from scratch",
    )
    p.add_argument(
        "--save-codes", action="store_true", help="also write the codes beside each record (.codes.npz)"
    )
    p.add_argument(
        "--save-model",
        metavar="M.pt",
        help="also save the trained model with the dataset's feature pipeline (for cmh search / cmh encode); "
        "several bits/seeds go to M-<bits>bits-seed<seed>.pt",
    )
    p.set_defaults(func=run_command)


def method_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Options from ``--config`` then ``--set`` (later wins)."""
    from cmh.config import load_overrides, parse_set

    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_overrides(args.config))
    overrides.update(parse_set(args.set))
    return overrides


def run_command(args: argparse.Namespace) -> int:
    from cmh.methods import _dist

    args.device = _dist.init_from_env(args.device)  # torchrun: join the ranks (no-op in one process)
    try:
        return _run(args, Console(quiet=not _dist.is_writer()))
    finally:
        _dist.close()


def _run(args: argparse.Namespace, console: Console) -> int:
    from cmh.base import check_bits
    from cmh.identity import resolve_record_path
    from cmh.methods._dist import is_writer, rank0_value, world
    from cmh.registry import create_method
    from cmh.runner import (
        check_database_codes,
        checkpoint_dir_for,
        plan_record,
        remove_checkpoints,
        run_and_write,
        run_once,
    )

    overrides = method_overrides(args)
    for bits in args.bits:
        check_bits(bits)
    # fail fast on an unknown method or option, before any data is loaded
    probe = create_method(args.method, bits=args.bits[0], seed=args.seeds[0], device="cpu", **overrides)
    check_database_codes(probe, args.database)
    if not args.no_save:
        check_writable_dir(args.out, "--out")
    if args.save_model:
        check_writable_file(args.save_model, "--save-model")  # models of several runs go beside it
    if probe.kind != "deep" and world()[1] > 1:
        console.print(
            f"[yellow]{probe.name} is not a deep method: every rank trains it whole (no speed-up)[/]"
        )
    dataset = load_dataset_from_args(args)
    console.print(
        f"[bold]{probe.name}[/] on [bold]{dataset.name}[/] ({dataset.split.protocol} split: "
        f"{len(dataset.split.train)} train, {len(dataset.split.query)} query, {len(dataset.split.database)} database)"
    )
    rows = []
    for bits in args.bits:
        for seed in args.seeds:
            head = plan_record(args.method, dataset, bits, seed, overrides, args.database)
            path = rank0_value(resolve_record_path(args.out, head))  # rank 0's files decide
            if rank0_value(path.exists()) and not args.overwrite and not args.no_save:
                console.print(f"[yellow]{path} exists; showing it (use --overwrite to run again)[/]")
                if args.save_model:
                    console.print(
                        "[yellow]no model saved for a stored run; add --overwrite to train and save it[/]"
                    )
                if is_writer():
                    rows.append((load_record(path), path, True))
                continue
            ckpt = checkpoint_dir_for(path)
            if args.no_resume and is_writer():
                remove_checkpoints(ckpt)
            resuming = rank0_value(not args.no_save and any(ckpt.glob("*.pt")))  # also: ranks wait for rank 0
            console.print(
                f"[dim]{probe.name} {bits} bits, seed {seed}: "
                + ("resuming from its last checkpoint ...[/]" if resuming else "training ...[/]")
            )
            common = dict(
                return_codes=args.save_codes, database=args.database, return_method=bool(args.save_model)
            )
            if args.no_save:
                record = run_once(args.method, dataset, bits, seed, overrides, args.device, **common)
            else:
                record, path = run_and_write(
                    path,
                    args.method,
                    dataset,
                    bits,
                    seed,
                    overrides,
                    args.device,
                    keep_checkpoints=args.keep_checkpoints,
                    **common,
                )
            codes = record.pop("_codes", None)
            fitted = record.pop("_method", None)
            if fitted is not None and is_writer():
                from cmh.models import model_path, save_model

                saved = save_model(
                    fitted, model_path(args.save_model, bits, seed, len(args.bits) * len(args.seeds)), dataset
                )
                console.print(f"saved the model to {saved}")
            if codes is not None and not args.no_save and is_writer():
                _save_codes(path.with_suffix(".codes.npz"), codes, dataset)
            rows.append((record, path, False))
            console.print(
                f"{bits} bits, seed {seed}: I→T mAP {record['tasks']['i2t']['map']:.4f}, "
                f"T→I mAP {record['tasks']['t2i']['map']:.4f}" + ("" if args.no_save else f" -> {path}")
            )
    unified = ", unified database codes" if args.database == "unified" else ""
    console.print(results_table(rows, f"{probe.name} on {dataset.name}{unified}"))
    return 0


def _save_codes(path: Path, codes: dict[str, dict[str, Any]], dataset: Any) -> None:
    import numpy as np

    from cmh._atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            query_image=codes["query"]["image"],
            query_text=codes["query"]["text"],
            database_image=codes["database"]["image"],
            database_text=codes["database"]["text"],
            query_labels=dataset.part("query").labels,
            database_labels=dataset.part("database").labels,
        )


def results_table(rows: list[tuple[dict[str, Any], Path, bool]], title: str) -> Table:
    """Per-run rows plus a mean ± std row per bit length when there are several seeds."""
    table = Table(title=title)
    for col in ("bits", "seed", "I→T mAP", "T→I mAP", "I→T mAP@50", "T→I mAP@50", "fit s"):
        table.add_column(col, justify="right")
    by_bits: dict[int, list[dict[str, Any]]] = {}
    for rec, _path, cached in rows:
        by_bits.setdefault(rec["bits"], []).append(rec)
        t = rec["tasks"]
        table.add_row(
            str(rec["bits"]),
            str(rec["seed"]) + (" (stored)" if cached else ""),
            f"{t['i2t']['map']:.4f}",
            f"{t['t2i']['map']:.4f}",
            f"{t['i2t'].get('map@50', float('nan')):.4f}",
            f"{t['t2i'].get('map@50', float('nan')):.4f}",
            f"{rec['timings']['fit_s']:.1f}",
        )
    for bits, recs in by_bits.items():
        if len(recs) > 1:
            cells = []
            for task in ("i2t", "t2i"):
                vals = [r["tasks"][task]["map"] for r in recs]
                cells.append(f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}")
            table.add_row(f"[bold]{bits}[/]", f"mean of {len(recs)}", *cells, "", "", "", style="bold")
    return table
