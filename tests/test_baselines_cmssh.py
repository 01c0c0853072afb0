"""CMSSH (Bronstein et al., CVPR 2010): boosted cross-modal projection pairs with thresholds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _retrieval import random_codes_map, task_maps

from cmh.baselines.cmssh import _best_thresholds, sample_pairs
from cmh.data import Pairs, one_hot
from cmh.errors import CMHError
from cmh.registry import create_method

SMALL = {"pairs": 3000}


@pytest.fixture(scope="module")
def fitted(synthetic_small):
    return create_method("cmssh", bits=16, seed=0, **SMALL).fit(synthetic_small.part("train"))


def test_codes_shape_dtype_values(fitted, synthetic_small):
    q = synthetic_small.part("query")
    for codes in (fitted.encode_image(q.image), fitted.encode_text(q.text)):
        assert codes.shape == (len(q), 16) and codes.dtype == np.int8
        assert set(np.unique(codes)) <= {-1, 1}
    assert fitted.kind == "shallow" and fitted.supervised


def test_no_constant_bits_and_boosting_weights(fitted, synthetic_small):
    train = synthetic_small.part("train")
    for codes in (fitted.encode_image(train.image), fitted.encode_text(train.text)):
        assert not np.any(np.all(codes == codes[:1], axis=0))
    # every weak learner beats chance on its re-weighted pairs (AdaBoost alpha > 0)
    assert np.all(fitted.alphas_ > 0)


def test_deterministic_under_seed(synthetic_small):
    train, q = synthetic_small.part("train"), synthetic_small.part("query")
    a = create_method("cmssh", bits=8, seed=5, **SMALL).fit(train)
    b = create_method("cmssh", bits=8, seed=5, **SMALL).fit(train)
    np.testing.assert_array_equal(a.encode_image(q.image), b.encode_image(q.image))
    np.testing.assert_array_equal(a.encode_text(q.text), b.encode_text(q.text))


def test_beats_random_codes(fitted, synthetic_small):
    rand = random_codes_map(synthetic_small, 16)
    i2t, t2i = task_maps(fitted, synthetic_small)
    assert i2t > rand + 0.05 and t2i > rand + 0.05, (i2t, t2i, rand)


def test_sparse_text_matches_dense(fitted, synthetic_small):
    q = synthetic_small.part("query")
    np.testing.assert_array_equal(fitted.encode_text(sp.csr_matrix(q.text)), fitted.encode_text(q.text))


def test_large_dims_use_matrix_free_path(synthetic_small):
    # d_img * d_txt > 1e6 takes the matrix-free singular-vector path; codes must still be informative
    rng = np.random.default_rng(0)
    train = synthetic_small.part("train")
    pad = rng.standard_normal((len(train), 10000)).astype(np.float32) * 0.01
    big = Pairs(np.hstack([train.image, pad]), train.text, train.labels)
    m = create_method("cmssh", bits=8, seed=0, pairs=1000).fit(big)
    codes = m.encode_image(big.image)
    assert not np.any(np.all(codes == codes[:1], axis=0))
    assert np.all(m.alphas_ > 0)


def test_sample_pairs_labels_and_balance():
    labels = one_hot(np.arange(300) % 10, 10)
    i, j, s = sample_pairs(labels, 1000, 0.5, np.random.default_rng(0))
    assert len(i) == len(j) == len(s) == 1000 and (s > 0).sum() == 500
    share = np.any(labels[i].astype(bool) & labels[j].astype(bool), axis=1)
    np.testing.assert_array_equal(share, s > 0)


def test_threshold_search_is_exact_on_grid():
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal(500), rng.standard_normal(500)
    ws = rng.standard_normal(500) / 500
    a, b, r = _best_thresholds(u, v, ws, 16)
    got = float((ws * np.where(u + a >= 0, 1, -1) * np.where(v + b >= 0, 1, -1)).sum())
    assert got == pytest.approx(r)
    # no other pair of grid candidates does better
    qs = np.linspace(0.025, 0.975, 16)
    best = max(
        float((ws * np.where(u - ua >= 0, 1, -1) * np.where(v - vb >= 0, 1, -1)).sum())
        for ua in np.quantile(u, qs)
        for vb in np.quantile(v, qs)
    )
    assert r == pytest.approx(best)


def _pairs(n=80, labels=None, image=None, text=None):
    rng = np.random.default_rng(0)
    return Pairs(
        image=rng.random((n, 8)).astype(np.float32) if image is None else image,
        text=rng.random((n, 5)).astype(np.float32) if text is None else text,
        labels=one_hot(np.arange(n) % 3, 3) if labels is None else labels,
    )


def test_errors_and_warning():
    m = create_method("cmssh", bits=8, pairs=500)
    with pytest.raises(CMHError, match="same labels"):
        m.fit(_pairs(labels=np.ones((80, 2), dtype=np.uint8)))
    with pytest.raises(CMHError, match="all zero"):
        m.fit(_pairs(text=np.zeros((80, 5), dtype=np.float32)))
    with pytest.raises(CMHError, match="fit"):
        create_method("cmssh", bits=8).encode_text(np.ones((2, 5), dtype=np.float32))
    # more bits than the rank of the cross-covariance (text is 5-d): warned, and still no constant bits
    with pytest.warns(UserWarning, match="rank <= 5"):
        m16 = create_method("cmssh", bits=16, pairs=500).fit(_pairs())
    codes = m16.encode_text(_pairs().text)
    assert not np.any(np.all(codes == codes[:1], axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_method("cmssh", bits=8, pairs=500).fit(_pairs(text=np.random.default_rng(1).random((80, 12))))


@pytest.mark.slow
def test_wikipedia_map_32_bits(wikipedia):
    ds = wikipedia
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 32 bits > the 10-d text: the rank warning is expected
        m = create_method("cmssh", bits=32, seed=0).fit(ds.part("train"))
    i2t, t2i = task_maps(m, ds)
    # SCM (AAAI 2014) and SePH (CVPR 2015) report CMSSH on Wikipedia at about 0.16-0.19 I->T and
    # 0.16-0.21 T->I (16-128 bits); random codes give ~0.11. We measured 0.23 / 0.19 at 32 bits, seed 0
    # (an exact threshold search); the range allows for that and for seed variation.
    assert 0.14 <= i2t <= 0.30, i2t
    assert 0.14 <= t2i <= 0.28, t2i
