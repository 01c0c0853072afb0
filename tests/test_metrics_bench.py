"""Smoke test of ``cmh bench eval`` at the tiny size (numbers are not checked: speed belongs to benchmarks)."""

from __future__ import annotations

import argparse
import json

import pytest

from cmh.bench import eval as bench_eval
from cmh.errors import CMHError


def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    bench_eval.add_arguments(p)
    args = p.parse_args(
        ["--sizes", "tiny", "--ref-queries", "20", "--no-memory", "--json", str(tmp_path / "b.json")]
    )
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_bench_eval_tiny(tmp_path):
    assert bench_eval.run(_args(tmp_path)) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert rows[0]["map_identical"] and rows[0]["ref_extrapolated"]
    assert {"order_ratio", "counts_ratio", "all_ratio"} <= rows[0].keys()


def test_bench_eval_rejects_unknown_size(tmp_path):
    with pytest.raises(CMHError, match="unknown size"):
        bench_eval.run(_args(tmp_path, sizes="nuswide"))


def test_bench_eval_threads_option(tmp_path):
    assert bench_eval.run(_args(tmp_path, threads=1)) == 0
    assert json.loads((tmp_path / "b.json").read_text())["args"]["threads"] == 1
    with pytest.raises(CMHError, match="--threads"):
        bench_eval.run(_args(tmp_path, threads=0))
