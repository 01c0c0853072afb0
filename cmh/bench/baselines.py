"""``cmh bench baselines``: fit and encode speed and peak memory of every shallow method.

Loops over all registered methods of kind ``shallow`` (so new baselines appear automatically) on synthetic
data of the MIRFLICKR-25K shape used by the papers: ``--n`` training pairs (10,000) of 4,096-d image
features (CNN fc7-like, dense), 1,386-d bag-of-words text (binary, stored as scipy CSR by default) and 24
labels, ``--bits`` 64. Encode time is for ``--encode-n`` items (100,000) of *each* modality, measured on
blocks of ``--n`` rows so that the 100,000 × 4,096 matrix is never materialised. Peak memory is the growth
of the process's peak resident size during ``fit`` (kernel counters, :class:`cmh.bench._report.PeakRSS`: every
allocation counts, BLAS buffers included, and the timed code runs without allocation tracing).

Targets (the project's): CVH and SCM-seq fit <= 10 s, CMFH <= 30 s, SePH <= 120 s, encode of 100k items
<= 5 s; methods without a target show "—".
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

from cmh.bench._report import PeakRSS, write_report

HELP = "fit/encode time and peak memory of the shallow baselines (cvh, scm-*, cmfh, stmh, seph-*, cmssh, ...)"

#: fit-time targets in seconds; prefix match for variants (``seph-rnd``, ``seph-km``)
FIT_TARGETS: dict[str, float] = {"cvh": 10.0, "scm-seq": 10.0, "cmfh": 30.0, "seph": 120.0}
ENCODE_TARGET_S = 5.0


def fit_target(name: str) -> float | None:
    """The fit-time target for method ``name`` (``seph-km`` uses ``seph``'s), or None."""
    if name in FIT_TARGETS:
        return FIT_TARGETS[name]
    for key, value in FIT_TARGETS.items():
        if name.startswith(key + "-"):
            return value
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--methods", default=None, help="comma-separated method names (default: every shallow method)"
    )
    p.add_argument("--n", type=int, default=10_000, help="training pairs (default 10000)")
    p.add_argument("--bits", type=int, default=64, help="code length (default 64)")
    p.add_argument("--image-dim", type=int, default=4096)
    p.add_argument("--text-dim", type=int, default=1386)
    p.add_argument("--classes", type=int, default=24)
    p.add_argument(
        "--encode-n", type=int, default=100_000, help="items per modality to encode (default 100000)"
    )
    p.add_argument("--dense-text", action="store_true", help="pass the text as a dense array instead of CSR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")


def _data(args: argparse.Namespace) -> Any:
    import scipy.sparse as sp

    from cmh.data import Pairs, make_synthetic

    ds = make_synthetic(
        n=args.n + 100,
        image_dim=args.image_dim,
        text_dim=args.text_dim,
        classes=args.classes,
        n_query=100,
        n_train=args.n,
        seed=args.seed,
    )
    train = ds.part("train")
    text = train.text if args.dense_text else sp.csr_matrix(train.text)
    return Pairs(train.image, text, train.labels)


def _measure(name: str, train: Any, args: argparse.Namespace) -> dict[str, Any]:
    from cmh.registry import create_method

    method = create_method(name, bits=args.bits, seed=args.seed, device="cpu")
    with warnings.catch_warnings(record=True) as caught, PeakRSS() as peak:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        method.fit(train)
        fit_s = time.perf_counter() - t0
    reps, rest = divmod(args.encode_n, len(train))
    t0 = time.perf_counter()
    for _ in range(reps):
        method.encode_image(train.image)
        method.encode_text(train.text)
    if rest:
        method.encode_image(train.image[:rest])
        method.encode_text(train.text[:rest])
    encode_s = time.perf_counter() - t0
    target = fit_target(name)
    return {
        "method": name,
        "supervised": bool(getattr(method, "supervised", False)),
        "fit_s": fit_s,
        "fit_target_s": target,
        "fit_pass": None if target is None else fit_s <= target,
        "encode_s": encode_s,
        "encode_target_s": ENCODE_TARGET_S,
        "encode_pass": encode_s <= ENCODE_TARGET_S,
        "peak_mib": peak.mib,
        "warnings": sorted({str(w.message).split(";")[0] for w in caught}),
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cmh.registry import list_methods

    console = Console()
    shallow = list_methods(kind="shallow")
    names = [m.strip() for m in args.methods.split(",")] if args.methods else shallow
    unknown = [m for m in names if m not in shallow]
    if unknown:
        from cmh.errors import CMHError

        raise CMHError(f"not shallow methods: {', '.join(unknown)}; choose from {', '.join(shallow)}")
    t0 = time.perf_counter()
    train = _data(args)
    console.print(
        f"data: {args.n} pairs, image {args.image_dim}-d dense, text {args.text_dim}-d "
        f"{'dense' if args.dense_text else 'CSR'}, {args.classes} labels (made in {time.perf_counter() - t0:.1f} s); "
        f"{args.bits} bits; CPU: {os.cpu_count()} cores"
    )
    rows = []
    for name in names:
        try:
            rows.append(_measure(name, train, args))
        except Exception as exc:  # report and go on with the other methods
            rows.append({"method": name, "error": f"{type(exc).__name__}: {exc}"})
            console.print(f"[red]{name}: {type(exc).__name__}: {exc}[/red]")
            continue
        r = rows[-1]
        console.print(f"  {name}: fit {r['fit_s']:.2f} s, encode {r['encode_s']:.2f} s")

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")

    table = Table(
        title=f"cmh bench baselines — n={args.n}, {args.image_dim}/{args.text_dim}-d, {args.bits} bits, "
        f"encode {args.encode_n:,} items per modality"
    )
    for col in (
        "method",
        "fit s",
        "target",
        "",
        f"encode {args.encode_n // 1000}k s",
        "target",
        "",
        "peak MiB (fit)",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["method"], "error", "", "", "", "", "", "")
            continue
        table.add_row(
            r["method"],
            f"{r['fit_s']:.2f}",
            "—" if r["fit_target_s"] is None else f"≤{r['fit_target_s']:.0f}",
            verdict(r["fit_pass"]),
            f"{r['encode_s']:.2f}",
            f"≤{ENCODE_TARGET_S:.0f}",
            verdict(r["encode_pass"]),
            "–" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
        )
    console.print(table)
    if args.json:
        write_report(args.json, args, results=rows)
    return 0
