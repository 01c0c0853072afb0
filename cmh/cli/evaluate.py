"""``cmh eval --codes FILE.npz [--codes-dir DIR]``: score codes made by any tool under cmh's protocol.

The ``.npz`` holds ``query_labels`` and ``database_labels`` ((n, c) multi-hot, or (n,) class ids)
and codes ``query_image``, ``query_text``, ``database_image``, ``database_text`` ((n, K), ±1; with
``--zero-one`` 0/1 codes are read as 0 -> -1; anything else, e.g. NaN, 0.5 or 0-bit codes, is an error, never
cast). I→T needs ``query_image`` + ``database_text``, T→I
``query_text`` + ``database_image``; whichever pairs are present are scored. ``--codes-dir DIR`` takes the
database codes (and labels) of one modality from a ``cmh encode`` shard directory instead.
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
from cmh.cli.common import add_device_argument, check_writable_file
from cmh.errors import CMHError
from cmh.results import TASK_TITLES

TASK_KEYS = {"i2t": ("query_image", "database_text"), "t2i": ("query_text", "database_image")}
SCALAR_METRICS = ("map", "map_tie_avg", "map@50", "map@500", "map@1000", "p_r2", "ndcg@50", "ndcg@1000")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate externally made codes (.npz) under cmh's protocol")
    p.add_argument("--codes", required=True, metavar="FILE.npz", help="codes + labels file (see docs)")
    p.add_argument(
        "--codes-dir",
        action="append",
        metavar="DIR",
        help="database codes (and labels) from a `cmh encode` shard directory: an image directory replaces "
        "database_image, a text one database_text (repeat for both); --codes then needs only the queries",
    )
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


def _labels(arr: np.ndarray, name: str, path: Path) -> np.ndarray:
    from cmh.data import one_hot

    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise CMHError(f"'{path}': {name} has dtype {arr.dtype}; store labels as numbers (0/1 or class ids)")
    if not np.all(np.isfinite(arr)):
        raise CMHError(f"'{path}': {name} holds NaN/inf; store 0/1 multi-hot labels or integer class ids")
    if arr.ndim == 1:
        if not np.all(arr == np.round(arr)) or (arr.size and arr.min() < 0):
            raise CMHError(f"'{path}': {name} (n,) class ids must be whole numbers >= 0")
        return one_hot(arr.astype(np.int64))
    if arr.ndim != 2:
        raise CMHError(
            f"'{path}': {name} must be (n, classes) multi-hot or (n,) class ids, got shape {arr.shape}"
        )
    if not np.all((arr == 0) | (arr == 1)):
        raise CMHError(f"'{path}': {name} (n, classes) must be 0/1 multi-hot; found other values")
    return arr


def _codes(codes: np.ndarray, key: str, path: Path, zero_one: bool) -> np.ndarray:
    """``codes`` checked (2-d, >= 1 bit, numeric, finite, exactly ±1 or 0/1) and returned as ±1 int8."""
    where = f"'{path}': {key}"
    if codes.ndim != 2:
        raise CMHError(f"{where} must be (n, bits), got shape {codes.shape}; store one code per row")
    if codes.shape[1] == 0:
        raise CMHError(f"{where} has 0 bits (shape {codes.shape}); store at least one bit per code")
    if not np.issubdtype(codes.dtype, np.number) and codes.dtype != np.bool_:
        raise CMHError(
            f"{where} has dtype {codes.dtype}; store the codes as numbers (±1, or 0/1 with --zero-one)"
        )
    if not np.all(np.isfinite(codes)):
        bad = int(np.size(codes) - np.count_nonzero(np.isfinite(codes)))
        raise CMHError(f"{where} holds {bad} NaN/inf value(s); binarise the codes (e.g. numpy.sign) first")
    allowed = (0, 1) if zero_one else (-1, 1)
    ok = (codes == allowed[0]) | (codes == allowed[1])
    if not np.all(ok):
        bad_value = codes[~ok].flat[0]
        if not zero_one and np.all((codes == 0) | (codes == 1)):
            raise CMHError(f"{where} holds 0/1 codes; pass --zero-one to read 0 as -1")
        if zero_one:
            raise CMHError(
                f"{where} has values other than 0/1 (e.g. {bad_value:g}) but --zero-one was given; "
                "store 0/1 bits, or ±1 codes without --zero-one"
            )
        raise CMHError(
            f"{where} has values other than -1/+1 (e.g. {bad_value:g}); binarise the codes "
            "(numpy.sign, or codes * 2 - 1 for 0/1 bits); cmh never rounds them for you"
        )
    return np.where(codes > 0, 1, -1).astype(np.int8)


def load_codes_file(
    path: str | Path, zero_one: bool = False, codes_dirs: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Read and check a codes file; returns its arrays with codes as ±1 int8 (never cast silently:
    NaN, fractional values, other values than ±1 (0/1 with ``zero_one``) and 0-bit codes are errors).
    ``codes_dirs`` are shard directories (:mod:`cmh.data.shards`) whose codes and labels replace the
    file's database arrays."""
    from cmh.data.loaders import NpzReader

    path = Path(path)
    if not path.is_file():
        raise CMHError(f"codes file '{path}' not found; pass an .npz made with numpy.savez")
    with NpzReader(path, "codes file", "write it again with numpy.savez (or `cmh run --save-codes`)") as z:
        data = z.read_all()
    if codes_dirs:
        data.update(_shard_database(codes_dirs, data))
    for key in ("query_labels", "database_labels"):
        if key not in data:
            raise CMHError(
                f"'{path}' has no '{key}' array (it has: {', '.join(sorted(data))}); save the labels "
                f"under that name, (n, classes) 0/1 or (n,) class ids"
            )
    if not any(all(k in data for k in keys) for keys in TASK_KEYS.values()):
        raise CMHError(
            f"'{path}' needs query_image + database_text (I→T) and/or query_text + database_image (T→I); "
            f"it has: {', '.join(sorted(data))}"
        )
    qlab = _labels(data["query_labels"], "query_labels", path)
    dblab = _labels(data["database_labels"], "database_labels", path)
    if data["query_labels"].ndim == 1 and data["database_labels"].ndim == 1:
        from cmh.data import one_hot

        num = max(qlab.shape[1], dblab.shape[1])
        qlab = one_hot(data["query_labels"].astype(np.int64), num)
        dblab = one_hot(data["database_labels"].astype(np.int64), num)
    data["query_labels"], data["database_labels"] = qlab, dblab
    for key in ("query_image", "query_text", "database_image", "database_text"):
        if key in data and not isinstance(data[key], ShardedCodes):  # shards: ±1 by construction
            data[key] = _codes(data[key], key, path, zero_one)
    return data


