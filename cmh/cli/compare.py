"""``cmh compare`` (tables from result records) and ``cmh leaderboard`` (regenerate ``leaderboards/``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmh.cli.common import check_writable_dir, check_writable_file, int_list
from cmh.errors import CMHError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` and ``leaderboard`` to ``sub``."""
    p = sub.add_parser("compare", help="compare recorded methods side by side (SSAH Table 2 layout)")
    p.add_argument("--results", default="results", help="results folder (default ./results)")
    p.add_argument("--dataset", help="only this dataset (default: every recorded dataset)")
    p.add_argument("--methods", help="rows, in this order (comma-separated; default: all recorded)")
    p.add_argument("--bits", type=int_list, help="columns, e.g. 16,32,64 (default: all recorded)")
    p.add_argument(
        "--metric",
        default="map",
        help="map (default), map@50 (the unsupervised papers' metric), map@1000, map_tie_avg, p_r2, ndcg@100, ...",
    )
    p.add_argument("--reported", action="store_true", help="add published numbers (cmh/reported/*.csv)")
    p.add_argument(
        "--against", metavar="METHOD", help="paired significance test of every method against METHOD"
    )
    p.add_argument(
        "--dataset-version",
        metavar="HASH",
        help="use records of this dataset version (content-hash prefix) instead of the most common",
    )
    p.add_argument(
        "--database",
        choices=["per-view", "unified"],
        help="records made with per-view (default) or unified database codes (`cmh run --database`)",
    )
    p.add_argument("--format", choices=["table", "md", "csv", "json"], default="table", help="output format")
    p.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of the terminal")
    p.set_defaults(func=compare_command)

    lb = sub.add_parser("leaderboard", help="regenerate leaderboards/ from results/ and the reported numbers")
    lb.add_argument("--results", default="results", help="results folder (default ./results)")
    lb.add_argument("--out", default="leaderboards", help="leaderboard folder (default ./leaderboards)")
    lb.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if regeneration would change any file (for CI)",
    )
    lb.set_defaults(func=leaderboard_command)


def compare_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cmh._atomic import atomic_write_text
    from cmh.compare import FORMATTERS, compare, render_rich

    if args.output:
        check_writable_file(args.output, "--output")
    if not Path(args.results).is_dir():
        raise CMHError(
            f"results folder '{args.results}' not found; run `cmh run METHOD` first or pass --results DIR"
        )
    tables, skipped = compare(
        args.results,
        args.dataset,
        methods=args.methods.split(",") if args.methods else None,
        bits=args.bits,
        metric=args.metric,
        reported=args.reported,
        against=args.against,
        version=args.dataset_version,
        database=args.database,
    )
    err = Console(stderr=True)
    for path, why in skipped:
        err.print(f"[yellow]skipped {path}: {why}[/]")
    if not tables:
        raise CMHError(f"no result records under '{args.results}'; run `cmh run METHOD` first")
    if args.format == "table" and not args.output:
        console = Console()
        for table in tables:
            console.print(render_rich(table, console.width))
        return 0
    fmt = FORMATTERS.get(args.format, FORMATTERS["md"])
    text = "\n".join(fmt(t) for t in tables)
    if args.output:
        atomic_write_text(args.output, text)
        err.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def leaderboard_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cmh.leaderboard import check_leaderboard, write_leaderboard

    console = Console()
    if args.check:
        problems, notes = check_leaderboard(args.results, args.out)
        for note in notes:
            console.print(f"[yellow]{note}[/]")
        if problems:
            for p in problems:
                console.print(f"[red]{p}[/]")
            console.print(
                f"[red]{args.out} is out of date[/]: regenerate with `cmh leaderboard` and commit it"
            )
            return 1
        console.print(f"{args.out} is up to date with {args.results}")
        return 0
    check_writable_dir(args.out, "--out")
    changed, notes = write_leaderboard(args.results, args.out)
    for note in notes:
        console.print(f"[yellow]{note}[/]")
    console.print(
        f"{len(changed)} file(s) changed in {args.out}" + (": " + ", ".join(changed) if changed else "")
    )
    return 0
