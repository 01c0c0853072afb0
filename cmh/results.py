"""Result records: one immutable JSON file per (dataset, method, bits, seed) run (DESIGN §5).

Layout: ``<root>/<dataset>/<method>/<bits>/seed<k>.json``. Records are written atomically (a temp
file in the same folder, then :func:`os.replace`), so a crash never leaves a half-written record.
:func:`load_records` skips unreadable or foreign files and reports each by path.
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

SCHEMA = 1
REQUIRED_KEYS = ("method", "bits", "seed", "dataset", "tasks")
TASKS = ("i2t", "t2i")
TASK_TITLES = {"i2t": "I→T", "t2i": "T→I"}


#: how the database is encoded: each item by the other modality's own encoder (``per-view``, cmh's default
#: protocol) or by one code from both views (``unified``, as the CMFH/SePH/STMH papers evaluate)
DATABASE_CODES = ("per-view", "unified")


def record_path(
    root: str | Path, dataset: str, method: str, bits: int, seed: int, database: str = "per-view"
) -> Path:
    """Where the record of one run lives under ``root`` (``seed<k>.unified.json`` for unified database codes)."""
    suffix = "" if database == "per-view" else f".{database}"
    return Path(root) / dataset / method / str(bits) / f"seed{seed}{suffix}.json"


def database_codes(record: dict[str, Any]) -> str:
    """The record's database-code protocol (records before the option existed are ``per-view``)."""
    return str(record["dataset"].get("database_codes", "per-view"))


def write_record(record: dict[str, Any], root: str | Path) -> Path:
    """Write one record atomically to its canonical path under ``root``; returns the path."""
    ds = record["dataset"]
    path = record_path(
        root, ds["name"], record["method"], record["bits"], record["seed"], database_codes(record)
    )
    return atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def migrate_record(record: dict[str, Any]) -> dict[str, Any]:
    """Bring an older record up to :data:`SCHEMA` (schema 1 is the first; nothing to migrate yet)."""
    version = record.get("schema", 1)
    if version > SCHEMA:
        raise ValueError(f"schema {version} is newer than this cmh (schema {SCHEMA}); upgrade cmh")
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


def environment() -> dict[str, Any]:
    """Versions of cmh and its main dependencies, for provenance."""
    import numpy
    import torch

    from cmh import __version__

    return {
        "cmh": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
