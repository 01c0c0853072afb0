"""What identifies a result record: everything that changes its numbers.

A record's *identity* is its method, code length, seed and database-code protocol (the parts of the file
name that always existed) plus

- its **settings**: the method options that differ from the method's defaults (options that cannot change a
  result, :data:`NEUTRAL_SETTINGS`, are left out), and
- its **dataset version**: protocol, split seed, split sizes and the content hash of the data.

A run whose settings are the defaults and whose split is the dataset's default split (seed 0, or a fixed
split) keeps the plain file name ``seed<k>.json``; any other identity gets a short stable tag,
``seed<k>.<tag>.json``, where the tag is the first 8 hex digits of the SHA-256 of the canonical JSON of
:func:`record_identity`. A plain-named file whose identity differs from a run's (the same name but other
data) is never shown for, nor replaced by, that run: the run takes its tagged name instead
(:func:`resolve_record_path`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: configuration keys that do not change a run's result (logging, checkpoint/resume plumbing, loader workers)
NEUTRAL_SETTINGS = frozenset({"verbose", "checkpoint_dir", "resume", "image_workers"})
#: split seeds that count as a dataset's default split (``None``: a fixed split such as Wikipedia's)
DEFAULT_SPLIT_SEEDS = (None, 0)

_DEFAULTS_CACHE: dict[tuple[str, int], dict[str, Any] | None] = {}


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from a JSON record (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def settings(config: dict[str, Any] | None) -> dict[str, Any]:
    """A configuration without :data:`NEUTRAL_SETTINGS`."""
    return {k: v for k, v in (config or {}).items() if k not in NEUTRAL_SETTINGS}


def default_settings(method: str, bits: int) -> dict[str, Any] | None:
    """The resolved default configuration of ``method`` at ``bits`` (JSON-normalised), or ``None`` when the
    method is not installed (a record from a plugin this environment lacks)."""
    key = (method, int(bits))
    if key not in _DEFAULTS_CACHE:
        from cmh.registry import create_method

        try:
            _DEFAULTS_CACHE[key] = jsonable(create_method(method, bits=int(bits), seed=0).config_dict())
        except Exception:  # noqa: BLE001 - unknown or broken plugin: no defaults to compare with
            _DEFAULTS_CACHE[key] = None
    return _DEFAULTS_CACHE[key]


def non_default_settings(method: str, bits: int, config: dict[str, Any] | None) -> dict[str, Any]:
    """The options of ``config`` that differ from ``method``'s defaults at ``bits`` (all of them, neutral
    ones aside, when the method is not installed)."""
    mine = jsonable(settings(config))
    defaults = default_settings(method, bits)
    if defaults is None:
        return mine
    return {k: v for k, v in sorted(mine.items()) if k in defaults and defaults[k] != v}


def record_identity(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record (or of a planned run's record head) beyond method/bits/seed/database that
    change its numbers: non-default settings and the dataset version."""
    ds = record["dataset"]
    return {
        "settings": non_default_settings(record["method"], int(record["bits"]), record.get("config")),
        "protocol": ds.get("protocol"),
        "split_seed": ds.get("split_seed"),
        "sizes": dict(sorted((ds.get("sizes") or {}).items())),
        "content_hash": ds.get("content_hash"),
    }


def is_default_identity(identity: dict[str, Any]) -> bool:
    """Default settings on the dataset's default split: the run keeps the plain ``seed<k>.json`` name."""
    return not identity["settings"] and identity["split_seed"] in DEFAULT_SPLIT_SEEDS


def identity_tag(identity: dict[str, Any]) -> str:
    """A short stable tag of an identity: 8 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(jsonable(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def record_stem(record: dict[str, Any], tag: str | None) -> str:
    """``seed<k>[.<tag>][.<database>]``: a record's file name without ``.json``."""
    database = str(record["dataset"].get("database_codes", "per-view"))
    return (
        f"seed{int(record['seed'])}"
        + (f".{tag}" if tag else "")
        + (f".{database}" if database != "per-view" else "")
    )


def record_folder(root: str | Path, record: dict[str, Any]) -> Path:
    """``<root>/<dataset>/<method>/<bits>``."""
    return Path(root) / str(record["dataset"]["name"]) / str(record["method"]) / str(int(record["bits"]))


def same_identity(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records (or heads) are runs of the same identity (method, bits, seed, database, rest)."""
    key = ("method", "bits", "seed")
    return (
        all(a[k] == b[k] for k in key)
        and a["dataset"].get("name") == b["dataset"].get("name")
        and a["dataset"].get("database_codes", "per-view") == b["dataset"].get("database_codes", "per-view")
        and record_identity(a) == record_identity(b)
    )


def canonical_record_path(root: str | Path, record: dict[str, Any]) -> Path:
    """The file name of a record's identity, whatever is on disk: plain for the default identity, tagged
    otherwise (what ``cmh records migrate`` renames records to)."""
    identity = record_identity(record)
    tag = None if is_default_identity(identity) else identity_tag(identity)
    return record_folder(root, record) / f"{record_stem(record, tag)}.json"


def resolve_record_path(root: str | Path, record: dict[str, Any]) -> Path:
    """Where the record of this run lives (or will live) under ``root``: its canonical path, unless that is a
    plain name already taken by a record of another identity (then the tagged name; module docstring)."""
    path = canonical_record_path(root, record)
    if path.exists() and not _holds_identity(path, record):  # a plain name taken by another identity
        return path.with_name(f"{record_stem(record, identity_tag(record_identity(record)))}.json")
    return path


def _holds_identity(path: Path, record: dict[str, Any]) -> bool:
    from cmh.results import load_record

    try:
        return same_identity(load_record(path), record)
    except (ValueError, OSError, KeyError):
        return False  # unreadable: never shown; the run takes its tagged name
