"""Result records: one immutable JSON file per run identity (docs/design.md, "Results").

Layout: ``<root>/<dataset>/<method>/<bits>/seed<k>[.<tag>][.unified].json``; the tag names settings and
dataset versions other than the defaults (:mod:`cmh.identity`). Records are written atomically (a temp
file in the same folder, then :func:`os.replace`), so a crash never leaves a half-written record.
:func:`load_records` skips unreadable or foreign files and reports each by path. Every record says how to
reproduce it: versions of cmh, torch, numpy and the BLAS libraries, the torch and BLAS thread counts, the
CPU model and the device (:func:`environment`, :func:`threads`).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cmh._atomic import atomic_write_text

SCHEMA = 2  # 2: provenance (BLAS, threads, CPU) and identity-tagged file names
REQUIRED_KEYS = ("method", "bits", "seed", "dataset", "tasks")
TASKS = ("i2t", "t2i")
TASK_TITLES = {"i2t": "I→T", "t2i": "T→I"}


#: how the database is encoded: each item by the other modality's own encoder (``per-view``, cmh's default
#: protocol) or by one code from both views (``unified``, as the CMFH/SePH/STMH papers evaluate)
DATABASE_CODES = ("per-view", "unified")


def record_path(
    root: str | Path,
    dataset: str,
    method: str,
    bits: int,
    seed: int,
    database: str = "per-view",
    tag: str | None = None,
) -> Path:
    """``<root>/<dataset>/<method>/<bits>/seed<k>[.<tag>][.<database>].json`` (see :mod:`cmh.identity`
    for when a run gets a tag; :func:`cmh.identity.resolve_record_path` picks it for a record)."""
    suffix = (f".{tag}" if tag else "") + ("" if database == "per-view" else f".{database}")
    return Path(root) / dataset / method / str(bits) / f"seed{seed}{suffix}.json"


def database_codes(record: dict[str, Any]) -> str:
    """The record's database-code protocol (records before the option existed are ``per-view``)."""
    return str(record["dataset"].get("database_codes", "per-view"))


def write_record(
    record: dict[str, Any], root: str | Path | None = None, path: str | Path | None = None
) -> Path:
    """Write one record atomically at ``path``, or under ``root`` at the path of its identity."""
    from cmh.identity import resolve_record_path

    if path is None and root is None:
        raise TypeError("write_record needs a results root or a path")
    target = Path(path) if path is not None else resolve_record_path(root, record)  # type: ignore[arg-type]
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    return atomic_write_text(target, json.dumps(clean, indent=1, sort_keys=True) + "\n")


def migrate_record(record: dict[str, Any]) -> dict[str, Any]:
    """Read an older record as :data:`SCHEMA`: schema 1 lacks the provenance fields, which read as unknown
    (``None``) rather than guessed."""
    version = record.get("schema", 1)
    if version > SCHEMA:
        raise ValueError(f"schema {version} is newer than this cmh (schema {SCHEMA}); upgrade cmh")
    if version < 2:
        record.setdefault("threads", {"torch": record.get("torch_threads"), "blas": None})
        record.setdefault("cpu", None)
    return record


def load_record(path: str | Path) -> dict[str, Any]:
    """Read and check one record; raises ``ValueError`` naming what is wrong."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}); the file is corrupt or half-written") from None
    if not isinstance(record, dict):
        raise ValueError("not a result record (expected a JSON object)")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"not a result record (missing {', '.join(missing)})")
    record = migrate_record(record)
    record["_path"] = str(path)
    return record


def load_records(
    root: str | Path | Iterable[str | Path],
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """All records under ``root`` (a folder, or several), sorted by path; plus ``(path, reason)`` per skipped file."""
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    records: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    for r in roots:
        for path in sorted(Path(r).rglob("*.json")):
            try:
                records.append(load_record(path))
            except (ValueError, OSError) as exc:
                skipped.append((path, str(exc)))
    return records, skipped


def git_commit() -> str | None:
    """The current commit of the cmh source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _blas_libraries() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process (numpy's/scipy's), from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a scikit-learn dependency, always present
        return []
    return [i for i in threadpool_info() if i.get("user_api") == "blas"]


def environment() -> dict[str, Any]:
    """Versions of cmh, its main dependencies and the BLAS libraries (``"openblas 0.3.31 (pthreads)"``,
    torch's own BLAS from its build configuration), for provenance."""
    import numpy
    import torch

    from cmh import __version__

    blas = sorted(
        {
            f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '?')})"
            for i in _blas_libraries()
        }
    )
    return {
        "cmh": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "blas": blas,
        "torch_blas": _torch_blas(),
    }


def _torch_blas() -> str | None:
    """torch's BLAS as its build reports it (``BLAS_INFO=mkl`` -> ``"mkl"``)."""
    import torch

    for part in torch.__config__.show().replace("\n", ",").split(","):
        part = part.strip()
        if part.startswith("BLAS_INFO="):
            return part.split("=", 1)[1] or None
    return None


def threads() -> dict[str, int | None]:
    """Thread counts that change CPU results bitwise: torch intra-op and the BLAS pools (their maximum)."""
    import torch

    blas = [int(i["num_threads"]) for i in _blas_libraries() if i.get("num_threads")]
    return {"torch": torch.get_num_threads(), "blas": max(blas) if blas else None}


def cpu_model() -> str | None:
    """The CPU model name (``/proc/cpuinfo`` on Linux, :func:`platform.processor` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
