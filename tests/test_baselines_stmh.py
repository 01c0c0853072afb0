"""STMH (Wang, Gao, Wang, He, IJCAI 2015): topics/concepts, m-hot codes, monotone alternation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cmh.baselines.stmh import _top_m
from cmh.errors import ConfigError
from cmh.registry import create_method


def test_objective_never_increases(synthetic_small):
    m = create_method("stmh", bits=16, iters=12).fit(synthetic_small.part("train"))
    obj = np.asarray(m.objective_)
    assert len(obj) == 12
    assert np.all(np.diff(obj) <= 1e-6 * obj[:-1]), obj


@pytest.mark.parametrize("bits", [16, 24])
def test_every_code_marks_half_the_topics(bits, synthetic_small):
    m = create_method("stmh", bits=bits).fit(synthetic_small.part("train"))
    q = synthetic_small.part("query")
    for codes in (m.encode_image(q.image), m.encode_text(q.text), m.train_codes_):
        np.testing.assert_array_equal((codes == 1).sum(axis=1), bits // 2)


def test_text_code_marks_nearest_topic_centres(synthetic_small):
    m = create_method("stmh", bits=16).fit(synthetic_small.part("train"))
    t = synthetic_small.part("query").text[:20] * m.scale[1]
    dist = ((t[:, :, None] - m.f2[None, :, :]) ** 2).sum(axis=1)  # (20, K) plain distances
    expected = 2 * _top_m(-dist, 8) - 1
    np.testing.assert_array_equal(m.encode_text(synthetic_small.part("query").text[:20]), expected)
    # sparse text gives the same codes
    np.testing.assert_array_equal(
        m.encode_text(sp.csr_matrix(synthetic_small.part("query").text[:20])), expected
    )


def test_training_codes_follow_text_topics(synthetic_small):
    # the clustering term dominates G2: training codes agree with the out-of-sample text codes
    train = synthetic_small.part("train")
    m = create_method("stmh", bits=32).fit(train)
    assert (m.train_codes_ == m.encode_text(train.text)).mean() > 0.8


def test_bad_config(synthetic_small):
    with pytest.raises(ConfigError, match="active"):
        create_method("stmh", bits=16, active=1.0).fit(synthetic_small.part("train"))


def test_constant_topics_are_reported_not_silent():
    # concentrated low-dimensional text (like Wikipedia's LDA proportions) makes some topics always active
    rng = np.random.default_rng(0)
    n = 400
    z = rng.dirichlet(np.ones(5) * 5.0, size=n)
    x = np.abs(z @ rng.standard_normal((5, 40)) + 0.1 * rng.standard_normal((n, 40)))
    from cmh.baselines._common import UninformativeBitsWarning
    from cmh.data import Pairs

    with pytest.warns(UninformativeBitsWarning, match=r"only \d+ of the 32 bits are informative"):
        m = create_method("stmh", bits=32).fit(Pairs(x, z, None))
    assert 0 < m.n_informative < 32 and len(m.constant_bits_) == 32 - m.n_informative
    codes = m.encode_text(z)
    varying = np.setdiff1d(np.arange(32), m.constant_bits_)
    assert np.all(np.abs(codes[:, varying].astype(int).mean(0)) < 1)
