"""STMH (Wang, Gao, Wang, He, IJCAI 2015): topics/concepts, m-hot codes, monotone alternation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cmh.baselines._common import UninformativeBitsWarning
from cmh.errors import ConfigError
from cmh.registry import create_method

pytestmark = pytest.mark.filterwarnings("ignore::cmh.baselines._common.UninformativeBitsWarning")


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


def test_held_out_pairs_agree_across_modalities(synthetic_small):
    """On the informative bits, a held-out item's image code agrees with its own text code more often than
    with the text code of another item (the modalities share topics)."""
    m = create_method("stmh", bits=32, seed=0).fit(synthetic_small.part("train"))
    q = synthetic_small.part("query")
    varying = np.setdiff1d(np.arange(32), m.constant_bits_)
    ci, ct = m.encode_image(q.image)[:, varying], m.encode_text(q.text)[:, varying]
    rng = np.random.default_rng(0)
    shuffled = np.array([(ci == ct[rng.permutation(len(q))]).mean() for _ in range(20)])
    # measured: 0.76 matched vs 0.68 ± 0.006 shuffled
    assert (ci == ct).mean() > shuffled.mean() + max(0.03, 5 * shuffled.std()), ((ci == ct).mean(), shuffled)


def test_the_seed_fixes_the_codes(synthetic_small):
    """The topics start at seeded random training texts: the same seed gives the same codes, another seed
    other codes."""
    train, q = synthetic_small.part("train"), synthetic_small.part("query")
    a, b, c = (create_method("stmh", bits=16, seed=s).fit(train) for s in (5, 5, 6))
    for enc, x in (("encode_image", q.image), ("encode_text", q.text)):
        np.testing.assert_array_equal(getattr(a, enc)(x), getattr(b, enc)(x))
        assert (getattr(a, enc)(x) != getattr(c, enc)(x)).mean() > 0.1
    np.testing.assert_array_equal(a.train_codes_, b.train_codes_)


def test_sparse_text_gives_the_same_codes(synthetic_small):
    m = create_method("stmh", bits=16).fit(synthetic_small.part("train"))
    text = synthetic_small.part("query").text
    np.testing.assert_array_equal(m.encode_text(sp.csr_matrix(text)), m.encode_text(text))


def constant_bits(m, pairs) -> tuple[set[int], set[int]]:
    """Bits that are the same for every image, and for every text, of ``pairs``."""
    out = []
    for codes in (m.encode_image(pairs.image), m.encode_text(pairs.text)):
        ones = (codes == 1).mean(0)
        out.append(set(np.flatnonzero((ones == 0) | (ones == 1)).tolist()))
    return out[0], out[1]


def test_reported_constant_bits_are_the_constant_ones(synthetic_small):
    """``constant_bits_`` lists exactly the bits that are the same for every training image or every training
    text (the warning's count), and the others vary."""
    train = synthetic_small.part("train")
    with pytest.warns(UninformativeBitsWarning, match=r"only \d+ of the 32 bits"):
        m = create_method("stmh", bits=32, seed=0).fit(train)
    image, text = constant_bits(m, train)
    assert m.constant_bits_.tolist() == sorted(image | text)
    assert m.n_informative == 32 - len(image | text) >= 16


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
    from cmh.data import Pairs

    with pytest.warns(UninformativeBitsWarning, match=r"only \d+ of the 32 bits are informative"):
        m = create_method("stmh", bits=32).fit(Pairs(x, z, None))
    assert 0 < m.n_informative < 32 and len(m.constant_bits_) == 32 - m.n_informative
    image, text = constant_bits(m, Pairs(x, z, None))
    assert m.constant_bits_.tolist() == sorted(image | text)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_a_bit_constant_in_one_modality_is_reported(modality, synthetic_small, monkeypatch):
    """Force bit 3 to +1 for every item of one modality: fit must list it and warn."""
    from cmh.baselines.stmh import STMH

    encode = getattr(STMH, f"encode_{modality}")

    def forced(self, x):
        codes = encode(self, x).copy()
        codes[:, 3] = 1
        return codes

    monkeypatch.setattr(STMH, f"encode_{modality}", forced)
    train = synthetic_small.part("train")
    with pytest.warns(UninformativeBitsWarning):
        m = create_method("stmh", bits=32, seed=0).fit(train)
    assert 3 in m.constant_bits_.tolist()
    image, text = constant_bits(m, train)
    assert 3 in (image if modality == "image" else text)
    assert 3 not in (text if modality == "image" else image)  # the other modality alone would not show it
