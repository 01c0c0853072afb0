"""``cmh data info|convert``: inspect a dataset, or write it as cmh's native ``.npz`` (see docs/data.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cmh.cli.common import check_writable_file, seed_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cmh data`` and its sub-commands to ``sub``."""
    p = sub.add_parser("data", help="inspect datasets (info) or convert them to cmh's .npz (convert)")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=_help(p))

    info = dsub.add_parser(
        "info", help="rows, dims, sparsity, classes, split sizes and content hash of a dataset"
    )
    info.add_argument(
        "source",
        nargs="?",
        default="synthetic",
        help="a dataset name (see `cmh list datasets`) or a path (.npz, .yaml, .mat, folder)",
    )
    _add_source_options(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    info.set_defaults(func=info_command)

    conv = dsub.add_parser("convert", help="write a dataset (any supported layout) as a native cmh .npz")
    conv.add_argument("source", help="a dataset name or a path (.npz, .yaml, .mat, folder)")
    conv.add_argument("--out", required=True, metavar="FILE.npz", help="output file (written atomically)")
    conv.add_argument(
        "--compress", action="store_true", help="zip-compress the arrays (smaller, slower to load)"
    )
    conv.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_source_options(conv)
    conv.set_defaults(func=convert_command)


def _help(p: argparse.ArgumentParser):
    def show(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    return show


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name when SOURCE is a path (e.g. mirflickr25k: its layout and split protocol)",
    )
    p.add_argument(
        "--image-features",
        default=None,
        metavar="FILE",
        help="image features (.npy/.npz/.mat/.h5, one row per pair) for files without them",
    )
    p.add_argument("--image-key", default=None, metavar="KEY", help="array name inside --image-features")
    p.add_argument(
        "--split-seed", type=seed_arg, default=0, help="seed of random split protocols (default 0)"
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="split protocol for data without a stored split (mirflickr25k, nus-wide, coco, random)",
    )


def load_from_args(args: argparse.Namespace) -> Any:
    """The dataset named or pointed to by ``args.source`` (+ ``--dataset`` and loader options)."""
    from cmh.data.catalog import DATASETS, load_dataset

    kwargs: dict[str, Any] = {}
    if args.image_features:
        kwargs["image_features"] = args.image_features
        if args.image_key:
            kwargs["image_key"] = args.image_key
    if args.protocol:
        kwargs["protocol"] = args.protocol
    source = args.source
    if args.dataset is not None:
        return load_dataset(args.dataset, source, split_seed=args.split_seed, **kwargs)
    if source.lower() in DATASETS and not Path(source).exists():
        return load_dataset(source, None, split_seed=args.split_seed, **kwargs)
    return load_dataset(None, source, split_seed=args.split_seed, **kwargs)


def summarize(ds: Any) -> dict[str, Any]:
    """Everything ``cmh data info`` shows, as a JSON-able dict."""
    labels = ds.labels
    card = labels.sum(axis=1)
    out = ds.describe()

    def density(x: Any) -> float | None:
        if x is None:
            return None
        nnz = x.nnz if sp.issparse(x) else int(np.count_nonzero(x))
        return float(nnz / max(1, x.shape[0] * x.shape[1]))

    out.update(
        image_density=density(ds.image),
        text_density=density(ds.text),
        text_terms_per_item=float(np.asarray((ds.text != 0).sum(axis=1)).mean()),
        labels_min=int(card.min()),
        labels_max=int(card.max()),
        class_counts=[int(c) for c in labels.sum(axis=0)],
        image_paths=None if ds.image_paths is None else len(ds.image_paths),
        memory_mapped=isinstance(ds.image, np.memmap),
        content_hash=ds.content_hash(),
        source=ds.meta.get("source"),
        format=ds.meta.get("format", "generated" if ds.name == "synthetic" else None),
    )
    if ds.meta.get("class_names"):
        out["class_names"] = list(ds.meta["class_names"])
    return out


def info_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    ds = load_from_args(args)
    s = summarize(ds)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    table = Table(title=f"dataset {s['name']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}% non-zero"

    sizes = s["split"]["sizes"]
    rows = [
        ("source", f"{s['source'] or '(generated)'} [{s['format'] or '?'}]"),
        ("rows (pairs)", f"{s['n']:,}"),
        (
            "image",
            "-"
            if s["image_dim"] is None
            else f"{s['image_dim']}-d float32, {pct(s['image_density'])}"
            + (" (memory map)" if s["memory_mapped"] else ""),
        ),
        ("image paths", "-" if s["image_paths"] is None else f"{s['image_paths']:,}"),
        (
            "text",
            f"{s['text_dim']}-d {'sparse' if s['text_sparse'] else 'dense'}, {pct(s['text_density'])}, "
            f"{s['text_terms_per_item']:.2f} terms/item",
        ),
        (
            "classes",
            str(s["classes"])
            + (
                f" ({', '.join(s['class_names'][:10])}{', ...' if len(s['class_names']) > 10 else ''})"
                if s.get("class_names")
                else ""
            ),
        ),
        ("labels per item", f"{s['labels_per_item']:.2f} (min {s['labels_min']}, max {s['labels_max']})"),
        ("class sizes", f"min {min(s['class_counts']):,}, max {max(s['class_counts']):,}"),
        (
            "split",
            s["split"]["protocol"] + ("" if s["split"]["seed"] is None else f" (seed {s['split']['seed']})"),
        ),
        ("train / query / database", f"{sizes['train']:,} / {sizes['query']:,} / {sizes['database']:,}"),
        ("content hash", s["content_hash"]),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
    return 0


def convert_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cmh.data.loaders import save_npz
    from cmh.errors import DataError

    out = Path(args.out)
    if out.suffix != ".npz":
        raise DataError(f"--out '{out}' must end in .npz")
    if out.exists() and not args.force:
        raise DataError(f"'{out}' exists; pass --force to overwrite it")
    check_writable_file(out, "--out")
    ds = load_from_args(args)
    path = save_npz(ds, out, compress=args.compress)
    size = path.stat().st_size / 2**20
    Console().print(
        f"wrote {path} ({size:.1f} MiB): {ds.name}, {ds.n:,} pairs, "
        f"{ds.split.protocol} split, content hash {ds.content_hash()}"
    )
    return 0
