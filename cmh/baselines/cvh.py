"""CVH: Cross-View Hashing (Kumar & Udupa, IJCAI 2011).

S. Kumar, R. Udupa. "Learning hash functions for cross-view similarity search." IJCAI 2011.

CVH learns one linear hash function per view, ``b = sign(Aᵀ(x − μ))``, minimising the weighted Hamming
distance between the codes of similar objects within and across views, relaxed to a spectral problem
(paper Sec. 3-4). When the only similarity information is the pairing itself (``W = I``: each image is
similar to its own text, the setting of every cross-modal benchmark), the relaxed problem for two views is
the generalised eigenvalue problem

    [ Cxx  −Cxy ] a = λ [ Cxx   0  ] a ,      (smallest λ; λ = 1 − ρ)
    [ −Cyx  Cyy ]       [  0   Cyy ]

on the *centred* covariances, i.e. canonical correlation analysis (CVH generalises CCA to K views and
arbitrary similarity weights).
We solve it as CCA with ridge-regularised covariances ``C + reg·(tr C/d)·I`` (``reg`` relative to the
mean variance, so it is unit-free): whiten each view with ``(C + κI)^{-1/2}``, take the SVD of the whitened
cross-covariance, and keep the top singular directions (largest canonical correlations ρ). The means
``μx, μy`` are the TRAIN means, stored and reused for every encoded query and database item.

Informative bits: at most ``r = min(rank Cxx, rank Cyy)`` directions carry correlation (on Wikipedia the
10-d LDA text proportions sum to one, so ``r = 9``). When ``bits > r`` the remaining bits are random
hyperplanes in the learnt r-d common subspace, each direction weighted by its canonical correlation, shared
by both views and seeded by ``seed`` (see :mod:`cmh.baselines._common`); a
:class:`~cmh.baselines._common.UninformativeBitsWarning` names ``r``.

Differences from the public MATLAB code: it does not centre the data (the paper's derivation assumes
centred data: without centering the top direction is dominated by the mean, giving a near-constant bit) and
it returns degenerate, sometimes complex, eigenvectors past ``r``; cmh centres with the train means and
applies the documented extension above. Everything else follows the paper.

Reported on Wikipedia (as re-run in the SCM, SePH and CMFH papers, mAP, 16-128 bits): I→T ≈ 0.18-0.20,
T→I ≈ 0.28-0.30 (those papers used the uncentred public code).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np

from cmh.base import HashMethod
from cmh.baselines._common import (
    Centred,
    LinearHashCodes,
    check_features,
    count_informative,
    extend_projections,
    ridge,
    top_singular,
    unwhiten,
    whitened_cross,
)
from cmh.registry import register_method

PAPER = "S. Kumar, R. Udupa. Learning hash functions for cross-view similarity search. IJCAI 2011"


def cca(
    x: Any, y: Any, reg: float, k: int | None = None, method: str = "cvh"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Regularised CCA of paired views ``x`` (n, dx) and ``y`` (n, dy), dense or sparse.

    Returns ``(wx (dx, k), wy (dy, k), rho (k,), mean_x, mean_y, r)``: the top ``k`` (default
    ``min(dx, dy)``) directions by decreasing canonical correlation ``rho`` with ``wᵀ(C + κI)w = 1``, the
    train means, and ``r``, how many of the ``k`` carry correlation (``rho > 1e-3·rho_max``; directions in the
    null space of a centred covariance have ``rho = 0``).
    """
    cx, cy = Centred(x), Centred(y)
    n = x.shape[0]
    cxx, cyy = ridge(cx.gram() / n, reg), ridge(cy.gram() / n, reg)
    cxy = cx.cross(cy) / n
    rx, ry, m = whitened_cross(cxx, cyy, cxy, method)
    u, rho, v = top_singular(m, min(x.shape[1], y.shape[1]) if k is None else k)
    return unwhiten(rx, u), unwhiten(ry, v), rho, cx.mean, cy.mean, count_informative(rho)


@register_method("cvh")
class CVH(LinearHashCodes, HashMethod):
    """Cross-View Hashing (Kumar & Udupa, IJCAI 2011), unsupervised; see the module docstring."""

    kind: ClassVar[str] = "shallow"
    supervised: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ("image", "text")
    paper: ClassVar[str] = PAPER

    @dataclasses.dataclass(frozen=True)
    class Config:
        """``reg``: ridge added to each covariance, relative to its mean variance (the paper leaves the
        regulariser to the implementation; 1e-4 only stabilises rank-deficient covariances).
        ``extra_bits``: bits beyond the informative directions are random hyperplanes in the learnt subspace
        (``random``, cmh's default) or constant (``none``: the ranking of the informative bits alone); see
        :func:`cmh.baselines._common.extend_projections`."""

        reg: float = 1e-4
        extra_bits: Literal["random", "none"] = "random"

    def fit(self, train: Any) -> CVH:
        """Learn the two views' projections from the paired ``train`` rows (labels are ignored)."""
        self.check_train(train)
        check_features(self.name, train.image, "image")
        check_features(self.name, train.text, "text")
        x, y = train.image, train.text
        k = min(self.bits, x.shape[1], y.shape[1])
        wx, wy, rho, mx, my, r = cca(x, y, float(self.cfg.reg), k=k, method=self.name)
        dims = f"min(d_img, d_txt) = {min(x.shape[1], y.shape[1])}, correlated directions = {r}"
        e = extend_projections(
            self.name, self.bits, r, self.rng(), weights=rho[:r], reason=dims, fill=self.cfg.extra_bits
        )
        self.n_informative = min(r, self.bits)
        self.rho_ = rho[: self.n_informative]
        self.w_image, self.w_text = wx[:, :r] @ e, wy[:, :r] @ e
        self.mean_image, self.mean_text = mx, my
        self.dims = (x.shape[1], y.shape[1])
        self.fitted = True
        return self
