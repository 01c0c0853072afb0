"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from cmh.errors import CMHError


def int_list(text: str) -> list[int]:
    """Parse ``"16,32,64"`` into ``[16, 32, 64]``; an empty item (``16,,32``) or a repeated value is an error."""
    items = text.replace(" ", "").split(",")
    if not text.strip() or any(not v for v in items):
        raise argparse.ArgumentTypeError(
            f"'{text}' has an empty item; write comma-separated integers without gaps, e.g. 16,32,64"
        )
    try:
        values = [int(v) for v in items]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}' (e.g. 16,32,64)"
        ) from None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"'{text}' repeats {', '.join(map(str, repeated))}; give each value once"
        )
    return values


def seed_arg(text: str) -> int:
    """One seed (``--split-seed``): a whole number ``0 <= seed < 2**32`` (what numpy and torch accept)."""
    from cmh.config import check_seed
    from cmh.errors import ConfigError

    try:
        return check_seed(int(text), "a seed")
    except ValueError as exc:  # ConfigError is a ValueError too
        msg = str(exc) if isinstance(exc, ConfigError) else f"expected a whole number, got '{text}'"
        raise argparse.ArgumentTypeError(msg) from None


def seed_list(text: str) -> list[int]:
    """Parse ``--seeds 0,1,2``: :func:`int_list` whose values are valid seeds (:func:`seed_arg`)."""
    return [seed_arg(str(v)) for v in int_list(text)]


def device_arg(text: str) -> str:
    """A ``--device`` value: ``auto``, or a device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if text == "auto":
        return text
    from cmh.base import resolve_device

    try:
        resolve_device(text)
    except CMHError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def check_writable_dir(path: str | Path, option: str) -> Path:
    """Fail before any work when folder ``path`` (given with ``option``, e.g. ``--out``) cannot be written.

    The folder need not exist yet (it is created when the first file is written); its nearest existing
    ancestor must be a folder this process can create files in. Nothing is created.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CMHError(f"{option} '{path}' is a file, not a folder; choose a folder for {option}")
    _check_can_create(p, option, str(path))
    return p


def check_writable_file(path: str | Path, option: str) -> Path:
    """Fail before any work when file ``path`` (given with ``option``) cannot be written (see
    :func:`check_writable_dir`); the message names the user's path, never a temporary file."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CMHError(f"{option} '{path}' is a folder; name a file, e.g. {Path(path) / 'out.json'}")
    _check_can_create(p.parent, option, str(path))
    return p


def _check_can_create(folder: Path, option: str, shown: str) -> None:
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise CMHError(
            f"{option} '{shown}' cannot be created: '{probe}' is a file, not a folder; choose another path"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise CMHError(
            f"{option} '{shown}' is not writable ({reason} in '{probe}'); choose a folder you can write to"
        ) from None


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
        "--split-seed", type=seed_arg, default=0, help="seed of the random query/train split (default 0)"
    )


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    from cmh.data.catalog import load_dataset

    extra = {"image_features": args.image_features} if args.image_features else {}
    return load_dataset(args.dataset, args.data, split_seed=args.split_seed, **extra)


def add_device_argument(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device``, checked by :func:`device_arg` as the parser reads it (an absent GPU is a one-line error)."""
    first = (
        "auto (GPU when present), cpu"
        if default == "auto"
        else f"{default} (default), auto (GPU when present)"
    )
    p.add_argument("--device", type=device_arg, default=default, help=f"{first}, cuda, cuda:1, ...")
