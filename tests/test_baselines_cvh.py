"""CVH (Kumar & Udupa, IJCAI 2011): CCA solution, centering with train means, informative-bits policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from cmh.baselines._common import UninformativeBitsWarning
from cmh.baselines.cvh import cca
from cmh.data import Pairs
from cmh.registry import create_method


def _paired(n=400, dx=12, dy=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, dx)) + 0.5 * rng.standard_normal((n, dx)) + 5.0  # big offset
    y = z @ rng.standard_normal((3, dy)) + 0.5 * rng.standard_normal((n, dy)) - 3.0
    labels = np.eye(2, dtype=np.uint8)[(z[:, 0] > 0).astype(int)]
    return Pairs(x.astype(np.float32), y.astype(np.float32), labels)


def test_cca_matches_generalised_eigenproblem():
    p = _paired()
    x, y = p.image.astype(float), p.text.astype(float)
    wx, wy, rho, mx, my, r = cca(x, y, reg=0.0)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = len(x)
    cxx, cyy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    # the paper's relaxed problem: [[0, Cxy], [Cyx, 0]] a = rho [[Cxx, 0], [0, Cyy]] a
    a = np.block([[np.zeros((12, 12)), cxy], [cxy.T, np.zeros((6, 6))]])
    b = scipy.linalg.block_diag(cxx, cyy)
    top = np.sort(scipy.linalg.eigh(a, b, eigvals_only=True))[::-1][:6]
    np.testing.assert_allclose(rho, top, atol=1e-8)
    # projections are correlated exactly rho and unit variance
    px, py = xc @ wx, yc @ wy
    np.testing.assert_allclose((px * py).mean(0), rho, atol=1e-8)
    np.testing.assert_allclose((px * px).mean(0), 1.0, atol=1e-8)
    assert r == 6


def test_centres_with_train_means():
    p = _paired()
    m = create_method("cvh", bits=8).fit(p)
    np.testing.assert_allclose(m.mean_image, p.image.mean(0), rtol=1e-5)
    # each informative bit is balanced on the training set (centred projections), none constant
    codes = m.encode_image(p.image)[:, :6].astype(int)
    assert np.all(np.abs(codes.mean(0)) < 0.5)
    # encoding a batch of one gives the same bits as inside a batch (train means, not batch means)
    np.testing.assert_array_equal(m.encode_text(p.text[:1]), m.encode_text(p.text)[:1])


def test_more_bits_than_informative_dims_warns_and_extends():
    p = _paired(dy=6)
    with pytest.warns(UninformativeBitsWarning, match="only 6 of the 16 bits are informative"):
        m = create_method("cvh", bits=16, seed=0).fit(p)
    assert m.n_informative == 6
    ci, ct = m.encode_image(p.image).astype(int), m.encode_text(p.text).astype(int)
    # no constant bits, and the extra bits agree across views far more often than chance
    assert np.all(np.abs(ci.mean(0)) < 0.95)
    agree = (ci[:, 6:] == ct[:, 6:]).mean()
    assert agree > 0.7
    # the extra hyperplanes depend on the seed, the informative bits do not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBitsWarning)
        m2 = create_method("cvh", bits=16, seed=1).fit(p)
    c2 = m2.encode_image(p.image)
    np.testing.assert_array_equal(c2[:, :6], ci[:, :6])
    assert not np.array_equal(c2[:, 6:], ci[:, 6:])


def test_rank_deficient_text_counts_informative_dims():
    # text rows sum to one (like Wikipedia's LDA proportions): centred covariance has rank d - 1
    p = _paired(dy=6)
    t = np.abs(p.text) / np.abs(p.text).sum(1, keepdims=True)
    with pytest.warns(UninformativeBitsWarning, match="only 5 of the 8 bits"):
        create_method("cvh", bits=8).fit(Pairs(p.image, t.astype(np.float32), p.labels))
