"""``cmh list methods|datasets``: what is registered."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered methods or datasets")
    p.add_argument("what", choices=["methods", "datasets"], help="what to list")
    p.add_argument("--kind", choices=["shallow", "deep"], help="only methods of this kind")
    p.set_defaults(func=list_command)


def capabilities(cls: type) -> list[str]:
    """What a method class offers beyond per-view feature codes: ``pixels`` and/or ``unified``."""
    import dataclasses

    from cmh.base import has_unified_codes

    fields = (
        {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()
    )
    return [
        name
        for name, ok in (
            ("pixels", "image_backbone" in fields and getattr(cls, "pixels", True)),
            ("unified", has_unified_codes(cls)),
        )
        if ok
    ]


def list_command(args: argparse.Namespace) -> int:
    console = Console()
    if args.what == "datasets":
        from cmh.data.catalog import CATALOG

        table = Table(title="datasets (`--dataset NAME`, files via `--data PATH`)")
        table.add_column("name")
        table.add_column("what")
        for name in sorted(CATALOG):
            table.add_row(name, CATALOG[name])
        console.print(table)
        return 0
    from cmh.registry import get_method_class, list_methods

    table = Table(title="registered methods")
    for col in ("name", "kind", "supervised", "also", "paper"):
        table.add_column(col)
    for name in list_methods(kind=args.kind):
        cls = get_method_class(name)
        table.add_row(
            name, cls.kind, "yes" if cls.supervised else "no", ", ".join(capabilities(cls)), cls.paper
        )
    console.print(table)
    console.print(
        "also: pixels = trains from raw images (`--set image_backbone=...`); unified = database codes"
    )
    console.print("from both views (`cmh run --database unified`)")
    return 0
