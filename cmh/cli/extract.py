"""``cmh extract image|text|coco-mini``: image features with a backbone, bag-of-words texts, the coco_mini set.

See docs/extract.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cmh.cli.common import add_device_argument, check_writable_file, seed_arg


def _default_coco_mini() -> str:
    base = os.environ.get("CMH_DATA")
    if base:
        return str(Path(base) / "coco_mini")
    return str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_mini")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cmh extract`` and its sub-commands to ``sub``."""
    from cmh.extract.backbones import BACKBONES

    p = sub.add_parser(
        "extract", help="extract image features (CNN backbones) and bag-of-words text features"
    )
    esub = p.add_subparsers(dest="extract_what", metavar="WHAT")

    names = ", ".join(f"{k} ({v.feature_dim}-d)" for k, v in BACKBONES.items())
    pi = esub.add_parser(
        "image",
        help="images (folder or list) -> features .npz",
        description=f"Extract one feature row per image. Backbones: {names}. Interrupted runs resume from "
        "<out>.partial/; unreadable images are skipped and listed in <out>.skipped.txt.",
    )
    pi.add_argument(
        "--backbone", default="efficientnet-lite0", help="efficientnet-lite0 (default), cnn-f, vgg19"
    )
    pi.add_argument(
        "--images",
        required=True,
        metavar="DIR|LIST.txt",
        help="a folder (searched recursively) or a text file with one image path per line",
    )
    pi.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    pi.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="weights file (cnn-f: imagenet-vgg-f.mat; vgg19: torchvision state_dict; "
        "efficientnet-lite0: defaults to the installed package)",
    )
    pi.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    pi.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding processes (default min(4, CPU count); 0 = in the main process)",
    )
    add_device_argument(pi)
    pi.add_argument("--fp32", action="store_true", help="float32 on the GPU too (default there: float16)")
    pi.add_argument("--chunk-size", type=int, default=1024, help="rows per resumable chunk (default 1024)")
    pi.add_argument(
        "--restart", action="store_true", help="discard an unfinished run's chunks and start over"
    )
    pi.add_argument("--quiet", action="store_true", help="no progress bar")
    pi.set_defaults(func=_run_image)

    pt = esub.add_parser(
        "text",
        help="tags/captions (jsonl, csv, txt) -> bag-of-words .npz",
        description="Bag of words as in DCMH (binary presence of the N most frequent tags) and SSAH (N-d BoW of "
        "MS-COCO captions, stop words removed). Rows sharing a key are merged (several captions).",
    )
    pt.add_argument("--input", required=True, metavar="FILE", help=".jsonl, .csv (with header) or .txt")
    pt.add_argument(
        "--field",
        default="captions",
        help="the field/column holding the text (default captions); 'tags' selects tag mode",
    )
    pt.add_argument(
        "--mode",
        choices=("tags", "captions"),
        default=None,
        help="tags: whole tags, no stop words; captions: words minus English stop words "
        "(default: tags when --field is tags)",
    )
    pt.add_argument("--key", default=None, help="field identifying the item (default: image/id/key/name)")
    pt.add_argument(
        "--vocab-size", type=int, default=2000, help="keep the N most frequent terms (default 2000)"
    )
    pt.add_argument("--counts", action="store_true", help="term counts instead of 0/1 presence")
    pt.add_argument("--out", required=True, metavar="FILE.npz", help="output file (+ FILE.npz.vocab.txt)")
    pt.set_defaults(func=_run_text)

    pc = esub.add_parser(
        "coco-mini",
        help="build the coco_mini dataset .npz (image features + caption BoW + labels + split)",
    )
    pc.add_argument(
        "--data",
        default=_default_coco_mini(),
        metavar="DIR",
        help="the coco_mini folder (default $CMH_DATA/coco_mini or ../shared/data/coco_mini)",
    )
    pc.add_argument(
        "--out",
        default="runs/coco_mini/coco_mini.npz",
        metavar="FILE.npz",
        help="dataset file to write (default runs/coco_mini/coco_mini.npz)",
    )
    pc.add_argument("--backbone", default="efficientnet-lite0")
    pc.add_argument("--weights", default=None, metavar="PATH")
    pc.add_argument("--vocab-size", type=int, default=2000)
    pc.add_argument("--n-query", type=int, default=30, help="random queries (default 30)")
    pc.add_argument("--split-seed", type=seed_arg, default=0)
    pc.add_argument("--batch-size", type=int, default=32)
    pc.add_argument("--workers", type=int, default=None)
    add_device_argument(pc)
    pc.add_argument("--quiet", action="store_true")
    pc.set_defaults(func=_run_coco_mini)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_image(args: argparse.Namespace) -> int:
    from cmh.extract.pipeline import extract_images

    check_writable_file(args.out, "--out")
    r = extract_images(
        args.images,
        args.out,
        args.backbone,
        weights=args.weights,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        fp16=False if args.fp32 else None,
        chunk_size=args.chunk_size,
        restart=args.restart,
        progress=not args.quiet,
    )
    resumed = f", {r.resumed_chunks} chunk(s) resumed" if r.resumed_chunks else ""
    print(
        f"wrote {r.out}: {r.n_written} x {r.feature_dim} features ({len(r.skipped)} skipped{resumed}; "
        f"{r.images_per_s:.1f} images/s on {r.device})"
    )
    return 0


def _run_text(args: argparse.Namespace) -> int:
    from cmh.extract.text import extract_text

    check_writable_file(args.out, "--out")
    t = extract_text(
        args.input,
        args.out,
        field=args.field,
        vocab_size=args.vocab_size,
        mode=args.mode,
        key=args.key,
        binary=not args.counts,
    )
    n, d = t.matrix.shape
    note = f" (only {d} distinct terms)" if d < args.vocab_size else ""
    print(
        f"wrote {args.out}: {n} items x {d} terms{note}, {t.matrix.nnz} non-zeros; vocabulary in "
        f"{args.out}.vocab.txt"
    )
    return 0


def _run_coco_mini(args: argparse.Namespace) -> int:
    from cmh.extract.coco_mini import build_coco_mini

    check_writable_file(args.out, "--out")
    info = build_coco_mini(
        args.data,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        vocab_size=args.vocab_size,
        n_query=args.n_query,
        split_seed=args.split_seed,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=not args.quiet,
    )
    print(
        f"wrote {args.out}: {info['n']} pairs, image {info['image']['dim']}-d ({info['image']['backbone']}), "
        f"text {info['text']['vocab_size']}-d, {info['labels']['classes']} classes, "
        f"query {info['split']['query']} / database {info['split']['database']}"
    )
    return 0
