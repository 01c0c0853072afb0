"""``cmh encode``: a saved model's codes for a feature file on disk, as resumable packed-bit shards.

See :mod:`cmh.data.shards` for the layout and docs/search.md ("Sharded encoding").
"""

from __future__ import annotations

import argparse
from typing import Any

from cmh.cli.common import add_device_argument, check_writable_dir
from cmh.errors import CMHError


def register(sub: argparse._SubParsersAction) -> None:
    from cmh.data.shards import DEFAULT_BATCH, DEFAULT_SHARD_SIZE

    p = sub.add_parser(
        "encode",
        help="encode a feature file with a saved model into packed-bit code shards",
        description="Encode features that need not fit in memory (.npy memory-mapped, HDF5 / MATLAB v7.3 "
        ".mat read in row blocks) with a model saved by `cmh run --save-model`. Shards are written one by "
        "one; an interrupted run resumes from the finished shards.",
    )
    p.add_argument("--model", required=True, metavar="M.pt", help="a model written by cmh run --save-model")
    p.add_argument("--features", required=True, metavar="FILE", help=".npy, .h5/.hdf5, .mat (v5/v7.3), .npz")
    p.add_argument(
        "--key", default=None, help="the array inside an .h5/.mat/.npz file (optional if only one)"
    )
    p.add_argument(
        "--modality",
        choices=("image", "text"),
        default=None,
        help="which encoder to use (default: the one whose input width matches the features)",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="shard directory (manifest.json + shard-*.npy)"
    )
    p.add_argument("--labels", default=None, metavar="FILE", help="optional (N, classes) labels to store")
    p.add_argument("--labels-key", default=None, help="the array inside the labels file")
    p.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"rows per shard (default {DEFAULT_SHARD_SIZE:,})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help=f"rows read and encoded at once (default {DEFAULT_BATCH})",
    )
    add_device_argument(p)
    p.add_argument(
        "--restart", action="store_true", help="discard shards of an earlier run with other settings"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=encode_command)


def pick_modality(saved: Any, dim: int, wanted: str | None) -> str:
    """The encoder for ``dim``-wide features: ``wanted``, or the modality whose training width is ``dim``."""
    dims = {"image": saved.dataset.get("image_dim"), "text": saved.dataset.get("text_dim")}
    method = saved.method
    if getattr(method, "dims", None) and isinstance(method.dims, dict):
        dims = {m: method.dims.get(m, dims[m]) for m in dims}
    if getattr(method, "raw_images", False):
        dims["image"] = None  # trained from pixels: no image features to encode
    if wanted is None:
        fits = [m for m, d in dims.items() if d == dim]
        if len(fits) != 1:
            raise CMHError(
                f"cannot tell whether {dim}-d features are images or texts for this model "
                f"(image {dims['image']}-d, text {dims['text']}-d); pass --modality image|text"
            )
        return fits[0]
    if dims[wanted] is None and getattr(method, "raw_images", False) and wanted == "image":
        raise CMHError("this model was trained on raw images; its image encoder takes photos, not features")
    if dims[wanted] is not None and dims[wanted] != dim:
        raise CMHError(
            f"the features are {dim}-d but the model's {wanted} encoder takes {dims[wanted]}-d features; "
            "encode features made the same way as the training ones"
        )
    return wanted


def encode_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from cmh.data.loaders import read_array
    from cmh.data.shards import FeatureRows, file_sha256, write_shards
    from cmh.models import load_model

    check_writable_dir(args.out, "--out")
    saved = load_model(args.model, device=args.device)
    feats = FeatureRows(args.features, args.key)
    modality = pick_modality(saved, feats.d, args.modality)
    labels = None
    if args.labels:
        import numpy as np

        from cmh.data.loaders import as_labels

        labels = as_labels(np.asarray(read_array(args.labels, args.labels_key, what="labels")), args.labels)
    m = saved.method
    encode = m.encode_image if modality == "image" else m.encode_text
    source = {
        "model": {
            "file": str(Path(args.model).resolve()),
            "sha256": file_sha256(args.model),
            "method": m.name,
            "bits": m.bits,
            "seed": m.seed,
        },
        "features": feats.describe(),
    }
    manifest = write_shards(
        args.out,
        encode,
        feats,
        m.bits,
        modality,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        labels=labels,
        source=source,
        progress=not args.quiet,
        restart=args.restart,
    )
    Console().print(
        f"wrote {args.out}: {manifest['count']:,} {modality} codes of {m.bits} bits in "
        f"{len(manifest['shards'])} shard(s)" + (", with labels" if labels is not None else "")
    )
    return 0
