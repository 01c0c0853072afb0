"""``cmh bench extract``: images/s of each backbone (forward pass) and of the full extraction pipeline.

EfficientNet-Lite0 runs with its real weights; CNN-F and VGG19 with seeded random weights of the published
sizes (the speed does not depend on the values) unless ``--weights-cnn-f`` / ``--weights-vgg19`` are given.
Images: the real coco_mini photos (``$CMH_DATA/coco_mini/images``) when present, else random images.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cmh.bench._report import write_report

HELP = "images/s of the extraction backbones (efficientnet-lite0, cnn-f, vgg19) and the pipeline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbones", default="efficientnet-lite0,cnn-f,vgg19", help="comma-separated backbone names"
    )
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="image folder (default: $CMH_DATA/coco_mini/images, else random images)",
    )
    p.add_argument("-n", "--n-images", type=int, default=16, help="images per measurement (default 16)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--repeat", type=int, default=2, help="timed passes per backbone; the fastest counts (default 2)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--workers", type=int, default=None, help="pipeline loader processes (default min(4, CPUs))"
    )
    p.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end `cmh extract image` run")
    p.add_argument("--weights-cnn-f", default=None, metavar="PATH")
    p.add_argument("--weights-vgg19", default=None, metavar="PATH")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")


def _image_dir(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    base = os.environ.get("CMH_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    d = root / "coco_mini" / "images"
    return d if d.is_dir() else None


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from cmh.extract.backbones import build_backbone, canonical_name
    from cmh.extract.images import ImageTransform, list_images, load_image
    from cmh.extract.pipeline import extract_images, resolve_device

    console = Console()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    n = max(1, args.n_images)
    src = _image_dir(args.images)
    transform = ImageTransform()
    tmp = tempfile.TemporaryDirectory(prefix="cmh-bench-extract-")
    if src is not None:
        root, names = list_images(src)
        paths = [root / p for p in names[:n]]
        source = f"{len(paths)} photos from {src}"
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            p = Path(tmp.name) / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(p, quality=90)
            paths.append(p)
        source = f"{n} random 640x480 JPEGs"
    t0 = time.perf_counter()
    batch = torch.stack([load_image(p, transform) for p in paths])
    decode_rate = len(paths) / (time.perf_counter() - t0)

    rows = []
    weights = {"cnn-f": args.weights_cnn_f, "vgg19": args.weights_vgg19}
    for raw in [b for b in args.backbones.split(",") if b.strip()]:
        name = canonical_name(raw)
        w = weights.get(name)
        model = build_backbone(name, w, random_init=(name != "efficientnet-lite0" and w is None)).to(dev)
        half = dev.type == "cuda"
        if half:
            model = model.half()
        x_all = batch.to(dev)
        if dev.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
            x_all = x_all.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(x_all[: args.batch_size])  # warm-up at the timed batch shape (oneDNN/cuDNN set-up)
            secs = float("inf")
            for _ in range(max(1, args.repeat)):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for s in range(0, len(x_all), args.batch_size):
                    model(x_all[s : s + args.batch_size])
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                secs = min(secs, time.perf_counter() - t0)
        rows.append(
            {
                "backbone": name,
                "weights": "package" if name == "efficientnet-lite0" else (w or "random"),
                "feature_dim": model.feature_dim,
                "forward_images_per_s": len(x_all) / secs,
                "precision": "float16" if half else "float32",
            }
        )
        del model

    pipeline = None
    if not args.no_pipeline:
        lst = Path(tmp.name) / "list.txt"
        lst.write_text("".join(f"{p.resolve()}\n" for p in paths))
        r = extract_images(
            lst,
            Path(tmp.name) / "out.npz",
            "efficientnet-lite0",
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            progress=False,
        )
        pipeline = {
            "backbone": "efficientnet-lite0",
            "images_per_s": r.images_per_s,
            "images": r.n_images,
            "workers": args.workers if args.workers is not None else min(4, os.cpu_count() or 1),
        }
    tmp.cleanup()

    table = Table(
        title=f"cmh bench extract — {source}, device {dev}, torch threads {torch.get_num_threads()}"
    )
    for col in ("backbone", "weights", "dim", "precision", "forward images/s"):
        table.add_column(col, justify="right" if col in ("dim", "forward images/s") else "left")
    for r in rows:
        table.add_row(
            r["backbone"],
            str(r["weights"]),
            str(r["feature_dim"]),
            r["precision"],
            f"{r['forward_images_per_s']:.1f}",
        )
    console.print(table)
    console.print(f"decode + resize + crop (1 process): {decode_rate:.1f} images/s")
    if pipeline:
        console.print(
            f"end-to-end `cmh extract image` (efficientnet-lite0, {pipeline['workers']} workers): "
            f"{pipeline['images_per_s']:.1f} images/s"
        )
    if args.json:
        write_report(
            args.json,
            args,
            source=source,
            device=str(dev),
            decode_images_per_s=decode_rate,
            backbones=rows,
            pipeline=pipeline,
        )
    return 0
