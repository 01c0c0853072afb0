"""The five classic shallow baselines (cvh, scm-orth, scm-seq, cmfh, stmh) compared with each other and with the
papers' Wikipedia numbers, cmh.baselines._common, and ``cmh bench baselines``. The behaviour every method must
have is tested for every registered method in tests/test_methods_common.py."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _retrieval import task_maps

from cmh.base import HashMethod, sign_codes
from cmh.baselines import _common
from cmh.data import Pairs
from cmh.errors import CMHError
from cmh.registry import create_method, get_method_class

METHODS = ["cvh", "scm-orth", "scm-seq", "cmfh", "stmh"]


def fit_quiet(name: str, train: Pairs, bits: int, seed: int = 0, **cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _common.UninformativeBitsWarning)
        return create_method(name, bits=bits, seed=seed, **cfg).fit(train)


def test_supervised_beat_unsupervised_on_synthetic(synthetic_small):
    train = synthetic_small.part("train")
    scores = {m: sum(task_maps(fit_quiet(m, train, 32), synthetic_small)) for m in METHODS}
    best_unsupervised = max(scores[m] for m in METHODS if not get_method_class(m).supervised)
    for m in ("scm-orth", "scm-seq"):
        assert scores[m] > best_unsupervised + 0.05, scores


# Expected Wikipedia mAP at 32 bits (query = 693 test pairs, database = train = 2,173 pairs; the database is
# encoded per view: I→T searches text codes, T→I image codes), as (I→T range, T→I range).
# Justification (papers' Wikipedia tables, 16-128 bits, 128-d SIFT BoVW + 10-d LDA; random codes score ~0.11):
# - CVH: the SCM/SePH/CMFH papers report ~0.18-0.20 I→T with the (uncentred) public code; cmh centres and
#   extends the 9 informative directions (9-bit CCA codes alone: ~0.19/0.185), measured 0.23/0.22.
# - SCM-orth / SCM-seq: the SCM paper reports ~0.16-0.24 (orth, degrading with K) and ~0.24-0.26 I→T (seq);
#   measured 0.25/0.24 (orth, with the documented extension instead of degenerate bits) and 0.24/0.24 (seq).
# - CMFH: the paper reports ~0.25 I→T; its ~0.5-0.6 T→I needs unified database codes (cmh measured 0.53 with
#   CMFH.encode_pair), under the per-view protocol here T→I is ~0.23.
# - STMH: no per-view figure in its paper; measured 0.19/0.19, above chance and below the supervised SCM.
# The ranges leave about ±0.05 around the measurements (seed and BLAS variation is < 0.01).
WIKI_RANGES = {
    "cvh": ((0.17, 0.28), (0.17, 0.28)),
    "scm-orth": ((0.19, 0.30), (0.19, 0.30)),
    "scm-seq": ((0.19, 0.30), (0.19, 0.30)),
    "cmfh": ((0.18, 0.30), (0.18, 0.30)),
    "stmh": ((0.14, 0.25), (0.14, 0.25)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_wikipedia_map_in_paper_range(name, wikipedia):
    ds = wikipedia
    m = fit_quiet(name, ds.part("train"), 32)
    i2t, t2i = task_maps(m, ds)
    (lo1, hi1), (lo2, hi2) = WIKI_RANGES[name]
    assert lo1 <= i2t <= hi1 and lo2 <= t2i <= hi2, (name, i2t, t2i)


# -- _common -------------------------------------------------------------------------------------


def test_centred_moments_match_dense_and_sparse():
    rng = np.random.default_rng(0)
    x = rng.random((50, 6)) * (rng.random((50, 6)) > 0.5)
    y = rng.random((50, 4))
    mx, my = _common.column_mean(x), _common.column_mean(y)
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(_common.scatter(x, mx), xc.T @ xc, atol=1e-10)
    np.testing.assert_allclose(_common.scatter(sp.csr_matrix(x), mx), xc.T @ xc, atol=1e-10)
    np.testing.assert_allclose(_common.cross_scatter(sp.csr_matrix(x), y, mx, my), xc.T @ yc, atol=1e-10)
    w = rng.standard_normal((6, 3))
    np.testing.assert_allclose(_common.centred_project(sp.csr_matrix(x), w, mx), xc @ w, atol=1e-10)


def test_generalised_eigh_is_b_orthonormal():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 5))
    a = a + a.T
    b = rng.standard_normal((5, 5))
    b = b @ b.T + 5 * np.eye(5)
    vals, vecs = _common.generalised_eigh(a, b, 3)
    assert np.all(np.diff(vals) <= 0)
    np.testing.assert_allclose(vecs.T @ b @ vecs, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(a @ vecs, b @ vecs * vals, atol=1e-8)


def test_extend_projections_warns_and_keeps_informative_columns():
    rng = np.random.default_rng(0)
    with pytest.warns(_common.UninformativeBitsWarning, match="only 3 of the 8 bits"):
        e = _common.extend_projections("m", 8, 3, rng)
    assert e.shape == (3, 8)
    np.testing.assert_array_equal(e[:, :3], np.eye(3))
    assert np.all(np.abs(e[:, 3:]).sum(0) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_common.extend_projections("m", 4, 6, rng), np.eye(6, 4))
    with pytest.raises(CMHError, match="no informative"):
        _common.extend_projections("m", 4, 0, rng)


def test_check_features_and_labels():
    with pytest.raises(CMHError, match="all zero"):
        _common.check_features("m", sp.csr_matrix((5, 3)), "text")
    with pytest.raises(CMHError, match="identical"):
        _common.check_features("m", np.ones((5, 3)), "image")
    with pytest.raises(CMHError, match="identical"):
        _common.check_features("m", sp.csr_matrix(np.ones((5, 3))), "text")
    _common.check_features("m", np.eye(5), "image")
    with pytest.raises(CMHError, match="same labels"):
        _common.check_labels("m", np.ones((5, 1)))
    with pytest.raises(CMHError, match="needs labels"):
        _common.check_labels("m", None)
    lab = _common.row_normalise(np.array([[1, 1], [0, 1]]))
    np.testing.assert_allclose(np.linalg.norm(lab, axis=1), 1.0)


def test_peak_rss_sees_a_large_allocation() -> None:
    from cmh.bench._report import PeakRSS

    with PeakRSS() as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block[::512] = 2.0
    del block
    assert peak.mib is not None and peak.mib >= 60, peak.mib


class _Heavy(HashMethod):
    """Test-only shallow method: ``fit`` touches a 64 MiB block and sleeps 0.2 s; each encode call sleeps 10 ms."""

    kind = "shallow"
    supervised = False
    paper = "test only"

    def fit(self, train):
        block = np.ones(64 * 2**20 // 8)  # 64 MiB
        block[::512] = 2.0  # touched, so it is resident
        time.sleep(0.2)
        self.fitted = True
        return self

    def encode_image(self, image):
        time.sleep(0.01)
        return sign_codes(np.asarray(image)[:, : self.bits] - 0.5)

    def encode_text(self, text):
        time.sleep(0.01)
        return sign_codes(sp.csr_matrix(text)[:, : self.bits].toarray() - 0.5)


@pytest.fixture
def heavy_method():
    from cmh import registry

    registry.list_methods()  # load the built-in methods first
    registry.METHODS.register("test-heavy", _Heavy, force=True)
    yield "test-heavy"
    registry.METHODS._items.pop("test-heavy", None)


def test_bench_baselines_measures_what_fit_and_encode_do(tmp_path, heavy_method):
    import argparse
    import json
    import math

    from cmh.bench import baselines as bench

    out = tmp_path / "bench.json"
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    argv = ["--n", "300", "--image-dim", "32", "--text-dim", "20", "--classes", "5", "--bits", "16"]
    args = p.parse_args(
        ["--methods", f"cvh,stmh,{heavy_method}", *argv, "--encode-n", "700", "--json", str(out)]
    )
    assert bench.run(args) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["method"] for r in rows] == ["cvh", "stmh", heavy_method]
    for r in rows:
        for key in ("fit_s", "encode_s", "peak_mib"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (r["method"], key, r[key])
        assert r["fit_s"] > 0 and r["encode_s"] > 0  # (peak RSS growth can be 0: freed pages are reused)
        assert r["encode_pass"] == (r["encode_s"] <= r["encode_target_s"])
        assert r["fit_pass"] == (None if r["fit_target_s"] is None else r["fit_s"] <= r["fit_target_s"])
    heavy = rows[2]
    # fit() is inside the timed block (its 0.2 s sleep), and so are all encode calls
    assert heavy["fit_s"] >= 0.2, heavy
    # 700 items per modality in blocks of n = 300 rows: 3 calls per modality, 10 ms each
    assert heavy["encode_s"] >= 6 * 0.01, heavy
    # the 64 MiB that fit touches show in the peak memory
    assert heavy["peak_mib"] >= 60, heavy
    assert rows[0]["fit_target_s"] == 10.0 and rows[1]["fit_target_s"] is None
    assert bench.fit_target("seph-km") == 120.0
    with pytest.raises(CMHError, match="not shallow"):
        bench.run(p.parse_args(["--methods", "ssah"]))
