"""`cmh sweep GRID`: runs only what is missing, honours overrides, and fails clearly on a bad grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cmh.cli import main
from cmh.results import load_records
from cmh.sweep import load_grid, plan


def write_grid(tmp_path: Path, **extra) -> Path:
    grid = {
        "out": str(tmp_path / "res"),
        "datasets": {"synthetic": {"n": 1200, "n_query": 100, "n_train": 600}},
        "runs": [{"methods": ["cvh"], "datasets": ["synthetic"], "bits": [16, 32], "seeds": [0]}],
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_committed_grids_plan_every_method_and_dataset() -> None:
    grid = load_grid("leaderboard")
    runs = list(plan(grid))
    assert {r.dataset for r in runs} == {"synthetic", "wikipedia", "coco_mini"}
    assert {"ssah", "dcmh", "cvh", "seph-km"} <= {r.method for r in runs}
    assert len(runs) == len({(r.dataset, r.method, r.bits, r.seed, r.database) for r in runs})  # no run twice
    from cmh.registry import list_methods

    assert {r.method for r in runs} <= set(list_methods())


def test_sweep_runs_missing_records_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grid = write_grid(tmp_path)
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    assert "2 to do" in capsys.readouterr().out
    assert not (tmp_path / "res").exists()
    assert main(["sweep", str(grid)]) == 0
    records, skipped = load_records(tmp_path / "res")
    assert not skipped and sorted(r["bits"] for r in records) == [16, 32]
    assert main(["sweep", str(grid), "--bits", "16,64"]) == 0
    out = capsys.readouterr().out
    assert "1 to do, 1 recorded already" in out
    assert sorted(r["bits"] for r in load_records(tmp_path / "res")[0]) == [16, 32, 64]


def test_sweep_block_with_unified_database_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [
        {"methods": ["cmfh"], "datasets": ["synthetic"], "bits": [16], "seeds": [0]},
        {"methods": ["cmfh"], "datasets": ["synthetic"], "bits": [16], "seeds": [0], "database": "unified"},
    ]
    grid = write_grid(tmp_path, runs=runs)
    assert main(["sweep", str(grid)]) == 0
    names = sorted(p.name for p in (tmp_path / "res").rglob("*.json"))
    assert names == ["seed0.json", "seed0.unified.json"]
    assert "unified database codes" in capsys.readouterr().out
    bad = write_grid(tmp_path, runs=[{**runs[1], "database": "both"}])
    assert main(["sweep", str(bad)]) == 2
    assert "unknown database 'both'" in capsys.readouterr().err


def test_parallel_sweep_matches_the_sequential_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--jobs 2: worker processes write the same records (metrics) as one process; a failure is reported."""
    runs = [
        {"methods": ["cvh", "scm-seq"], "datasets": ["synthetic"], "bits": [16, 32], "seeds": [0]},
        {"methods": ["cvh"], "datasets": ["synthetic"], "bits": [8], "seeds": [0], "set": {"reg": -1.0}},
    ]
    grid = write_grid(tmp_path, runs=runs)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "one")]) == 2
    capsys.readouterr()
    assert main(["sweep", str(grid), "--out", str(tmp_path / "two"), "--jobs", "2"]) == 2
    captured = capsys.readouterr()
    assert "2 at a time" in captured.out and "1 of 5 runs failed" in captured.err

    def maps(folder: str) -> dict:
        records, skipped = load_records(tmp_path / folder)
        assert not skipped
        return {
            (r["method"], r["bits"]): (r["tasks"]["i2t"]["map"], r["tasks"]["t2i"]["map"]) for r in records
        }

    one, two = maps("one"), maps("two")
    assert sorted(one) == sorted(two) == [("cvh", 16), ("cvh", 32), ("scm-seq", 16), ("scm-seq", 32)]
    for key in one:  # workers run with fewer BLAS threads: equal up to float summation order
        assert two[key] == pytest.approx(one[key], abs=1e-3), key


def test_sweep_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [unclosed")
    assert main(["sweep", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    grid = write_grid(tmp_path, datasets={"mine": {"data": str(tmp_path / "nope"), "prepare": "make-it.sh"}})
    text = yaml.safe_load(grid.read_text())
    text["runs"][0]["datasets"] = ["mine"]
    grid.write_text(yaml.safe_dump(text))
    assert main(["sweep", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "make-it.sh" in err and err.count("\n") == 1
    assert main(["sweep", "no-such-grid"]) == 2


def test_a_failing_run_does_not_stop_the_sweep(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grid = write_grid(tmp_path)
    text = yaml.safe_load(grid.read_text())
    text["runs"].insert(
        0, {"methods": ["cvh"], "datasets": ["synthetic"], "bits": [8], "seeds": [0], "set": {"reg": -1.0}}
    )
    grid.write_text(yaml.safe_dump(text))
    code = main(["sweep", str(grid)])
    err = capsys.readouterr().err
    records, _ = load_records(tmp_path / "res")
    assert sorted(r["bits"] for r in records) == [16, 32]  # the runs after the failure went on
    assert code == 2 and "1 of 3 runs failed" in err


def test_an_unbuilt_dataset_is_explained_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fresh clone has no coco_mini: the sweep names the build step and runs the rest."""
    grid = write_grid(
        tmp_path,
        datasets={
            "synthetic": {"n": 1200, "n_query": 100, "n_train": 600},
            "coco_mini": {"data": str(tmp_path / "not-built"), "prepare": "scripts/build_coco_mini.sh"},
        },
        runs=[{"methods": ["cvh"], "datasets": ["synthetic", "coco_mini"], "bits": [16], "seeds": [0]}],
    )
    assert main(["sweep", str(grid)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "coco_mini is not built here, so its 1 runs are skipped: build it with `scripts/build_coco_mini.sh`"
        in out
    )
    assert [r["dataset"]["name"] for r in load_records(tmp_path / "res")[0]] == ["synthetic"]
    # asked for by name, it must load
    assert main(["sweep", str(grid), "--datasets", "coco_mini"]) == 2
    assert "build it first with `scripts/build_coco_mini.sh`" in capsys.readouterr().err
