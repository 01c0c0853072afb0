"""DCMH (Jiang & Li, CVPR 2017) in feature mode: shapes, learning, determinism, loss details."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _retrieval import random_codes_map, task_maps

from cmh.errors import CMHError
from cmh.methods.dcmh import DCMH
from cmh.registry import create_method, get_method_class

SMALL = {"txt_hidden": 512, "verbose": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registered_with_paper_defaults():
    cls = get_method_class("dcmh")
    assert cls is DCMH and cls.kind == "deep"
    cfg = cls.Config()
    assert (cfg.gamma, cfg.eta, cfg.batch_size, cfg.txt_hidden) == (1.0, 1.0, 128, 8192)
    assert cfg.optimizer == "sgd" and cfg.lr == pytest.approx(10**-1.5)


def test_lr_decays_linearly_to_1e_6():
    m = create_method("dcmh", bits=16, epochs=5)
    assert m._lr_factor(0) == 1.0
    assert m._lr_factor(4) * m.cfg.lr == pytest.approx(1e-6)
    assert m._lr_factor(1) > m._lr_factor(2) > m._lr_factor(3)


def test_learns_and_codes_are_valid(synthetic_small):
    m = create_method("dcmh", bits=32, seed=0, epochs=120, batch_size=32, **SMALL).fit(
        synthetic_small.part("train")
    )
    q = synthetic_small.part("query")
    bi = m.encode_image(q.image)
    assert bi.shape == (len(q), 32) and bi.dtype == np.int8 and set(np.unique(bi)) <= {-1, 1}
    base = random_codes_map(synthetic_small, 32)
    i2t, t2i = task_maps(m, synthetic_small)
    assert i2t > base + 0.05 and t2i > base + 0.05, (i2t, t2i, base)


def test_deterministic(synthetic_small):
    q = synthetic_small.part("query")
    runs = [
        create_method("dcmh", bits=16, seed=3, epochs=1, **SMALL)
        .fit(synthetic_small.part("train"))
        .encode_image(q.image)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*runs)


def test_loss_is_finite_for_huge_outputs(synthetic_small):
    m = create_method("dcmh", bits=16, epochs=1, **SMALL).fit(synthetic_small.part("train"))
    from cmh.methods._train import TrainData

    n = 50
    data = TrainData(torch.zeros(n, 2), torch.zeros(n, 2), torch.eye(5)[torch.arange(n) % 5])
    m.buffers = {"F": torch.full((n, 16), 1e4), "G": torch.full((n, 16), -1e4), "B": torch.ones(n, 16)}
    idx = torch.arange(10)
    loss = m._batch_loss(torch.full((10, 16), 1e4), idx, m.buffers["F"], m.buffers["G"], data)
    assert torch.isfinite(loss)


def test_dim_mismatch(synthetic_small):
    m = create_method("dcmh", bits=16, epochs=1, **SMALL).fit(synthetic_small.part("train"))
    with pytest.raises(CMHError, match="fitted on"):
        m.encode_text(np.zeros((2, 3), dtype=np.float32))
