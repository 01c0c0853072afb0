"""Result records: atomic writes, canonical paths, skipping corrupt files."""

from __future__ import annotations

import json
import os

import pytest

from cmh._atomic import atomic_path
from cmh.results import atomic_write_text, load_records, record_path, write_record


def _record(method="cvh", bits=32, seed=0):
    return {
        "schema": 1,
        "method": method,
        "bits": bits,
        "seed": seed,
        "dataset": {"name": "toy"},
        "tasks": {"i2t": {"map": 0.5}, "t2i": {"map": 0.6}},
    }


def test_write_and_load_roundtrip(tmp_path):
    path = write_record(_record(), tmp_path)
    assert path == record_path(tmp_path, "toy", "cvh", 32, 0)
    records, skipped = load_records(tmp_path)
    assert skipped == [] and len(records) == 1
    assert records[0]["tasks"]["t2i"]["map"] == 0.6 and records[0]["_path"] == str(path)
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]


def test_corrupt_and_foreign_files_are_skipped_by_path(tmp_path):
    write_record(_record(seed=1), tmp_path)
    bad = tmp_path / "toy" / "cvh" / "32" / "seed2.json"
    bad.write_text('{"method": "cvh", "bits": 3')  # half-written
    other = tmp_path / "notes.json"
    other.write_text(json.dumps({"hello": 1}))
    records, skipped = load_records(tmp_path)
    assert len(records) == 1
    reasons = {p.name: why for p, why in skipped}
    assert "corrupt or half-written" in reasons["seed2.json"]
    assert "missing" in reasons["notes.json"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")

    with pytest.raises(AttributeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_path_removes_the_temporary_file_on_error(tmp_path):
    target = tmp_path / "sub" / "codes.npz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_atomic_files_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_run_records_method_warnings(synthetic_small) -> None:
    """A method's warnings (e.g. STMH's constant bits) are kept in the record, once each, and still shown."""
    import warnings

    from cmh.runner import run_once

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        record = run_once("stmh", synthetic_small, 24, seed=0)
    assert any("UninformativeBitsWarning" in w and "informative" in w for w in record["warnings"])
    assert len(record["warnings"]) == len(set(record["warnings"]))
    assert any("informative" in str(w.message) for w in shown)
    assert run_once("cvh", synthetic_small, 16, seed=0)["warnings"] == []
