"""``cmh eval --codes FILE.npz``: score codes made by any tool under cmh's protocol.

The ``.npz`` holds ``query_labels`` and ``database_labels`` ((n, c) multi-hot, or (n,) class ids)
and codes ``query_image``, ``query_text``, ``database_image``, ``database_text`` ((n, K), ±1; with
``--zero-one`` 0/1 codes are read as 0 -> -1). I→T needs ``query_image`` + ``database_text``, T→I
``query_text`` + ``database_image``; whichever pairs are present are scored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from cmh._atomic import atomic_write_text
from cmh.cli.common import add_device_argument
from cmh.errors import CMHError
from cmh.results import TASK_TITLES

TASK_KEYS = {"i2t": ("query_image", "database_text"), "t2i": ("query_text", "database_image")}
SCALAR_METRICS = ("map", "map_tie_avg", "map@50", "map@500", "map@1000", "p_r2", "ndcg@50", "ndcg@1000")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate externally made codes (.npz) under cmh's protocol")
    p.add_argument("--codes", required=True, metavar="FILE.npz", help="codes + labels file (see docs)")
    p.add_argument("--zero-one", action="store_true", help="codes are 0/1 bits (0 is read as -1)")
    p.add_argument("--out", metavar="FILE.json", help="also write all metrics and curves as JSON")
    p.add_argument(
        "--topk-backend",
        choices=("exact", "faiss"),
        default="exact",
        help="faiss: only map@k and P@n (n <= 1000) from faiss IndexBinaryFlat top-k lists (pip install 'cmh[faiss]')",
    )
    add_device_argument(p)
    p.set_defaults(func=eval_command)


def _labels(arr: np.ndarray, name: str) -> np.ndarray:
    from cmh.data import one_hot

    if arr.ndim == 1:
        return one_hot(arr)
    if arr.ndim != 2:
        raise CMHError(f"{name} must be (n, classes) multi-hot or (n,) class ids, got shape {arr.shape}")
    return arr


def load_codes_file(path: str | Path, zero_one: bool = False) -> dict[str, np.ndarray]:
    """Read and check a codes file; returns its arrays with codes as ±1 int8."""
    path = Path(path)
    if not path.is_file():
        raise CMHError(f"codes file '{path}' not found; pass an .npz made with numpy.savez")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise CMHError(
            f"cannot read '{path}' as .npz ({exc.__class__.__name__}); write it with numpy.savez"
        ) from None
    for key in ("query_labels", "database_labels"):
        if key not in data:
            raise CMHError(f"'{path}' has no '{key}' array (it has: {', '.join(sorted(data))})")
    if not any(all(k in data for k in keys) for keys in TASK_KEYS.values()):
        raise CMHError(
            f"'{path}' needs query_image + database_text (I→T) and/or query_text + database_image (T→I); "
            f"it has: {', '.join(sorted(data))}"
        )
    qlab, dblab = data["query_labels"], data["database_labels"]
    if qlab.ndim == 1 and dblab.ndim == 1:
        num = int(max(qlab.max(), dblab.max())) + 1
        from cmh.data import one_hot

        data["query_labels"], data["database_labels"] = one_hot(qlab, num), one_hot(dblab, num)
    else:
        data["query_labels"], data["database_labels"] = (
            _labels(qlab, "query_labels"),
            _labels(dblab, "database_labels"),
        )
    for key in ("query_image", "query_text", "database_image", "database_text"):
        if key in data:
            codes = data[key]
            if zero_one:
                if not np.all((codes == 0) | (codes == 1)):
                    raise CMHError(f"{key} has values other than 0/1 but --zero-one was given")
                codes = np.where(codes > 0, 1, -1)
            elif np.all((codes == 0) | (codes == 1)):
                raise CMHError(f"{key} holds 0/1 codes; pass --zero-one to read 0 as -1")
            data[key] = np.asarray(codes, dtype=np.int8)
    return data


def evaluate_codes(
    data: dict[str, np.ndarray], device: str = "auto", topk_backend: str = "exact"
) -> dict[str, dict[str, Any]]:
    """Both tasks' metrics for a loaded codes file (only the tasks whose codes are present); ``topk_backend``
    ``"faiss"``: map@k and P@n only, from faiss top-k lists (:mod:`cmh.metrics.topk_faiss`)."""
    from functools import partial

    from cmh.metrics import evaluate
    from cmh.metrics.topk_faiss import evaluate_topk_faiss

    score = evaluate_topk_faiss if topk_backend == "faiss" else partial(evaluate, device=device)
    return {
        task: score(data[q], data[db], data["query_labels"], data["database_labels"])
        for task, (q, db) in TASK_KEYS.items()
        if q in data and db in data
    }


def eval_command(args: argparse.Namespace) -> int:
    data = load_codes_file(args.codes, args.zero_one)
    results = evaluate_codes(data, args.device, getattr(args, "topk_backend", "exact"))
    table = Table(title=f"{args.codes}")
    table.add_column("metric")
    for task in results:
        table.add_column(TASK_TITLES[task], justify="right")
    for metric in SCALAR_METRICS:
        if all(metric in r for r in results.values()):
            table.add_row(metric, *(f"{r[metric]:.4f}" for r in results.values()))
    first = next(iter(results.values()))
    table.add_row("queries × database", *(f"{r['n_queries']} × {r['n_database']}" for r in results.values()))
    if all("n_zero_relevance" in r for r in results.values()):
        table.add_row("zero-relevance queries", *(str(r["n_zero_relevance"]) for r in results.values()))
    console = Console()
    console.print(table)
    if args.out:
        payload = {"codes_file": str(args.codes), "bits": first.get("bits"), "tasks": results}
        console.print(
            f"wrote {atomic_write_text(args.out, json.dumps(payload, indent=1, sort_keys=True) + chr(10))}"
        )
    return 0
