"""``cmh run METHOD``: train, encode, evaluate both tasks and write one result record per (bits, seed)."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cmh.cli.common import add_dataset_arguments, add_device_argument, int_list, load_dataset_from_args
from cmh.results import DATABASE_CODES, load_record, record_path, write_record


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train a method, evaluate I→T and T→I, write result records")
    p.add_argument("method", help="method name (see `cmh list methods`)")
    add_dataset_arguments(p)
    p.add_argument("--bits", type=int_list, default=[32], help="code lengths, e.g. 16,32,64 (default 32)")
    p.add_argument("--seeds", type=int_list, default=[0], help="method seeds, e.g. 0,1,2 (default 0)")
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
    from cmh.base import check_bits
    from cmh.registry import create_method
    from cmh.runner import check_database_codes, run_once

    console = Console()
    overrides = method_overrides(args)
    for bits in args.bits:
        check_bits(bits)
    # fail fast on an unknown method or option, before any data is loaded
    probe = create_method(args.method, bits=args.bits[0], seed=args.seeds[0], device="cpu", **overrides)
    check_database_codes(probe, args.database)
    dataset = load_dataset_from_args(args)
    console.print(
        f"[bold]{probe.name}[/] on [bold]{dataset.name}[/] ({dataset.split.protocol} split: "
        f"{len(dataset.split.train)} train, {len(dataset.split.query)} query, {len(dataset.split.database)} database)"
    )
    rows = []
    for bits in args.bits:
        for seed in args.seeds:
            path = record_path(args.out, dataset.name, probe.name, bits, seed, args.database)
            if path.exists() and not args.overwrite and not args.no_save:
                console.print(f"[yellow]{path} exists; showing it (use --overwrite to run again)[/]")
                if args.save_model:
                    console.print(
                        "[yellow]no model saved for a stored run; add --overwrite to train and save it[/]"
                    )
                rows.append((load_record(path), path, True))
                continue
            console.print(f"[dim]{probe.name} {bits} bits, seed {seed}: training ...[/]")
            record = run_once(
                args.method,
                dataset,
                bits,
                seed,
                overrides,
                args.device,
                return_codes=args.save_codes,
                database=args.database,
                return_method=bool(args.save_model),
            )
            codes = record.pop("_codes", None)
            fitted = record.pop("_method", None)
            if fitted is not None:
                from cmh.models import model_path, save_model

                saved = save_model(
                    fitted, model_path(args.save_model, bits, seed, len(args.bits) * len(args.seeds)), dataset
                )
                console.print(f"saved the model to {saved}")
            if not args.no_save:
                path = write_record(record, args.out)
                if codes is not None:
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
