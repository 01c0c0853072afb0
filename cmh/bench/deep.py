"""``cmh bench deep``: seconds per epoch of SSAH and DCMH, and SSAH's time to reach DCMH's final mAP.

Data: the built-in synthetic generator at the MIRFLICKR-25K shape of the papers — ``--n`` training pairs
(10,000) of 4,096-d dense image features, 1,386-d binary bag-of-words text, 24 labels — plus ``--n-query``
queries (1,000) against a database of the training pairs and ``--n-extra`` further pairs. Codes of ``--bits``
(32) bits.

Each method is trained for its number of epochs (default 2 each: a short run; use ``--ssah-epochs`` /
``--dcmh-epochs`` for the real comparison, e.g. 15 and 50, the CPU defaults). After every epoch the
query/database codes are evaluated with :func:`cmh.metrics.evaluate` (outside the timed training). Reported:
training seconds per epoch (mean over epochs), the final mAP (mean of I->T and T->I) of each, and the
cumulative training time SSAH needs to reach DCMH's final mAP, next to DCMH's own training time. SSAH's
paper (Li et al., CVPR 2018, Fig. 5) claims ~10x less training time than DCMH for the same mAP.

Target (the project's): one SSAH epoch <= 60 s on a 2-core CPU at this shape.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from cmh.bench._report import write_report

HELP = "seconds per epoch of SSAH and DCMH at the MIRFLICKR shape, and SSAH's time to reach DCMH's mAP"
SSAH_EPOCH_TARGET_S = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=10_000, help="training pairs (default 10000)")
    p.add_argument("--n-query", type=int, default=1_000, help="query pairs (default 1000)")
    p.add_argument("--n-extra", type=int, default=0, help="database pairs beyond the training pairs")
    p.add_argument("--bits", type=int, default=32, help="code length (default 32)")
    p.add_argument("--image-dim", type=int, default=4096)
    p.add_argument("--text-dim", type=int, default=1386)
    p.add_argument("--classes", type=int, default=24)
    p.add_argument(
        "--ssah-epochs", type=int, default=2, help="SSAH epochs (default 2; the CPU default is 15)"
    )
    p.add_argument(
        "--dcmh-epochs", type=int, default=2, help="DCMH epochs (default 2; the CPU default is 50)"
    )
    p.add_argument(
        "--ssah-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SSAH option override, e.g. --ssah-set disc_hidden=4096,4096 (repeatable)",
    )
    p.add_argument(
        "--dcmh-set", action="append", default=[], metavar="KEY=VALUE", help="DCMH option override"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")


def _dataset(args: argparse.Namespace) -> Any:
    from cmh.data import make_synthetic

    n = args.n + args.n_query + args.n_extra
    return make_synthetic(
        n=n,
        image_dim=args.image_dim,
        text_dim=args.text_dim,
        classes=args.classes,
        n_query=args.n_query,
        n_train=args.n,
        seed=args.seed,
    )


def _train(
    name: str, epochs: int, overrides: dict[str, Any], ds: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Train ``name``; per epoch: training seconds (from the loop) and mAP after the epoch."""
    from cmh.metrics import evaluate
    from cmh.registry import create_method

    method = create_method(
        name,
        bits=args.bits,
        seed=args.seed,
        device=args.device,
        **{**overrides, "epochs": epochs, "verbose": False},
    )
    q, db = ds.part("query"), ds.part("database")
    curve: list[dict[str, float]] = []

    def measure(m: Any, record: dict[str, Any]) -> None:
        qi, qt = m.encode_image(q.image), m.encode_text(q.text)
        di, dt = m.encode_image(db.image), m.encode_text(db.text)
        i2t = evaluate(qi, dt, q.labels, db.labels, device=args.device)["map"]
        t2i = evaluate(qt, di, q.labels, db.labels, device=args.device)["map"]
        curve.append(
            {
                "epoch": record["epoch"],
                "seconds": record["seconds"],
                "i2t": float(i2t),
                "t2i": float(t2i),
                "map": float(i2t + t2i) / 2,
            }
        )

    method.on_epoch_end = measure
    t0 = time.perf_counter()
    method.fit(ds.part("train"))
    wall = time.perf_counter() - t0
    train_s = sum(c["seconds"] for c in curve)
    return {
        "method": name,
        "config": method.config_dict(),
        "epochs": epochs,
        "curve": curve,
        "train_s": round(train_s, 2),
        "wall_s": round(wall, 2),
        "s_per_epoch": round(train_s / max(1, len(curve)), 2),
        "final_map": curve[-1]["map"] if curve else None,
    }


def _time_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    total = 0.0
    for c in curve:
        total += c["seconds"]
        if c["map"] >= target:
            return round(total, 2)
    return None


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from cmh.config import parse_set

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    ds = _dataset(args)
    console.print(
        f"data: synthetic, {args.n} train pairs, {args.image_dim}-d image, {args.text_dim}-d text, "
        f"{args.classes} labels, {args.n_query} queries; {args.bits} bits; device {args.device}; "
        f"{torch.get_num_threads()} torch threads on {os.cpu_count()} CPUs"
    )
    runs = {
        "dcmh": _train("dcmh", args.dcmh_epochs, parse_set(args.dcmh_set), ds, args),
        "ssah": _train("ssah", args.ssah_epochs, parse_set(args.ssah_set), ds, args),
    }
    dcmh, ssah = runs["dcmh"], runs["ssah"]
    reach = _time_to_reach(ssah["curve"], dcmh["final_map"])
    table = Table(
        title=f"deep methods, {args.n} x {args.image_dim}-d image / {args.text_dim}-d text (training time)"
    )
    for col in ("method", "epochs", "s/epoch", "train s", "final mAP (I→T / T→I)", "target"):
        table.add_column(col, justify="right" if col not in ("method",) else "left")
    for r in (ssah, dcmh):
        last = r["curve"][-1]
        target = ""
        if r["method"] == "ssah":
            ok = r["s_per_epoch"] <= SSAH_EPOCH_TARGET_S
            target = f"{'[green]ok' if ok else '[red]over'} (<= {SSAH_EPOCH_TARGET_S:.0f} s/epoch)"
        table.add_row(
            r["method"],
            str(r["epochs"]),
            f"{r['s_per_epoch']:.1f}",
            f"{r['train_s']:.1f}",
            f"{r['final_map']:.4f} ({last['i2t']:.4f} / {last['t2i']:.4f})",
            target,
        )
    console.print(table)
    if reach is None:
        console.print(
            f"SSAH did not reach DCMH's final mAP {dcmh['final_map']:.4f} within {ssah['epochs']} epochs "
            f"({ssah['train_s']:.1f} s); DCMH trained {dcmh['train_s']:.1f} s."
        )
    else:
        console.print(
            f"SSAH reached DCMH's final mAP {dcmh['final_map']:.4f} after {reach:.1f} s of training; "
            f"DCMH took {dcmh['train_s']:.1f} s: speed-up {dcmh['train_s'] / max(reach, 1e-9):.1f}x "
            "(the SSAH paper claims ~10x)"
        )
    if args.json:
        write_report(args.json, args, runs=runs, ssah_time_to_dcmh_map_s=reach)
    return 0
