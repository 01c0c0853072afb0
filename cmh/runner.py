"""One straight line: dataset -> method.fit -> encode -> codes -> evaluate -> result record.

:func:`run_once` does it for one (method, bits, seed) and returns the record; the CLI's ``cmh run``
loops it over bits and seeds and writes each record with :func:`cmh.results.write_record`.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch

from cmh.base import HashMethod, check_bits, has_unified_codes, resolve_device
from cmh.data import CrossModalDataset
from cmh.errors import CMHError
from cmh.registry import create_method
from cmh.results import DATABASE_CODES, SCHEMA, environment, git_commit, utc_now


def check_codes(codes: Any, n: int, bits: int, who: str) -> np.ndarray:
    """Make sure a method returned ±1 codes of shape (n, bits); return them as int8."""
    arr = np.asarray(codes)
    if arr.shape != (n, bits):
        raise CMHError(
            f"{who} returned codes of shape {arr.shape}, expected ({n}, {bits}); fix the method's encoder"
        )
    if not np.all((arr == 1) | (arr == -1)):
        raise CMHError(
            f"{who} returned codes outside {{-1, +1}}; map them with cmh.sign_codes (sign(0) = +1)"
        )
    return arr.astype(np.int8, copy=False)


def encode_part(method: HashMethod, dataset: CrossModalDataset, part: str) -> dict[str, np.ndarray]:
    """±1 codes of both modalities for one split part: ``{"image": (n, K), "text": (n, K)}``."""
    pairs = dataset.part(part)
    who = f"{method.name}.encode"
    return {
        "image": check_codes(
            method.encode_image(method.image_input(pairs)), len(pairs), method.bits, who + "_image"
        ),
        "text": check_codes(method.encode_text(pairs.text), len(pairs), method.bits, who + "_text"),
    }


def encode_unified(method: HashMethod, dataset: CrossModalDataset, part: str) -> np.ndarray:
    """One ±1 code (n, K) per item of ``part`` from both of its views (``method.encode_pair``)."""
    pairs = dataset.part(part)
    codes = method.encode_pair(method.image_input(pairs), pairs.text)  # type: ignore[attr-defined]
    return check_codes(codes, len(pairs), method.bits, f"{method.name}.encode_pair")


def check_database_codes(method: HashMethod, database: str) -> None:
    """A one-line error for an unknown protocol or a method without unified codes."""
    if database not in DATABASE_CODES:
        raise CMHError(f"unknown database codes '{database}'; use one of: {', '.join(DATABASE_CODES)}")
    if database == "unified" and not has_unified_codes(method):
        from cmh.registry import get_method_class, list_methods

        able = [n for n in list_methods() if has_unified_codes(get_method_class(n))]
        raise CMHError(
            f"{method.name} has no unified database codes (no encode_pair); use --database per-view, "
            f"or a method that has them: {', '.join(able)}"
        )


def peak_rss_mb() -> float:
    """The process's resident-memory high-water mark so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024**2 if sys.platform == "darwin" else 1024), 1)


def run_once(
    method_name: str,
    dataset: CrossModalDataset,
    bits: int,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    device: str = "auto",
    eval_options: dict[str, Any] | None = None,
    return_codes: bool = False,
    database: str = "per-view",
    return_method: bool = False,
) -> dict[str, Any]:
    """Train ``method_name`` on ``dataset``'s train part, encode query/database, evaluate I→T and T→I.

    ``database="unified"`` encodes each database item once from both views (``encode_pair``, the CMFH/SePH
    papers' protocol) and searches those codes in both tasks; the record says so and gets its own file.
    Returns the result record (see :mod:`cmh.results`); with ``return_codes`` the codes are attached
    under ``"_codes"`` (not part of the stored record).
    """
    from cmh.metrics import evaluate

    bits = check_bits(bits)
    dev = resolve_device(device)
    method = create_method(method_name, bits=bits, seed=seed, device=str(dev), **(config or {}))
    check_database_codes(method, database)
    train = dataset.part("train")
    method.check_train(train)

    torch.manual_seed(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        method.fit(train)
        t_fit = time.perf_counter() - t0

        t0 = time.perf_counter()
        query = encode_part(method, dataset, "query")
        if database == "unified":
            unified = encode_unified(method, dataset, "database")
            db_codes = {"image": unified, "text": unified}
        else:
            db_codes = encode_part(method, dataset, "database")
        t_encode = time.perf_counter() - t0
    method_warnings = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    for w in caught:  # still shown to the user, once each
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    qlab, dblab = dataset.part("query").labels, dataset.part("database").labels
    opts = {"device": str(dev), "return_per_query": True, **(eval_options or {})}
    t0 = time.perf_counter()
    tasks = {
        "i2t": evaluate(query["image"], db_codes["text"], qlab, dblab, **opts),
        "t2i": evaluate(query["text"], db_codes["image"], qlab, dblab, **opts),
    }
    t_eval = time.perf_counter() - t0

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "method": method.name,
        "kind": method.kind,
        "supervised": method.supervised,
        "bits": bits,
        "seed": int(seed),
        "config": method.config_dict(),
        "dataset": {
            "name": dataset.name,
            "protocol": dataset.split.protocol,
            "split_seed": dataset.split.seed,
            "content_hash": dataset.content_hash(),
            "sizes": dataset.split.to_dict()["sizes"],
            "image_dim": None if dataset.image is None else int(dataset.image.shape[1]),
            "text_dim": int(dataset.text.shape[1]),
            "classes": dataset.num_classes,
            **({"database_codes": database} if database != "per-view" else {}),
        },
        "tasks": tasks,
        "timings": {"fit_s": round(t_fit, 3), "encode_s": round(t_encode, 3), "evaluate_s": round(t_eval, 3)},
        "warnings": method_warnings,
        "peak_rss_mb": peak_rss_mb(),
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),  # CPU results are bitwise reproducible per thread count
        "versions": environment(),
        "git_commit": git_commit(),
        "date": utc_now(),
    }
    if dev.type == "cuda":
        record["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    if return_codes:
        record["_codes"] = {"query": query, "database": db_codes}
    if return_method:
        record["_method"] = method
    return record
