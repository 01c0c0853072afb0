"""`cmh sweep --backend ray`: the records a local Ray instance writes equal the local backend's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from cmh.cli import main
from cmh.results import load_records

ray = pytest.importorskip("ray", reason="the Ray backend is tested with the cmh[ray] extra (in cmh[test])")

#: what legitimately differs between two runs of the same cell (time, machine, thread pools)
VOLATILE = {
    "date",
    "timings",
    "peak_rss_mb",
    "_path",
    "git_commit",
    "versions",
    "torch_threads",
    "threads",
    "cpu",
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_grid(tmp_path: Path) -> Path:
    grid = {
        "datasets": {
            "synthetic": {"n": 900, "n_query": 100, "n_train": 400, "image_dim": 64, "text_dim": 48}
        },
        "resources": {"cpus": 1},
        "runs": [
            {"methods": ["cvh", "scm-seq"], "datasets": ["synthetic"], "bits": [16, 32], "seeds": [0]},
            {
                "methods": ["dcmh"],
                "datasets": ["synthetic"],
                "bits": [16],
                "seeds": [1],
                "set": {"epochs": 2, "txt_hidden": 64, "verbose": False},
            },
            {"methods": ["cmfh"], "datasets": ["synthetic"], "bits": [8], "seeds": [0], "set": {"lam": 2.0}},
        ],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def comparable(folder: Path) -> dict:
    records, skipped = load_records(folder)
    assert not skipped
    return {
        (r["method"], r["bits"], r["seed"]): {k: v for k, v in r.items() if k not in VOLATILE}
        for r in records
    }


def test_ray_backend_writes_the_local_records(local_ray, tmp_path: Path, capsys, monkeypatch) -> None:
    """Same cells, same metrics and configs; the failing cell is reported and the others go on; a second
    sweep skips the recorded cells."""
    import torch
    from threadpoolctl import threadpool_limits

    grid = write_grid(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray tasks (1 CPU each), for bitwise-equal float sums
    try:
        with threadpool_limits(limits=1):
            assert main(["sweep", str(grid), "--out", str(tmp_path / "local"), "--device", "cpu"]) == 2
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert main(["sweep", str(grid), "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 2
    captured = capsys.readouterr()
    assert "on Ray: 2 CPUs" in captured.out and "1 of 6 runs failed" in captured.err
    assert "lam" in captured.out  # the failing cell's own one-line reason

    local, on_ray = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert sorted(local) == sorted(on_ray) and len(local) == 5
    for key in local:
        assert on_ray[key] == local[key], key

    # resume: the recorded cells are skipped, only the failed one runs again
    assert main(["sweep", str(grid), "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 2
    assert "6 runs in the grid, 1 to do, 5 recorded already" in capsys.readouterr().out


def test_without_ray_the_backend_is_a_one_line_error(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(write_grid(tmp_path)), "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'cmh[ray]'" in err and err.count("\n") == 1


def test_bad_resources_and_options(tmp_path: Path, capsys) -> None:
    grid = yaml.safe_load(write_grid(tmp_path).read_text())
    grid["resources"] = {"cpu": 2}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(grid))
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert "unknown key 'cpu'" in capsys.readouterr().err
    good = write_grid(tmp_path)
    assert main(["sweep", str(good), "--address", "auto"]) == 2
    assert "--address is the Ray cluster of --backend ray" in capsys.readouterr().err
    assert main(["sweep", str(good), "--backend", "ray", "--jobs", "2"]) == 2
    assert "--jobs is for the local backend" in capsys.readouterr().err


def test_resources_from_the_grid_and_the_command_line(tmp_path: Path, capsys) -> None:
    import argparse

    from cmh.cli.sweep import _apply_overrides
    from cmh.sweep import load_grid, plan

    grid = load_grid(write_grid(tmp_path))
    grid["runs"][1]["resources"] = {"gpus": 0.5}
    runs = list(plan(grid))
    assert {(r.method, r.cpus, r.gpus) for r in runs} == {
        ("cvh", 1.0, 0.0),
        ("scm-seq", 1.0, 0.0),
        ("dcmh", 1.0, 0.5),
        ("cmfh", 1.0, 0.0),
    }
    opts = {"data": None, "image_features": None, "set": None, "bits": None, "seeds": None}
    cli = argparse.Namespace(**opts, cpus_per_run=4.0, gpus_per_run=None)
    assert {(r.cpus, r.gpus) for r in plan(_apply_overrides(grid, cli)) if r.method == "dcmh"} == {(4.0, 0.5)}
    assert main(["sweep", str(write_grid(tmp_path)), "--dry-run", "--cpus-per-run", "0"]) == 2
    assert "cpus must be > 0" in capsys.readouterr().err
