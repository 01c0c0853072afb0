"""The dataset type's validation, splits and the synthetic default."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cmh.data import CrossModalDataset, Split, fixed_split, make_synthetic, one_hot, random_split
from cmh.errors import DataError


def _arrays(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.random((n, 5)).astype(np.float32),
        rng.random((n, 4)).astype(np.float32),
        one_hot(rng.integers(0, 3, n), 3),
    )


def _make(image, text, labels, split=None):
    split = split or random_split(len(labels), 5, 10, seed=0)
    return CrossModalDataset("toy", image, text, labels, split)


def test_valid_dataset_and_parts():
    image, text, labels = _arrays()
    ds = _make(image, sp.csr_matrix(text), labels)
    q = ds.part("query")
    assert q.image.shape == (5, 5) and q.text.shape == (5, 4) and q.labels.shape == (5, 3)
    assert ds.describe()["text_sparse"] is True
    assert len(ds.content_hash()) == 16


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda i, t, lab: (i[:-1], t, lab), "image features have 19 rows but labels have 20"),
        (lambda i, t, lab: (i, t[:, 0], lab), "text features must be 2-d"),
        (lambda i, t, lab: (np.where(np.arange(5) == 2, np.nan, i), t, lab), "contain 20 NaN/inf"),
        (lambda i, t, lab: (i, np.where(t > 0.99, np.inf, t), lab), "NaN/inf"),
        (lambda i, t, lab: (i, t, np.vstack([lab[:-1], np.zeros((1, 3), np.uint8)])), "1 rows have no label"),
        (lambda i, t, lab: (i, t, lab * 2), "multi-hot 0/1"),
        (lambda i, t, lab: (i, t, lab.argmax(1)), "2-d \\(n, classes\\)"),
    ],
)
def test_validation_errors(mutate, message):
    with pytest.raises(DataError, match=message):
        _make(*mutate(*_arrays()))


def test_overlapping_split_is_rejected():
    image, text, labels = _arrays()
    split = Split(train=np.arange(10), query=np.arange(5), database=np.arange(3, 20))
    with pytest.raises(DataError, match="overlap"):
        _make(image, text, labels, split)


def test_random_split_protocol():
    a, b = random_split(100, 10, 50, seed=1), random_split(100, 10, 50, seed=1)
    assert all(np.array_equal(getattr(a, p), getattr(b, p)) for p in ("train", "query", "database"))
    assert np.intersect1d(a.query, a.database).size == 0
    assert len(a.database) == 90 and np.isin(a.train, a.database).all()
    assert not np.array_equal(a.query, random_split(100, 10, 50, seed=2).query)
    with pytest.raises(DataError, match="exceeds"):
        random_split(100, 10, 95)


def test_fixed_split_is_wikipedia_style():
    s = fixed_split(np.arange(10, 30), np.arange(10))
    assert np.array_equal(s.train, s.database)


def test_synthetic_is_deterministic_and_nontrivial():
    a, b = make_synthetic(n=800, n_query=100, n_train=400), make_synthetic(n=800, n_query=100, n_train=400)
    assert a.content_hash() == b.content_hash()
    assert make_synthetic(n=800, n_query=100, n_train=400, seed=1).content_hash() != a.content_hash()
    assert a.labels.sum(1).min() >= 1 and 1.2 < a.labels.sum(1).mean() < 3
    assert (a.text.sum(1) >= 1).all()
    # the two views are related only through the latent semantics: same-label pairs are closer in both
    same = (a.labels @ a.labels.T) > 0
    img = a.image / np.linalg.norm(a.image, axis=1, keepdims=True)
    txt = a.text / np.linalg.norm(a.text, axis=1, keepdims=True)
    for sim in (img @ img.T, txt @ txt.T):
        assert sim[same].mean() > 1.08 * sim[~same].mean()
