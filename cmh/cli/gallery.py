"""``cmh gallery``: the codes behind the leaderboard's retrieval galleries (``results/<dataset>/gallery.yaml``).

See :mod:`cmh.gallery`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from cmh.gallery import BITS, GALLERY_DATASETS, N_QUERIES, TOP

    p = sub.add_parser(
        "gallery",
        help="retrain each method's best run and store the codes of the leaderboard's retrieval gallery",
        description=f"For {', '.join(GALLERY_DATASETS)}: pick {N_QUERIES} seeded query captions, retrain every "
        f"method's best {BITS}-bit seed (by T→I mAP) from its record, check it reproduces the record, and write "
        f"the caption and database image codes to <results>/<dataset>/gallery.yaml; `cmh leaderboard` then "
        f"draws the top {TOP} photos per method.",
    )
    p.add_argument("--results", default="results", help="records folder (default ./results)")
    p.add_argument("--dataset", default=GALLERY_DATASETS[0], choices=GALLERY_DATASETS)
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="the dataset's files (default: as in the leaderboard grid)",
    )
    p.add_argument("--methods", default=None, help="only these methods (comma-separated); others are kept")
    p.set_defaults(func=gallery_command)


def gallery_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cmh.gallery import build_gallery

    if args.data is not None:
        from cmh.data.catalog import load_dataset

        dataset = load_dataset(args.dataset, args.data)
    else:
        from cmh.sweep import load_grid, load_grid_dataset

        dataset = load_grid_dataset(load_grid("leaderboard"), args.dataset)
    console = Console()
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    path = build_gallery(args.results, dataset, methods, console)
    console.print(f"wrote {path}; run `cmh leaderboard` to draw it")
    return 0
