"""CVH: Cross-View Hashing (Kumar & Udupa, IJCAI 2011).

S. Kumar, R. Udupa. "Learning hash functions for cross-view similarity search." IJCAI 2011, pp. 1360-1365.

CVH learns one linear hash function per view, ``b = sign(Aᵀ(x − μ))``, minimising the weighted Hamming
distance between the codes of similar objects within and across views, relaxed to a spectral problem
(paper Sec. 3-4). When the only similarity information is the pairing itself (``W = I``: each image is
similar to its own text, the setting of every cross-modal benchmark), the relaxed problem for two views is
the generalised eigenvalue problem

    [ Cxx  −Cxy ] a = λ [ Cxx   0  ] a ,      (smallest λ; λ = 1 − ρ)
    [ −Cyx  Cyy ]       [  0   Cyy ]

on the *centred* covariances, i.e. canonical correlation analysis, as the paper itself remarks (Sec. 4).
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
from typing import Any, ClassVar

import numpy as np

from cmh.base import HashMethod, sign_codes
from cmh.baselines._common import (
    as_matrix,
    centred_project,
    check_features,
    column_mean,
    cross_scatter,
    extend_projections,
    informative_rank,
    inv_sqrt_psd,
    ridge,
    scatter,
)
from cmh.registry import register_method

PAPER = (
    "S. Kumar, R. Udupa. Learning hash functions for cross-view similarity search. IJCAI 2011, pp. 1360-1365"
)


def cca(
    x: Any, y: Any, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Regularised CCA of paired views ``x`` (n, dx) and ``y`` (n, dy), dense or sparse.

    Returns ``(wx (dx, k), wy (dy, k), rho (k,), mean_x, mean_y, r)`` with ``k = min(dx, dy)`` directions
    sorted by decreasing canonical correlation ``rho``; ``r`` is how many of them are informative (rank of
    the unregularised centred covariances, and ``rho > 1e-6``). Directions satisfy ``wᵀ(C + κI)w = 1``.
    """
    mx, my = column_mean(x), column_mean(y)
    n = x.shape[0]
    cxx, cyy = scatter(x, mx) / n, scatter(y, my) / n
    cxy = cross_scatter(x, y, mx, my) / n
    kx, ky = inv_sqrt_psd(ridge(cxx, reg)), inv_sqrt_psd(ridge(cyy, reg))
    u, rho, vt = np.linalg.svd(kx @ cxy @ ky, full_matrices=False)
    wx, wy = kx @ u, ky @ vt.T
    # deterministic signs: make the largest-magnitude entry of each image direction positive
    idx = np.argmax(np.abs(wx), axis=0)
    s = np.sign(wx[idx, np.arange(wx.shape[1])])
    s[s == 0] = 1
    r = min(informative_rank(cxx, cyy), int((rho > 1e-6).sum()))
    return wx * s, wy * s, rho, mx, my, r


@register_method("cvh")
class CVH(HashMethod):
    """Cross-View Hashing (Kumar & Udupa, IJCAI 2011), unsupervised; see the module docstring."""

    kind: ClassVar[str] = "shallow"
    supervised: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ("image", "text")
    paper: ClassVar[str] = PAPER

    @dataclasses.dataclass(frozen=True)
    class Config:
        """``reg``: ridge added to each covariance, relative to its mean variance (the paper leaves the
        regulariser to the implementation; 1e-4 only stabilises rank-deficient covariances)."""

        reg: float = 1e-4

    def fit(self, train: Any) -> CVH:
        """Learn the two views' projections from the paired ``train`` rows (labels are ignored)."""
        self.check_train(train)
        check_features(self.name, train.image, "image")
        check_features(self.name, train.text, "text")
        x, y = as_matrix(train.image), as_matrix(train.text)
        wx, wy, rho, mx, my, r = cca(x, y, float(self.cfg.reg))
        dims = f"min(d_img, d_txt) = {min(x.shape[1], y.shape[1])}, rank of the centred covariances = {r}"
        e = extend_projections(self.name, self.bits, r, self.rng(), weights=rho[:r], reason=dims)
        self.n_informative = min(r, self.bits)
        self.rho_ = rho[: self.n_informative]
        self.w_image, self.w_text = wx[:, :r] @ e, wy[:, :r] @ e
        self.mean_image, self.mean_text = mx, my
        self.dims = (x.shape[1], y.shape[1])
        self.fitted = True
        return self

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        self.check_fitted()
        self.check_dim(image, self.dims[0], "image")
        return sign_codes(centred_project(as_matrix(image), self.w_image, self.mean_image))

    def encode_text(self, text: Any) -> np.ndarray:
        self.check_fitted()
        self.check_dim(text, self.dims[1], "text")
        return sign_codes(centred_project(as_matrix(text), self.w_text, self.mean_text))
