"""CMFH: Collective Matrix Factorization Hashing (Ding, Guo, Zhou, CVPR 2014).

G. Ding, Y. Guo, J. Zhou. "Collective matrix factorization hashing for multimodal data." CVPR 2014.

Unsupervised. With the centred views as columns, ``X1`` (d1, n) image and ``X2`` (d2, n) text, CMFH learns
one unified latent representation ``V`` (K, n) of every training pair by collective matrix factorisation and
one linear projection per view for out-of-sample items (paper Sec. 3):

    min  λ‖X1 − U1V‖² + (1 − λ)‖X2 − U2V‖² + μ(‖V − P1X1‖² + ‖V − P2X2‖²)
         + γ(‖U1‖² + ‖U2‖² + ‖P1‖² + ‖P2‖² + ‖V‖²)

solved by alternating closed-form updates, each the exact minimiser over one block:

    U1 = X1Vᵀ (VVᵀ + γ/λ·I)⁻¹,   U2 = X2Vᵀ (VVᵀ + γ/(1−λ)·I)⁻¹,
    P_i = V X_iᵀ (X_iX_iᵀ + γ/μ·I)⁻¹,
    V = (λU1ᵀU1 + (1−λ)U2ᵀU2 + (2μ + γ)I)⁻¹ (λU1ᵀX1 + (1−λ)U2ᵀX2 + μ(P1X1 + P2X2)).

Hash functions: ``b = sign(P_i (x − μ_i))`` with the TRAIN means ``μ_i`` (the paper assumes
zero-centred data). Defaults are the paper's experimental settings ``λ = 0.5``, ``μ = 100``, ``γ = 0.01`` (the same
group's later OCMFH code defaults to ``γ = 0.001``; set ``--set gamma=0.001`` to compare), and a fixed
number of iterations (``iters = 30``; the paper reports convergence within a few tens of iterations), so the
run time does not depend on a tolerance. ``V`` starts from a seeded Gaussian and ``P`` is first computed
from it (equivalent to starting the alternation at the P step; the paper initialises all blocks at random).

Informative bits: the unified space has K free dimensions, but the projections ``P_i`` can only produce
``rank(X_i)`` linearly independent bits; the factorisation still learns all K latent dimensions, so no
extension is needed, and a :class:`~cmh.baselines._common.UninformativeBitsWarning` names the rank when
K exceeds a view's dimension.

Differences from the public MATLAB code: the code uses ``γ`` instead of ``γ/λ`` and ``γ/(1−λ)`` in the U
updates and ``γ`` instead of ``γ/μ`` in the P updates (not the minimisers of the stated objective), its
convergence test compares unsquared norms, and it iterates to a tolerance; cmh follows the paper's
objective. Protocol note: the CMFH paper's high T→I numbers on Wikipedia (~0.5-0.6) come from searching
the database's *unified* codes ``sign(V)`` (both views of each database item), not image-only codes; the
cmh runner encodes the database per view (I→T searches text codes, T→I image codes), so its T→I is much
lower. :meth:`encode_pair` gives the unified codes for users who want the paper's setting.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from cmh.base import HashMethod, sign_codes
from cmh.baselines._common import (
    Centred,
    LinearHashCodes,
    UninformativeBitsWarning,
    centred_project,
    check_features,
    cholesky_factor,
)
from cmh.errors import ConfigError
from cmh.registry import register_method

PAPER = "G. Ding, Y. Guo, J. Zhou. Collective matrix factorization hashing for multimodal data. CVPR 2014"


@register_method("cmfh")
class CMFH(LinearHashCodes, HashMethod):
    """Collective Matrix Factorization Hashing (Ding, Guo, Zhou, CVPR 2014); see the module docstring."""

    kind: ClassVar[str] = "shallow"
    supervised: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ("image", "text")
    paper: ClassVar[str] = PAPER

    @dataclasses.dataclass(frozen=True)
    class Config:
        """Paper defaults (CVPR 2014 experiments): ``lam`` = λ (image vs text weight), ``mu`` = μ (factorisation
        vs projection), ``gamma`` = γ (regularisation); ``iters``: fixed number of alternations."""

        lam: float = 0.5
        mu: float = 100.0
        gamma: float = 0.01
        iters: int = 30
        record_objective: bool = False  # store the objective after every iteration in ``objective_`` (slower)

    def _objective(self, views: list, grams: list, u: list, p: list, vmat: np.ndarray) -> float:
        """The CMFH objective in row form, from the Gram matrices (no n × d residual is formed)."""
        lam, mu, gamma = float(self.cfg.lam), float(self.cfg.mu), float(self.cfg.gamma)
        vv = vmat.T @ vmat
        total = gamma * float(np.trace(vv))
        for w, v, g, ui, pi in zip((lam, 1 - lam), views, grams, u, p, strict=True):
            xv = v.t_dot(vmat)
            recon = np.trace(g) - 2 * np.sum(ui * xv) + np.trace(ui.T @ ui @ vv)  # ‖Xc − V Uᵀ‖²
            proj = np.trace(vv) - 2 * np.sum(pi * xv) + np.trace(pi.T @ g @ pi)  # ‖V − Xc Pᵀ‖²
            total += w * recon + mu * proj + gamma * (np.sum(ui * ui) + np.sum(pi * pi))
        return float(total)

    def fit(self, train: Any) -> CMFH:
        """Learn U1, U2, P1, P2 and the unified training codes from the paired ``train`` rows."""
        lam, mu, gamma, iters = (
            float(self.cfg.lam),
            float(self.cfg.mu),
            float(self.cfg.gamma),
            int(self.cfg.iters),
        )
        if not 0.0 < lam < 1.0 or mu <= 0 or gamma <= 0 or iters < 1:
            raise ConfigError("cmfh needs 0 < lam < 1, mu > 0, gamma > 0 and iters >= 1, e.g. --set lam=0.5")
        self.check_train(train)
        check_features(self.name, train.image, "image")
        check_features(self.name, train.text, "text")
        views = [Centred(train.image), Centred(train.text)]
        n, k = views[0].shape[0], self.bits
        for v, name in zip(views, ("image", "text"), strict=True):
            if v.shape[1] < k:
                warnings.warn(
                    f"{self.name}: the {name} features are {v.shape[1]}-d, so only {v.shape[1]} of the {k} "
                    f"{name} hash projections can be linearly independent; the others are learnt combinations "
                    "of them (the unified latent space still has all bits)",
                    UninformativeBitsWarning,
                    stacklevel=2,
                )
        weights = (lam, 1.0 - lam)
        grams = [v.gram() for v in views]
        # Cholesky factors of X_i X_iᵀ + γ/μ·I, reused by every P update
        chol = [cholesky_factor(g + (gamma / mu) * np.eye(g.shape[0]), self.name) for g in grams]
        vmat = self.rng().standard_normal((n, k))  # Vᵀ (n, K): rows are training pairs
        eye = np.eye(k)
        self.objective_: list[float] = []
        for _ in range(iters):
            xv = [v.t_dot(vmat) for v in views]  # X_i Vᵀ (d_i, K)
            p = [
                scipy.linalg.cho_solve((c, False), a, check_finite=False)
                for c, a in zip(chol, xv, strict=True)
            ]  # P_iᵀ
            vv = vmat.T @ vmat
            u = [a @ np.linalg.inv(vv + (gamma / w) * eye) for a, w in zip(xv, weights, strict=True)]
            lhs = sum(w * ui.T @ ui for w, ui in zip(weights, u, strict=True)) + (2 * mu + gamma) * eye
            rhs = sum(w * v.dot(ui) for w, v, ui in zip(weights, views, u, strict=True))  # (λU1ᵀX1 + ...)ᵀ
            rhs = rhs + mu * sum(v.dot(pi) for v, pi in zip(views, p, strict=True))
            vmat = rhs @ np.linalg.inv(lhs)  # lhs is symmetric
            if self.cfg.record_objective:
                self.objective_.append(self._objective(views, grams, u, p, vmat))
        xv = [v.t_dot(vmat) for v in views]
        self.w_image, self.w_text = (
            scipy.linalg.cho_solve((c, False), a, check_finite=False) for c, a in zip(chol, xv, strict=True)
        )
        self.u_image, self.u_text = (
            a @ np.linalg.inv(vmat.T @ vmat + (gamma / w) * eye) for a, w in zip(xv, weights, strict=True)
        )
        self.mean_image, self.mean_text = views[0].mean, views[1].mean
        self.dims = (views[0].shape[1], views[1].shape[1])
        self.train_codes_ = sign_codes(vmat)
        self.fitted = True
        return self

    def encode_pair(self, image: np.ndarray, text: Any) -> np.ndarray:
        """Unified codes (n, K) of items seen in both views: ``sign(v)`` with ``v`` minimising the CMFH
        objective for the new pair with U and P fixed (the V update above) — the paper's database codes."""
        self.check_fitted()
        self.check_dim(image, self.dims[0], "image")
        self.check_dim(text, self.dims[1], "text")
        lam, mu, gamma = float(self.cfg.lam), float(self.cfg.mu), float(self.cfg.gamma)
        k = self.bits
        lhs = (
            lam * self.u_image.T @ self.u_image
            + (1 - lam) * self.u_text.T @ self.u_text
            + (2 * mu + gamma) * np.eye(k)
        )
        rhs = (
            lam * centred_project(image, self.u_image, self.mean_image)
            + (1 - lam) * centred_project(text, self.u_text, self.mean_text)
            + mu
            * (
                centred_project(image, self.w_image, self.mean_image)
                + centred_project(text, self.w_text, self.mean_text)
            )
        )
        return sign_codes(np.linalg.solve(lhs, rhs.T).T)
