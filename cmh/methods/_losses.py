"""Loss pieces shared by several deep methods (one place, not one copy per method).

- :func:`pairwise_nll` — the pairwise negative log-likelihood of a similarity matrix under ``σ(θ)``
  (DCMH, SSAH, HashGAN), usually a batch of outputs against a bank of the other modality's outputs.
- :func:`cosine_matrix` and :func:`joint_semantics` — DJSRH's joint-semantics affinity (also DSAH's).
- :func:`code_alignment` — squared error between a target affinity and code cosine similarities.
- :func:`triplet_loss` — cross-modal triplet loss with batch **semi-hard** or batch **hard** mining.
- :func:`lsgan_discriminator_loss` / :func:`lsgan_generator_loss` — least-squares adversarial terms on a
  discriminator's logits (SSAH's Eq. 5 form; SAALDH's modality discriminator).

Every function is vectorised over the batch; shapes are given in each docstring.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Mining = Literal["semi-hard", "hard"]


def pairwise_nll(theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Σ (log(1 + e^θ) - S θ): the negative log-likelihood of ``S`` under ``σ(θ)`` (stable softplus).

    ``theta`` and ``s`` have the same shape, e.g. ``(n, b)`` = bank × batch; returns a scalar (sum)."""
    return (F.softplus(theta) - s * theta).sum()


def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities between the rows of ``a`` (n, d) and ``b`` (m, d) (``b = a`` when omitted)."""
    a = F.normalize(a.float(), dim=1, eps=1e-8)
    b = a if b is None else F.normalize(b.float(), dim=1, eps=1e-8)
    return a @ b.T


def joint_semantics(
    image: torch.Tensor, text: torch.Tensor, beta: float, eta: float, mu: float = 1.0
) -> torch.Tensor:
    """DJSRH's joint-semantics affinity of a batch (Su, Zhong & Zhang, ICCV 2019, §3.2), ``(m, m)``.

    ``S_I``, ``S_T`` are the cosine similarities of the image (m, d_i) and text (m, d_t) features;
    ``S̃ = β S_I + (1 - β) S_T`` fuses them, the second-order term ``S̃ S̃ᵀ / m`` (two items are close when
    their neighbourhoods are) is mixed in with weight ``η``: ``S = (1 - η) S̃ + η S̃ S̃ᵀ / m``; the result is
    scaled by ``μ`` (the paper's quantisation-aware scale of the reconstruction target).
    """
    s = beta * cosine_matrix(image) + (1.0 - beta) * cosine_matrix(text)
    m = s.shape[0]
    s = (1.0 - eta) * s + eta * (s @ s.T) / m
    return mu * s


def code_alignment(target: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between ``target`` (m, m) and the cosine similarities of codes ``a``, ``b`` (m, K)."""
    return (cosine_matrix(a, b) - target).pow(2).mean()


def _hamming_like(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(K - a·b) / 2`` between rows of ``a`` (m, K) and ``b`` (n, K): the Hamming distance for ±1 codes,
    its smooth relaxation for tanh outputs; ``(m, n)``."""
    return 0.5 * (a.shape[1] - a @ b.T)


def triplet_loss(
    anchors: torch.Tensor,
    items: torch.Tensor,
    similar: torch.Tensor,
    margin: float,
    mining: Mining = "semi-hard",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Triplet loss of anchors (m, K) against items (n, K) of the other modality, with batch mining.

    ``similar`` (m, n) is 1 where anchor ``a`` and item ``j`` share a label. Distances are the relaxed
    Hamming distance ``d = (K - a·j) / 2``; ``margin`` is in bits. For every (anchor, positive) pair:

    - ``semi-hard`` (FaceNet, Schroff et al. 2015; SAALDH's batch semi-hard selection): the negative is the
      closest one *farther than the positive*, ``d_ap < d_an``; a pair with no such negative falls back to
      the farthest negative (the standard fallback of the semi-hard rule: the least violating one);
    - ``hard`` (batch-hard, Hermans et al. 2017; the SAALDH authors' code): one triplet per anchor, its
      farthest positive and its closest negative.

    The loss is the mean of ``max(0, d_ap - d_an + margin)`` over the triplets (anchors without a positive
    or a negative are skipped). Also returns ``{"fallback": share of semi-hard triplets that fell back,
    "active": share with a positive loss}``.
    """
    d = _hamming_like(anchors, items)  # (m, n)
    pos = similar > 0
    neg = ~pos
    big = torch.finfo(d.dtype).max / 4
    if mining == "hard":
        has = pos.any(1) & neg.any(1)
        d_ap = torch.where(pos, d, torch.full_like(d, -big)).amax(1)
        d_an = torch.where(neg, d, torch.full_like(d, big)).amin(1)
        losses = F.relu(d_ap - d_an + margin)[has]
        stats = {"fallback": 0.0}
    else:
        # per anchor, its negatives' distances in ascending order (non-negatives pushed to the end)
        sorted_neg, _ = torch.sort(torch.where(neg, d, torch.full_like(d, big)), dim=1)  # (m, n)
        n_neg = neg.sum(1, keepdim=True)  # (m, 1)
        # first negative strictly farther than each candidate positive: d_ap < d_an
        j = torch.searchsorted(sorted_neg.contiguous(), d.contiguous(), right=True)  # (m, n)
        found = j < n_neg
        closest_beyond = sorted_neg.gather(1, j.clamp(max=d.shape[1] - 1))
        farthest = sorted_neg.gather(1, (n_neg - 1).clamp(min=0))  # (m, 1) the last real negative
        chosen = torch.where(found, closest_beyond, farthest.expand_as(closest_beyond))
        pairs = pos & (n_neg > 0)  # (anchor, positive) pairs with at least one negative
        losses = F.relu(d - chosen + margin)[pairs]
        n_pairs = int(pairs.sum())
        stats = {"fallback": float((pairs & ~found).sum()) / max(n_pairs, 1)}
    if losses.numel() == 0:
        return anchors.sum() * 0.0, stats | {"active": 0.0}
    stats["active"] = float((losses > 0).float().mean())
    return losses.mean(), stats


def lsgan_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``½ (mean((σ(real) - 1)²) + mean(σ(fake)²))`` on discriminator logits (any shape)."""
    return 0.5 * ((torch.sigmoid(real) - 1).pow(2).mean() + torch.sigmoid(fake).pow(2).mean())


def lsgan_generator_loss(fake: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    """``mean((σ(fake) - target)²)``: the generator's side (make the discriminator output ``target``)."""
    return (torch.sigmoid(fake) - target).pow(2).mean()
