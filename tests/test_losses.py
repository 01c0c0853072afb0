"""Shared loss pieces (cmh/methods/_losses.py) against brute-force definitions."""

from __future__ import annotations

import pytest
import torch

from cmh.methods._losses import _hamming_like, cosine_matrix, joint_semantics, pairwise_nll, triplet_loss


def _data(seed: int = 0, m: int = 12, n: int = 15, k: int = 8):
    g = torch.Generator().manual_seed(seed)
    a = torch.tanh(torch.randn(m, k, generator=g))
    b = torch.tanh(torch.randn(n, k, generator=g))
    s = (torch.rand(m, n, generator=g) < 0.3).float()
    return a, b, s


def _brute(a, b, s, margin, mining):
    d = _hamming_like(a, b)
    losses, fallbacks = [], 0
    for i in range(a.shape[0]):
        pos = [float(d[i, j]) for j in range(b.shape[0]) if s[i, j] > 0]
        neg = [float(d[i, j]) for j in range(b.shape[0]) if s[i, j] == 0]
        if not pos or not neg:
            continue
        if mining == "hard":
            losses.append(max(0.0, max(pos) - min(neg) + margin))
            continue
        for p in pos:
            beyond = [x for x in neg if x > p]
            fallbacks += not beyond
            losses.append(max(0.0, p - (min(beyond) if beyond else max(neg)) + margin))
    return sum(losses) / len(losses), fallbacks / max(len(losses), 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mining", ["semi-hard", "hard"])
def test_triplet_mining_matches_brute_force(seed, mining):
    a, b, s = _data(seed)
    loss, stats = triplet_loss(a, b, s, margin=1.0, mining=mining)
    want, fallback = _brute(a, b, s, 1.0, mining)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    if mining == "semi-hard":
        assert stats["fallback"] == pytest.approx(fallback)


def test_semi_hard_picks_the_closest_negative_beyond_the_positive():
    # one anchor at distance 1 from its positive; negatives at 0.5 (harder), 2 and 3 (semi-hard: 2)
    k = 8
    anchor = torch.ones(1, k)
    items = torch.ones(4, k)
    for row, dist in enumerate((1, 0, 2, 3)):  # flip `dist` bits -> Hamming distance dist
        items[row, :dist] = -1
    similar = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    loss, stats = triplet_loss(anchor, items, similar, margin=1.5, mining="semi-hard")
    assert float(loss) == pytest.approx(1 - 2 + 1.5) and stats["fallback"] == 0
    hard, _ = triplet_loss(anchor, items, similar, margin=1.5, mining="hard")
    assert float(hard) == pytest.approx(1 - 0 + 1.5)
    # no negative beyond the positive: the farthest negative is used
    similar_far = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    loss, stats = triplet_loss(anchor, items, similar_far, margin=1.5, mining="semi-hard")
    assert float(loss) == pytest.approx(3 - 2 + 1.5) and stats["fallback"] == 1.0


def test_triplet_gradient_flows_and_empty_batches_are_zero():
    a, b, s = _data(3)
    a.requires_grad_(True)
    loss, _ = triplet_loss(a, b, s, margin=2.0)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    zero, stats = triplet_loss(a, b, torch.zeros_like(s), margin=2.0)
    assert float(zero) == 0.0 and stats["active"] == 0.0


def test_joint_semantics_formula():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(10, 6, generator=g), torch.rand(10, 4, generator=g)
    s = joint_semantics(x, y, beta=0.6, eta=0.4, mu=1.5)
    fused = 0.6 * cosine_matrix(x) + 0.4 * cosine_matrix(y)
    want = 1.5 * (0.6 * fused + 0.4 * fused @ fused.T / 10)
    torch.testing.assert_close(s, want)
    torch.testing.assert_close(s, s.T)
    assert float(s.diagonal().min()) > 0


def test_pairwise_nll_is_the_negative_log_likelihood():
    theta = torch.tensor([[2.0, -1.0]])
    s = torch.tensor([[1.0, 0.0]])
    want = -(torch.log(torch.sigmoid(theta[0, 0])) + torch.log(1 - torch.sigmoid(theta[0, 1])))
    assert float(pairwise_nll(theta, s)) == pytest.approx(float(want), rel=1e-6)
