"""``cmh search``: type a caption (or give a photo) and see what a saved model retrieves.

See :mod:`cmh.search` and docs/search.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cmh.cli.common import add_device_argument, check_writable_file
from cmh.errors import CMHError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="retrieve photos for a caption (or captions for a photo) with a saved model",
        description="Load a model saved by `cmh run --save-model`, encode a database (a dataset's split part, "
        "or a `cmh encode` shard directory) and print the top-k items by Hamming distance (ties by index, as "
        "in the evaluation).",
    )
    p.add_argument("--model", required=True, metavar="M.pt", help="a model written by cmh run --save-model")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", metavar="TEXT", help="a caption; retrieves images")
    q.add_argument("--image", metavar="PHOTO", help="a photo; retrieves texts")
    p.add_argument(
        "--dataset", default=None, help="database dataset (default: the one the model was trained on)"
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="its files (default: where the model's data was loaded from)",
    )
    p.add_argument("--split-seed", type=int, default=None, help="split seed (default: the model's)")
    p.add_argument(
        "--part", choices=("database", "query", "train"), default="database", help="split part searched"
    )
    p.add_argument("--codes-dir", metavar="DIR", help="search a `cmh encode` shard directory instead")
    p.add_argument("--top", type=int, default=10, help="results shown (default 10)")
    p.add_argument("--show", metavar="OUT.png", help="also draw the query and its results to a PNG")
    p.add_argument(
        "--query-labels", metavar="A,B", help="the query's labels (names or ids): marks relevant items"
    )
    p.add_argument(
        "--drop-unknown",
        action="store_true",
        help="ignore query words outside the vocabulary instead of failing",
    )
    p.add_argument("--weights", metavar="PATH", help="backbone weights for --image (cnn-f/vgg19 models)")
    add_device_argument(p, default="cpu")
    p.set_defaults(func=search_command)


def _database(args: argparse.Namespace, saved: Any, modality: str) -> Any:
    from cmh.data.catalog import load_dataset
    from cmh.search import database_from_dataset, database_from_shards

    if args.codes_dir:
        return database_from_shards(saved, args.codes_dir, modality)
    trained = saved.dataset or {}
    name = args.dataset or (trained.get("name") if args.data is None else None)
    path = (
        args.data
        if args.data is not None
        else (trained.get("source") if args.dataset in (None, trained.get("name")) else None)
    )
    seed = args.split_seed if args.split_seed is not None else int(trained.get("split_seed") or 0)
    if name is None and path is None:
        raise CMHError("the model records no dataset; pass --dataset NAME [--data PATH] or --codes-dir DIR")
    if path is not None and not Path(path).exists() and args.data is None:
        raise CMHError(f"the model's data '{path}' is not here; pass --data PATH (e.g. runs/coco_mini)")
    return database_from_dataset(saved, load_dataset(name, path, split_seed=seed), modality, args.part)


def search_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.models import load_model
    from cmh.search import image_query_codes, parse_labels, search, text_query_codes

    if args.top < 1:
        raise CMHError(f"--top must be positive, got {args.top}")
    if args.show:
        check_writable_file(args.show, "--show")
    saved = load_model(args.model, device=args.device)
    if args.text is not None:
        query = text_query_codes(saved, args.text, args.drop_unknown)
        modality = "image"
    else:
        query = image_query_codes(saved, args.image, args.weights)
        modality = "text"
    db = _database(args, saved, modality)
    classes = db.labels.shape[1] if db.labels is not None else 0
    qlab = parse_labels(args.query_labels, db.class_names, classes) if classes else None
    if args.query_labels and not classes:
        raise CMHError("--query-labels needs a database with labels")
    hits = search(db, query, args.top, qlab)

    m = saved.method
    shown = f"'{args.text}'" if args.text is not None else Path(args.image).name
    table = Table(
        title=f"{m.name} {m.bits} bits: {shown} -> {modality}s of {db.where} ({len(db.codes):,} items)"
    )
    for col, just in (("rank", "right"), ("dist", "right"), ("id", "right")):
        table.add_column(col, justify=just)
    table.add_column("caption" if modality == "text" else "file")
    table.add_column("labels")
    if qlab is not None:
        table.add_column("relevant", justify="center")
    for h in hits:
        what = h.text if modality == "text" else (Path(h.image).name if h.image else "")
        row = [str(h.rank), str(h.distance), str(h.row), what or "", ", ".join(h.labels)]
        if qlab is not None:
            row.append("[green]yes[/]" if h.relevant else "[red]no[/]")
        table.add_row(*row)
    console = Console()
    console.print(table)
    if args.show:
        _draw(args, saved, hits, modality, shown)
        console.print(f"wrote {args.show}")
    return 0


def _draw(args: argparse.Namespace, saved: Any, hits: list[Any], modality: str, shown: str) -> None:
    from cmh._atomic import atomic_write_bytes
    from cmh.figures import Cell, Row, draw_rows

    if modality == "image" and any(h.image is None for h in hits):
        raise CMHError(
            "--show needs the database's image files (a dataset with image paths, not a shard directory)"
        )
    if args.text is not None:
        first = Cell(text=args.text, caption="query")
    else:
        first = Cell(image=args.image, caption="query")
    cells = [first] + [
        Cell(
            image=h.image if modality == "image" else None,
            text=None if modality == "image" else (h.text or f"item {h.row}"),
            caption=f"#{h.rank}  d={h.distance}  id {h.row}",
            relevant=h.relevant,
        )
        for h in hits
    ]
    m = saved.method
    png = draw_rows([Row(f"{m.name}, {m.bits} bits", cells)], title=f"{m.name}: {shown}")
    atomic_write_bytes(args.show, png)
