"""``cmh records migrate``: move records to the file names of their identity (settings, dataset version).

Records written before cmh named files by identity all sit at ``seed<k>.json``; a record made with
non-default settings or another split belongs at ``seed<k>.<tag>.json`` (:mod:`cmh.identity`). The command
renames each such record (and its ``.codes.npz``) in place; it never overwrites a file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from cmh.errors import CMHError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("records", help="maintain a results folder (migrate file names to record identities)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    m = verbs.add_parser("migrate", help="rename records to the file names of their identity")
    m.add_argument("--results", default="results", help="results folder (default ./results)")
    m.add_argument("--dry-run", action="store_true", help="list the renames without making them")
    m.set_defaults(func=migrate_command)


def planned_moves(root: str | Path) -> list[tuple[Path, Path]]:
    """``(from, to)`` for every record under ``root`` whose file name is not that of its identity."""
    from cmh.identity import canonical_record_path
    from cmh.results import load_records

    records, _skipped = load_records(root)
    moves = []
    for rec in records:
        path, target = Path(rec["_path"]), canonical_record_path(root, rec)
        if target.resolve() != path.resolve():
            moves.append((path, target))
    return moves


def migrate_command(args: argparse.Namespace) -> int:
    console = Console()
    root = Path(args.results)
    if not root.is_dir():
        raise CMHError(f"results folder '{root}' not found; pass --results DIR")
    moves = planned_moves(root)
    clashes = [dst for _src, dst in moves if dst.exists()]
    if clashes:
        raise CMHError(
            f"'{clashes[0]}' exists already; move or delete it, then run cmh records migrate again"
        )
    for src, dst in moves:
        console.print(f"{src} -> {dst.name}")
        if not args.dry_run:
            os.replace(src, dst)
            codes = src.with_suffix(".codes.npz")
            if codes.exists():
                os.replace(codes, dst.with_suffix(".codes.npz"))
    verb = "would move" if args.dry_run else "moved"
    console.print(f"{verb} {len(moves)} record(s); the others already carry their identity's name")
    return 0
