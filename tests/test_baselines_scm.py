"""SCM (Zhang & Li, AAAI 2014): implicit semantic cross matrix, orth vs seq, supervision checks, warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from cmh.baselines._common import Centred, UninformativeBitsWarning, row_normalise
from cmh.baselines.scm import semantic_cross
from cmh.data import Pairs
from cmh.errors import CMHError
from cmh.registry import create_method


def _fit(name, train, bits, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBitsWarning)
        return create_method(name, bits=bits, **kw).fit(train)


def test_semantic_cross_equals_explicit_n_by_n():
    rng = np.random.default_rng(0)
    n = 60
    x = rng.random((n, 7)) + 2.0
    y = sp.csr_matrix(rng.random((n, 5)) * (rng.random((n, 5)) > 0.5))
    labels = (rng.random((n, 4)) > 0.6).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    lhat = row_normalise(labels)
    s = 2 * lhat @ lhat.T - 1  # the n x n matrix the implementation never forms
    xc, yc = x - x.mean(0), y.toarray() - y.toarray().mean(0)
    np.testing.assert_allclose(semantic_cross(Centred(x), Centred(y), labels), xc.T @ s @ yc, atol=1e-9)


def test_first_sequential_bit_is_first_orthogonal_bit(synthetic_small):
    train = synthetic_small.part("train")
    orth, seq = _fit("scm-orth", train, 8), _fit("scm-seq", train, 8)
    q = synthetic_small.part("query")
    np.testing.assert_array_equal(orth.encode_image(q.image)[:, 0], seq.encode_image(q.image)[:, 0])
    np.testing.assert_array_equal(orth.encode_text(q.text)[:, 0], seq.encode_text(q.text)[:, 0])
    # later sequential bits differ: they follow the residual semantics
    assert not np.array_equal(orth.encode_image(q.image), seq.encode_image(q.image))


@pytest.mark.parametrize("name", ["scm-orth", "scm-seq"])
def test_supervision_is_required_and_checked(name, synthetic_small):
    train = synthetic_small.part("train")
    with pytest.raises(CMHError, match="same labels"):
        create_method(name, bits=16).fit(Pairs(train.image, train.text, np.ones((len(train), 1), np.uint8)))
    with pytest.raises(CMHError, match="needs labels"):
        create_method(name, bits=16).fit(Pairs(train.image, train.text, None))


@pytest.mark.parametrize("name", ["scm-orth", "scm-seq"])
def test_database_centred_with_train_means(name, synthetic_small):
    m = _fit(name, synthetic_small.part("train"), 16)
    db = synthetic_small.part("database")
    one = m.encode_image(db.image[5:6])
    np.testing.assert_array_equal(one, m.encode_image(db.image)[5:6])
    np.testing.assert_allclose(
        m.mean_image, synthetic_small.part("train").image.mean(0), rtol=1e-4, atol=1e-6
    )


def test_orth_warns_about_label_rank(synthetic_small):
    # 10 classes: X^T S Y has rank <= 10, so 32 bits need the documented extension
    with pytest.warns(UninformativeBitsWarning, match=r"only \d+ of the 32 bits are informative"):
        m = create_method("scm-orth", bits=32).fit(synthetic_small.part("train"))
    assert m.n_informative <= 10


def test_seq_warns_when_bits_exceed_modality_rank():
    rng = np.random.default_rng(0)
    n = 300
    labels = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, n)]
    x = labels @ rng.standard_normal((4, 20)) + 0.3 * rng.standard_normal((n, 20))
    y = labels @ rng.standard_normal((4, 6)) + 0.3 * rng.standard_normal((n, 6))
    with pytest.warns(UninformativeBitsWarning, match="only 6 of the 16 bits"):
        m = create_method("scm-seq", bits=16).fit(Pairs(x, y, labels))
    codes = m.encode_text(y).astype(int)
    assert np.all(np.abs(codes.mean(0)) < 1)  # no constant bit


@pytest.mark.parametrize("shape", [(120, 80), (80, 120), (30, 20)])
def test_residual_top_singular_pair_tracks_rank_one_updates(shape):
    from cmh.baselines.scm import _ResidualTop1

    rng = np.random.default_rng(1)
    m = rng.standard_normal(shape)
    r = _ResidualTop1(m)
    for _ in range(3):
        u, s, v = r.top()
        ref = np.linalg.svd(r.m, compute_uv=False)
        np.testing.assert_allclose(s, ref[0], rtol=1e-8)
        np.testing.assert_allclose(r.m @ v, s * u, atol=1e-8)
        a, b = rng.standard_normal(shape[0]), rng.standard_normal(shape[1])
        r.subtract(a, b)
        m = m - np.outer(a, b)
        np.testing.assert_allclose(r.m, m)
        gram = m.T @ m if r.right else m @ m.T
        np.testing.assert_allclose(r.g, gram, atol=1e-8)
