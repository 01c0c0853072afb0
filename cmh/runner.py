"""One straight line: dataset -> method.fit -> encode -> codes -> evaluate -> result record.

:func:`run_once` does it for one (method, bits, seed) and returns the record; the CLI's ``cmh run``
loops it over bits and seeds and writes each record with :func:`cmh.results.write_record`.
:func:`record_head` is the part of a record known before training (method, bits, seed, resolved
configuration, dataset version): it fixes the record's identity and so its path
(:func:`cmh.identity.resolve_record_path`) before any work is done.

Deep methods (any method whose configuration has ``checkpoint_dir`` and ``resume``) are checkpointed after
every epoch when ``checkpoint_dir`` is given — ``cmh run`` and ``cmh sweep`` give
:func:`checkpoint_dir_for` the record's path — so the same command after a kill resumes from the last epoch
and writes the identical record; :func:`remove_checkpoints` deletes them once the record is written.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmh.base import HashMethod, check_bits, has_unified_codes, resolve_device
from cmh.data import CrossModalDataset
from cmh.errors import CMHError
from cmh.identity import jsonable
from cmh.methods._dist import is_writer, world
from cmh.registry import create_method
from cmh.results import DATABASE_CODES, SCHEMA, cpu_model, environment, git_commit, threads, utc_now


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


#: the folder (next to a record) that holds its per-epoch training checkpoints; git-ignored
CHECKPOINTS = ".checkpoints"


def checkpoint_dir_for(record_path: str | Path) -> Path:
    """``<record folder>/.checkpoints/<record stem>``: one folder per record identity."""
    path = Path(record_path)
    return path.parent / CHECKPOINTS / path.stem


def remove_checkpoints(checkpoint_dir: str | Path) -> None:
    """Delete a run's checkpoint folder (and the ``.checkpoints`` folder when it is left empty)."""
    folder = Path(checkpoint_dir)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass  # other runs' checkpoints are still there, or it never existed


def clean_stale_tmp(folder: str | Path) -> list[Path]:
    """Remove ``*.tmp`` files a killed atomic write left in ``folder``; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def supports_checkpoints(method_name: str) -> bool:
    """Whether ``method_name``'s configuration has ``checkpoint_dir`` and ``resume`` (the deep methods)."""
    import dataclasses

    from cmh.registry import get_method_class

    cfg = get_method_class(method_name).Config
    names = {f.name for f in dataclasses.fields(cfg)} if dataclasses.is_dataclass(cfg) else set()
    return {"checkpoint_dir", "resume"} <= names


def record_head(method: HashMethod, dataset: CrossModalDataset, database: str = "per-view") -> dict[str, Any]:
    """What a record holds before training: method, bits, seed, resolved config and dataset version."""
    return {
        "schema": SCHEMA,
        "method": method.name,
        "kind": method.kind,
        "supervised": method.supervised,
        "bits": int(method.bits),
        "seed": int(method.seed),
        "config": jsonable(method.config_dict()),
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
    }


def plan_record(
    method_name: str,
    dataset: CrossModalDataset,
    bits: int,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    database: str = "per-view",
) -> dict[str, Any]:
    """:func:`record_head` of a run not made yet (validates the method name and options)."""
    method = create_method(method_name, bits=check_bits(bits), seed=seed, device="cpu", **(config or {}))
    return record_head(method, dataset, database)


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
    checkpoint_dir: str | Path | None = None,
    return_method: bool = False,
) -> dict[str, Any]:
    """Train ``method_name`` on ``dataset``'s train part, encode query/database, evaluate I→T and T→I.

    ``database="unified"`` encodes each database item once from both views (``encode_pair``, the CMFH/SePH
    papers' protocol) and searches those codes in both tasks; the record says so and gets its own file.
    ``checkpoint_dir`` (deep methods): checkpoint every epoch there and resume from what is there; the
    record's configuration is the user's (checkpoint plumbing changes no number).
    Returns the result record (see :mod:`cmh.results`); with ``return_codes`` the codes are attached
    under ``"_codes"`` (not part of the stored record).
    """
    from cmh.metrics import evaluate

    bits = check_bits(bits)
    dev = resolve_device(device)
    config = dict(config or {})
    user_config = create_method(method_name, bits=bits, seed=seed, device="cpu", **config).config_dict()
    if checkpoint_dir is not None and supports_checkpoints(method_name) and not config.get("checkpoint_dir"):
        if is_writer():  # rank 0 of a data-parallel run owns the checkpoint files
            clean_stale_tmp(checkpoint_dir)
        config.update(checkpoint_dir=str(checkpoint_dir), resume=True)
    method = create_method(method_name, bits=bits, seed=seed, device=str(dev), **config)
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
    ranks = world()[1]

    record = record_head(method, dataset, database)
    record["config"] = jsonable(user_config)
    n_threads = threads()
    record.update(
        {
            "tasks": tasks,
            "timings": {
                "fit_s": round(t_fit, 3),
                "encode_s": round(t_encode, 3),
                "evaluate_s": round(t_eval, 3),
            },
            "warnings": method_warnings,
            "peak_rss_mb": peak_rss_mb(),
            "device": str(dev),
            "torch_threads": n_threads["torch"],  # CPU results are bitwise reproducible per thread count
            "threads": n_threads,
            **({"ranks": ranks} if ranks > 1 else {}),  # data-parallel training under torchrun
            "cpu": cpu_model(),
            "versions": environment(),
            "git_commit": git_commit(),
            "date": utc_now(),
        }
    )
    if dev.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(dev)
        record["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    if return_codes:
        record["_codes"] = {"query": query, "database": db_codes}
    if return_method:
        record["_method"] = method
    return record


def run_and_write(
    path: str | Path,
    method_name: str,
    dataset: CrossModalDataset,
    bits: int,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    device: str = "auto",
    database: str = "per-view",
    return_codes: bool = False,
    keep_checkpoints: bool = False,
    return_method: bool = False,
) -> tuple[dict[str, Any], Path]:
    """:func:`run_once` with checkpoints beside ``path`` (resumed when present), then the record written
    atomically to ``path`` and the checkpoints removed (unless ``keep_checkpoints``)."""
    from cmh.results import write_record

    ckpt = checkpoint_dir_for(path)
    record = run_once(
        method_name,
        dataset,
        bits,
        seed,
        config,
        device,
        return_codes=return_codes,
        database=database,
        return_method=return_method,
        checkpoint_dir=ckpt,
    )
    if not is_writer():  # another rank of a data-parallel run: rank 0 writes
        return record, Path(path)
    written = write_record(record, path=path)
    if not keep_checkpoints:
        remove_checkpoints(ckpt)
    return record, written
