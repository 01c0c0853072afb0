"""Smoke tests of ``cmh bench eval`` at tiny sizes (numbers are not checked: speed belongs to benchmarks)."""

from __future__ import annotations

import argparse
import json

import pytest

from cmh.bench import _eval_scale
from cmh.bench import eval as bench_eval
from cmh.errors import CMHError


def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    bench_eval.add_arguments(p)
    args = p.parse_args(
        [
            "--sizes",
            "tiny",
            "--ref-queries",
            "20",
            "--repeat",
            "1",
            "--no-memory",
            "--no-compile",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_bench_eval_tiny(tmp_path):
    assert bench_eval.run(_args(tmp_path, threads="1,2")) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [r["threads"] for r in rows] == [1, 2]
    for r in rows:
        assert r["size"] == "tiny" and r["map_identical"] and r["ref_extrapolated"]
        assert {"map_vs_floor", "full_vs_floor", "ref_vs_map", "floor_s", "map1000_s", "load"} <= r.keys()
        assert (
            r["floor_s"] == min(r["floor1_s"], r["floor2_s"])
            and r["map_vs_floor"] == r["map_s"] / r["floor_s"]
        )


def test_bench_eval_stages_tiny(tmp_path):
    """--stages: every stage of the scan timed beside the floor, for each thread count."""
    from cmh.bench._eval_stages import STAGES

    assert bench_eval.run(_args(tmp_path, threads="1,2", stages=True)) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [(r["size"], r["threads"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
    for r in rows:
        for stage in STAGES:
            assert r[f"{stage}_vs_floor"] == r[f"{stage}_s"] / r["floor_s"] > 0


def test_bench_eval_rejects_bad_options(tmp_path):
    with pytest.raises(CMHError, match="unknown size"):
        bench_eval.run(_args(tmp_path, sizes="nuswide"))
    with pytest.raises(CMHError, match="--threads"):
        bench_eval.run(_args(tmp_path, threads="0"))
    with pytest.raises(CMHError, match="--db-size"):
        bench_eval.run(_args(tmp_path, db_size="10q"))
    with pytest.raises(CMHError, match="--stages times the compiled CPU kernel"):
        bench_eval.run(_args(tmp_path, stages=True, device="cuda"))


def test_db_size_parsing_and_tiny_scaling_run(tmp_path):
    assert _eval_scale.parse_sizes("10k, 100k,1M,10M,2500") == [10**4, 10**5, 10**6, 10**7, 2500]
    assert bench_eval.run(_args(tmp_path, db_size="3k", chunk=1000, threads="1")) == 0
    (row,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert row["db_size"] == row["n_database"] == 3000 and 0 < row["map"] <= 1
