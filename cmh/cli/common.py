"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
from typing import Any

from cmh.errors import CMHError


def int_list(text: str) -> list[int]:
    """Parse ``"16,32,64"`` into ``[16, 32, 64]``."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}' (e.g. 16,32,64)"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default=None, help="dataset name (default: synthetic; see `cmh list datasets`)"
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="dataset files: a folder, .mat, .npz or YAML spec (see docs/data.md)",
    )
    p.add_argument(
        "--image-features",
        metavar="FILE",
        help="image features (.npy/.npz/.mat/.h5, one row per pair) for files that have none",
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the random query/train split (default 0)"
    )


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    from cmh.data.catalog import load_dataset

    extra = {"image_features": args.image_features} if args.image_features else {}
    return load_dataset(args.dataset, args.data, split_seed=args.split_seed, **extra)


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CMHError(message)
