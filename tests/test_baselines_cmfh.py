"""CMFH (Ding, Guo, Zhou, CVPR 2014): alternating closed-form updates, unified codes, config checks."""

from __future__ import annotations

import numpy as np
import pytest

from cmh.baselines._common import UninformativeBitsWarning
from cmh.data import Pairs
from cmh.errors import ConfigError
from cmh.registry import create_method


def test_objective_never_increases(synthetic_small):
    # every update is the exact minimiser of its block, so the objective (Eq. 5) is non-increasing
    m = create_method("cmfh", bits=16, iters=15, record_objective=True).fit(synthetic_small.part("train"))
    obj = np.asarray(m.objective_)
    assert len(obj) == 15
    assert np.all(np.diff(obj) <= 1e-6 * obj[:-1]), obj
    assert obj[-1] < 0.5 * obj[0]


def test_paper_defaults():
    cfg = create_method("cmfh", bits=16).cfg
    assert (cfg.lam, cfg.mu, cfg.gamma) == (0.5, 100.0, 0.01)


def test_bad_config_is_a_clear_error(synthetic_small):
    with pytest.raises(ConfigError, match="0 < lam < 1"):
        create_method("cmfh", bits=16, lam=1.0).fit(synthetic_small.part("train"))


def test_unified_codes_agree_with_both_views(synthetic_small):
    train = synthetic_small.part("train")
    m = create_method("cmfh", bits=32).fit(train)
    db = synthetic_small.part("database")
    pair = m.encode_pair(db.image, db.text)
    assert pair.shape == (len(db), 32) and pair.dtype == np.int8
    # the unified code is close to each single-view code (all approximate the same latent V)
    assert (pair == m.encode_image(db.image)).mean() > 0.6
    assert (pair == m.encode_text(db.text)).mean() > 0.6
    assert m.train_codes_.shape == (len(train), 32)


def test_low_dimensional_view_warns():
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 30)), rng.random((200, 5))
    with pytest.warns(UninformativeBitsWarning, match="text features are 5-d"):
        m = create_method("cmfh", bits=16).fit(Pairs(x, y, None))
    assert np.all(np.abs(m.encode_text(y).astype(int).mean(0)) < 1)