class ShardedCodes:
    """The database codes of a ``cmh encode`` shard directory, streamed: iterating yields
    ``(packed uint8 rows (n_k, ceil(bits/8)), None)`` per shard in global order (memory-mapped, checksums
    verified), as :func:`cmh.metrics.sharded.evaluate_sharded` reads them."""

    def __init__(self, directory: str | Path, manifest: dict[str, Any]) -> None:
        self.directory, self.bits, self.count = Path(directory), int(manifest["bits"]), int(manifest["count"])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self.bits)

    def __iter__(self) -> Any:
        from cmh.data.shards import iter_shards

        return ((packed, None) for packed in iter_shards(self.directory, verify=True))

    def load(self) -> np.ndarray:
        """All codes in memory as ±1 int8 ``(count, bits)`` (for paths that need them whole)."""
        from cmh.data.shards import load_codes

        return load_codes(self.directory)[0]


def _shard_database(dirs: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
    """``database_<modality>`` (:class:`ShardedCodes`, streamed) and ``database_labels`` from shard
    directories (one per modality)."""
    from cmh.data.shards import load_labels, read_manifest

    out: dict[str, Any] = {}
    for d in dirs:
        manifest = read_manifest(d)
        key = f"database_{manifest['modality']}"
        if key in out:
            raise CMHError(
                f"two --codes-dir hold {manifest['modality']} codes; give one image and one text directory"
            )
        out[key] = ShardedCodes(d, manifest)
        labels = load_labels(d)
        if labels is None and "database_labels" not in data:
            raise CMHError(
                f"'{d}' has no labels and --codes has no database_labels; encode with --labels FILE"
            )
        if labels is not None:
            if "database_labels" in out and not np.array_equal(out["database_labels"], labels):
                raise CMHError("the --codes-dir directories hold different labels; encode the same database")
            out["database_labels"] = labels
    return out


def evaluate_codes(
    data: dict[str, np.ndarray], device: str = "auto", topk_backend: str = "exact"
) -> dict[str, dict[str, Any]]:
    """Both tasks' metrics for a loaded codes file (only the tasks whose codes are present); ``topk_backend``
    ``"faiss"``: map@k and P@n only, from faiss top-k lists (:mod:`cmh.metrics.topk_faiss`)."""
    from functools import partial

    from cmh.metrics import evaluate
    from cmh.metrics.topk_faiss import evaluate_topk_faiss

    score = evaluate_topk_faiss if topk_backend == "faiss" else partial(evaluate, device=device)
    out = {}
    for task, (q, db) in TASK_KEYS.items():
        if q not in data or db not in data:
            continue
        database = data[db]
        if isinstance(database, ShardedCodes) and topk_backend != "faiss":
            from cmh.metrics.sharded import evaluate_sharded

            if len(data["database_labels"]) != database.count:
                raise CMHError(
                    f"'{database.directory}' holds {database.count} codes but there are "
                    f"{len(data['database_labels'])} database labels; encode the same database"
                )
            out[task] = evaluate_sharded(  # one shard in memory at a time, exact
                data[q], data["query_labels"], database, db_labels=data["database_labels"]
            )
            continue
        if isinstance(database, ShardedCodes):
            database = database.load()
        out[task] = score(data[q], database, data["query_labels"], data["database_labels"])
    return out


def eval_command(args: argparse.Namespace) -> int:
    if args.out:
        check_writable_file(args.out, "--out")
    data = load_codes_file(args.codes, args.zero_one, args.codes_dir)
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
