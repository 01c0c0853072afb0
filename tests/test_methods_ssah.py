"""SSAH (Li et al., CVPR 2018) in feature mode: shapes, learning, determinism, variants, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _retrieval import random_codes_map, task_maps

from cmh.errors import CMHError
from cmh.methods._nets import MultiScaleText, clamp_widths
from cmh.methods.ssah import SSAH, pairwise_nll, pairwise_squared
from cmh.registry import create_method, get_method_class

#: Small networks so that unit tests stay fast; the algorithm is unchanged.
SMALL = {"lab_hidden": 256, "txt_hidden": 256, "feature_dim": 128, "disc_hidden": (64, 32), "verbose": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fit_small(data, bits: int = 16, **cfg) -> SSAH:
    m = create_method("ssah", bits=bits, seed=0, **{**SMALL, **cfg})
    return m.fit(data.part("train"))


@pytest.fixture(scope="module")
def fitted(synthetic_small) -> SSAH:
    """One small SSAH trained for one epoch, shared by the read-only tests below."""
    return fit_small(synthetic_small, epochs=1)


def test_registered_as_deep_supervised():
    cls = get_method_class("ssah")
    assert cls is SSAH and cls.kind == "deep" and cls.supervised
    cfg = cls.Config()
    assert cfg.variant == "paper" and cfg.batch_size == 128


def test_paper_hyperparameters_resolved():
    m = create_method("ssah", bits=16)
    d = m.config_dict()
    assert (d["alpha"], d["gamma"], d["eta"], d["beta"]) == (1.0, 1.0, 1e-4, 1e-4)
    assert d["pool_widths"] == [1, 2, 3, 5, 10]
    off = create_method("ssah", bits=16, variant="official").config_dict()
    assert off["pool_widths"] == [50, 30, 15, 10, 5]
    assert (off["eta"], off["beta"]) == (1.0, 1.0)
    assert off["lr_lab"] == pytest.approx(1e-2)


def test_codes_shape_and_values(synthetic_small, fitted):
    m = fitted
    q = synthetic_small.part("query")
    bi, bt = m.encode_image(q.image), m.encode_text(q.text)
    for b in (bi, bt):
        assert b.shape == (len(q), 16) and b.dtype == np.int8
        assert set(np.unique(b)) <= {-1, 1}


def test_learns_better_than_random_codes(synthetic_small):
    # small nets and batches so that a few epochs give enough steps (CI budget)
    m = fit_small(synthetic_small, bits=32, epochs=6, batch_size=32, lr_lab=1e-3)
    i2t, t2i = task_maps(m, synthetic_small)
    base = random_codes_map(synthetic_small, 32)
    assert i2t > base + 0.1 and t2i > base + 0.1, (i2t, t2i, base)


def test_same_seed_same_codes(synthetic_small):
    q = synthetic_small.part("query")
    a = fit_small(synthetic_small, epochs=1).encode_text(q.text)
    b = fit_small(synthetic_small, epochs=1).encode_text(q.text)
    np.testing.assert_array_equal(a, b)
    c = create_method("ssah", bits=16, seed=1, **SMALL, epochs=1).fit(synthetic_small.part("train"))
    assert not np.array_equal(a, c.encode_text(q.text))


def test_official_variant_runs(synthetic_small):
    m = fit_small(synthetic_small, epochs=2, variant="official")
    q = synthetic_small.part("query")
    assert m.encode_image(q.image).shape == (len(q), 16)
    assert len(m.history) == 2 and "img_adv" not in m.history[0]  # no adversarial gradient to ImgNet
    # the learning rate is divided by sqrt(10) each epoch
    assert m._lr_factor(1) == pytest.approx(10**-0.5)


def test_paper_variant_logs_adversarial_term(fitted):
    m = fitted
    assert {"lab", "img", "txt", "disc", "img_adv", "txt_adv"} <= set(m.history[0])


def test_dim_mismatch_and_missing_labels(synthetic_small, fitted):
    m = fitted
    q = synthetic_small.part("query")
    with pytest.raises(CMHError, match="image features have shape"):
        m.encode_image(q.image[:, :10])
    with pytest.raises(CMHError, match="text features"):
        m.encode_text(np.zeros((3, 7), dtype=np.float32))
    unlabelled = dataclasses.replace(synthetic_small.part("train"), labels=None)
    with pytest.raises(CMHError, match="needs labels"):
        create_method("ssah", bits=16, **SMALL).fit(unlabelled)


def test_encode_before_fit_is_an_error():
    with pytest.raises(CMHError, match="fit"):
        create_method("ssah", bits=16).encode_image(np.zeros((2, 4), dtype=np.float32))


# -- the multi-scale text fusion (MS, §3.3): average pooling at several widths + a 1x1 conv -------------


def hand_scale(row: list[float], width: int) -> list[float]:
    """One MS scale by hand: average pooling with window = stride = ``width`` (a last partial window averages
    the words it covers), then linear up-sampling back to ``len(row)`` positions (half-pixel centres, the
    edges held constant)."""
    d = len(row)
    pooled = [sum(row[s : s + width]) / len(row[s : s + width]) for s in range(0, d, width)]
    m, out = len(pooled), []
    for i in range(d):
        src = max((i + 0.5) * m / d - 0.5, 0.0)
        lo = int(src)
        hi, frac = min(lo + 1, m - 1), src - lo
        out.append((1 - frac) * pooled[lo] + frac * pooled[hi])
    return out


def hand_maps(x: torch.Tensor, widths) -> list[list[list[float]]]:
    """Per row: the input followed by one map per width."""
    return [[list(map(float, row)), *(hand_scale(list(map(float, row)), w) for w in widths)] for row in x]


@pytest.mark.parametrize("d", [10, 11, 23])
def test_multiscale_each_scale_is_average_pooling_then_upsampling(d):
    """Select one input channel of the 1x1 fusion at a time: the output is that scale's map."""
    widths = (1, 2, 3, 5, 10)
    ms = MultiScaleText(d, widths)
    x = torch.rand(3, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    ms = ms.double()
    want = hand_maps(x, widths)
    assert ms.fuse.in_channels == 1 + len(widths) and ms.fuse.kernel_size == (1,)
    for c in range(1 + len(widths)):
        with torch.no_grad():
            ms.fuse.weight.zero_()
            ms.fuse.weight[0, c, 0] = 1.0
        got = ms(x).detach().numpy()
        np.testing.assert_allclose(got, [rows[c] for rows in want], atol=1e-12, err_msg=f"channel {c}")


def test_multiscale_fusion_starts_as_the_mean_of_the_scales():
    d, widths = 10, (1, 2, 3, 5, 10)
    x = torch.tensor(
        [
            [0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [5.0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0.5, -3, 2, 0, 0, 1, 0, 0, 0, 0],
        ],
        dtype=torch.float64,
    )
    ms = MultiScaleText(d, widths).double()
    mean = [[sum(col) / len(col) for col in zip(*rows, strict=True)] for rows in hand_maps(x, widths)]
    want = np.maximum(np.array(mean), 0)  # the fusion is followed by a ReLU
    np.testing.assert_allclose(ms(x).detach().numpy(), want, atol=1e-12)
    assert (np.array(mean) < 0).any()  # the third row checks the ReLU
    # several output channels: each starts as the same mean; the output is (n, channels * d)
    ms3 = MultiScaleText(d, widths, out_channels=3).double()
    out = ms3(x).detach().numpy()
    assert out.shape == (3, 3 * d) and ms3.out_dim == 3 * d
    np.testing.assert_allclose(out, np.tile(want, 3), atol=1e-12)


def test_multiscale_clamps_widths_longer_than_the_text():
    assert clamp_widths((50, 30, 15, 10, 5), 10) == (10, 10, 10, 10, 5)
    ms = MultiScaleText(10, (50, 30, 15, 10, 5))
    assert ms.widths == (10, 10, 10, 10, 5)
    x = torch.rand(4, 10, dtype=torch.float64)
    with torch.no_grad():
        ms = ms.double()
        ms.fuse.weight.zero_()
        ms.fuse.weight[0, 1, 0] = 1.0  # the first (clamped) scale: one global average
    np.testing.assert_allclose(
        ms(x).detach().numpy(), x.mean(1, keepdim=True).expand(4, 10).numpy(), atol=1e-12
    )


def test_ssah_text_net_uses_the_papers_scales_and_learns_the_fusion(fitted):
    """The paper variant pools at widths 1, 2, 3, 5, 10 (§3.6) and training moves the 1x1 fusion off the mean."""
    ms = fitted.nets["txt"].trunk[0]
    assert isinstance(ms, MultiScaleText) and ms.widths == (1, 2, 3, 5, 10)
    assert ms.out_dim == 100  # synthetic_small's text is 100-d
    assert not torch.allclose(ms.fuse.weight, torch.full_like(ms.fuse.weight, 1 / 6))


def test_pairwise_losses_are_stable_for_large_theta():
    theta = torch.tensor([[-1e4, 0.0, 1e4]])
    s = torch.tensor([[0.0, 1.0, 1.0]])
    v = pairwise_nll(theta, s)
    assert torch.isfinite(v) and v.item() == pytest.approx(np.log(2), rel=1e-5)
    assert torch.isfinite(pairwise_squared(theta, s))


def test_sparse_text_is_accepted(synthetic_small, fitted):
    import scipy.sparse as sp

    m = fitted
    q = synthetic_small.part("query")
    np.testing.assert_array_equal(m.encode_text(sp.csr_matrix(q.text)), m.encode_text(q.text))
