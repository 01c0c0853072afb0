"""SCM: Semantic Correlation Maximization (Zhang & Li, AAAI 2014), variants ``scm-orth`` and ``scm-seq``.

D. Zhang, W.-J. Li. "Large-scale supervised multimodal hashing with semantic correlation maximization."
AAAI 2014.

Semantic similarity (paper Sec. 3): with ``L̂`` the label matrix (n, c)
with L2-normalised rows, ``S̃ = 2·L̂L̂ᵀ − 11ᵀ`` (cosine label similarity rescaled to [−1, 1]). SCM wants
``sign(XWx)·sign(YWy)ᵀ ≈ c·S̃`` with ``c = K`` (the code length, the range of a code inner product) and
relaxes it to maximising ``tr(Wxᵀ Xᵀ S̃ Y Wy)`` under ``WxᵀXᵀXWx = WyᵀYᵀYWy = I``. The n × n matrix is never
formed: ``Xᵀ S̃ Y = 2 (XᵀL̂)(YᵀL̂)ᵀ − (Xᵀ1)(Yᵀ1)ᵀ`` costs O(n·d·c). ``X`` and ``Y`` are centred with the
TRAIN means (the paper assumes zero-mean data), and every query and database item is centred with the same
stored means.

- ``scm-orth`` (the orthogonal-projection variant): all K directions at once, the top generalised eigenvectors of
  ``[0, XᵀS̃Y; YᵀS̃X, 0] w = λ [XᵀX + κI, 0; 0, YᵀY + κI] w``, i.e. the top singular pairs of the whitened
  cross matrix (Cholesky whitening, :func:`cmh.baselines._common.whitened_cross`).
- ``scm-seq`` (the sequential variant): bit by bit, the top singular pair of the *residual*
  ``C_t = Xᵀ R_t Y``, ``R_1 = K·S̃``, ``R_{t+1} = R_t − sign(X wx_t) sign(Y wy_t)ᵀ``, so each bit explains
  semantics the previous bits missed. Computed as rank-one updates of the whitened cross matrix; each bit's
  top singular pair by Lanczos on the updated Gram matrix of the smaller side (ARPACK, fixed start
  vector, so deterministic).

``κ = reg · (mean variance)`` (a relative ridge; the paper needs a small one for invertibility, the public
code adds an absolute 1e-6).

Informative bits: ``XᵀS̃Y`` has rank at most ``min(d_img, d_txt, c − 1)`` for one-hot labels (``c`` for
multi-labels), e.g. 9 on Wikipedia (10-d text, 10 classes), 24 on MIRFLICKR. ``scm-orth`` keeps those
directions and fills the remaining bits with seeded random hyperplanes in the learnt common subspace (weighted
by the singular values; :func:`cmh.baselines._common.extend_projections`), warning with
:class:`~cmh.baselines._common.UninformativeBitsWarning`. ``scm-seq`` needs no such extension while the
residual still correlates the views: its residual updates (the paper's own answer) keep producing new,
data-driven hyperplanes; it warns only when K exceeds the rank of a modality (then its extra bits are new
hyperplanes within the same span), and if the residual's correlation vanishes (top singular value below
1e-3 of the first bit's) the remaining bits are extended as in ``scm-orth``.

Differences from the public MATLAB code: the database is centred like the training data (the released
script centres train/query but encodes the uncentred database — a known bug), the ridge is relative, and the
code's fallback "stop and use CCA directions when the eigenvalue increases" is not reproduced (it is not in
the paper). Reported on Wikipedia (SCM paper, mAP, 16-128 bits; approximate): SCM-orth I→T ≈ 0.16-0.23,
T→I ≈ 0.16-0.24 (degrading with K); SCM-seq I→T ≈ 0.24-0.26, T→I ≈ 0.27-0.30 — see ``docs/baselines.md``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from scipy.linalg.blas import dsymv, dsyr2

from cmh.base import HashMethod, sign_codes
from cmh.baselines._common import (
    Centred,
    LinearHashCodes,
    UninformativeBitsWarning,
    check_features,
    check_labels,
    count_informative,
    extend_projections,
    informative_rank,
    ridge,
    row_normalise,
    top_singular,
    unwhiten,
    whitened_cross,
)
from cmh.registry import register_method

PAPER = (
    "D. Zhang, W.-J. Li. Large-scale supervised multimodal hashing with semantic correlation maximization. "
    "AAAI 2014"
)


def semantic_cross(cx: Centred, cy: Centred, labels: np.ndarray) -> np.ndarray:
    """``Xcᵀ S̃ Yc`` (dx, dy) with ``S̃ = 2 L̂L̂ᵀ − 11ᵀ``, computed as ``2(XcᵀL̂)(YcᵀL̂)ᵀ − (Xcᵀ1)(Ycᵀ1)ᵀ``."""
    lhat = row_normalise(labels)
    ones = np.ones((lhat.shape[0], 1))
    return 2.0 * cx.t_dot(lhat) @ cy.t_dot(lhat).T - cx.t_dot(ones) @ cy.t_dot(ones).T


class _ResidualTop1:
    """Top singular triplet of ``M = M0 − A Bᵀ`` (p, q) under rank-one updates ``M ← M − a bᵀ``.

    ``M`` is kept implicit (``M0`` plus the stacked updates, never rewritten) and the Gram matrix of the
    smaller side (``MᵀM`` or ``MMᵀ``) is updated exactly in O(p·q) per update; its top eigenvector comes
    from Lanczos (ARPACK, fixed start vector: deterministic) — much cheaper than an SVD of ``M`` per bit
    at 4,096 × 1,386.
    """

    def __init__(self, m: np.ndarray) -> None:
        self.m0 = m
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.right = m.shape[1] <= m.shape[0]  # Gram over columns (q × q) when q is the smaller side
        g = m.T @ m if self.right else m @ m.T
        # only the upper triangle is kept current: symmetric BLAS (dsyr2 rank-2 updates in place, dsymv
        # products) touches half the matrix and needs no temporaries; at 1,386 × 1,386 this takes ~1.5 s
        # off a 64-bit fit compared with full-matrix outer-product updates and re-symmetrising every bit
        self._upper = np.asfortranarray((g + g.T) / 2, dtype=np.float64)

    @property
    def g(self) -> np.ndarray:
        """The current Gram matrix (full, symmetric; formed on demand; for tests)."""
        upper = np.triu(self._upper)
        return upper + np.triu(upper, 1).T

    @property
    def m(self) -> np.ndarray:
        """The current residual matrix (formed on demand; for tests)."""
        if not self.a:
            return self.m0.copy()
        return self.m0 - np.stack(self.a, axis=1) @ np.stack(self.b, axis=1).T

    def _mv(self, v: np.ndarray) -> np.ndarray:  # M v
        out = self.m0 @ v
        if self.a:
            out -= np.stack(self.a, axis=1) @ (np.stack(self.b, axis=1).T @ v)
        return out

    def _mtv(self, u: np.ndarray) -> np.ndarray:  # Mᵀ u
        out = self.m0.T @ u
        if self.a:
            out -= np.stack(self.b, axis=1) @ (np.stack(self.a, axis=1).T @ u)
        return out

    def top(self) -> tuple[np.ndarray, float, np.ndarray]:
        g = self._upper
        s = g.shape[0]
        if s <= 64:
            vals, vecs = np.linalg.eigh(g, UPLO="U")
            lam, vec = float(vals[-1]), vecs[:, -1]
        else:
            op = scipy.sparse.linalg.LinearOperator(
                (s, s), matvec=lambda v: dsymv(1.0, g, np.ravel(v), lower=0), dtype=np.float64
            )
            vals, vecs = scipy.sparse.linalg.eigsh(op, k=1, which="LA", v0=np.ones(s) / np.sqrt(s))
            lam, vec = float(vals[0]), vecs[:, 0]
        sigma = float(np.sqrt(max(lam, 0.0)))
        other = (self._mv(vec) if self.right else self._mtv(vec)) / max(sigma, 1e-300)
        u, v = (other, vec) if self.right else (vec, other)
        i = int(np.argmax(np.abs(u)))
        if u[i] < 0:
            u, v = -u, -v
        return u, sigma, v

    def subtract(self, a: np.ndarray, b: np.ndarray) -> None:
        """``M ← M − a bᵀ`` for vectors ``a`` (p,), ``b`` (q,), updating the Gram matrix exactly."""
        # (M − a bᵀ)ᵀ(M − a bᵀ) = MᵀM − c bᵀ − b cᵀ + (a·a) b bᵀ = MᵀM − d bᵀ − b dᵀ, d = c − ½(a·a) b
        x, c = (b, self._mtv(a)) if self.right else (a, self._mv(b))
        d = c - 0.5 * float((a @ a) if self.right else (b @ b)) * x
        self._upper = dsyr2(-1.0, d, x, a=self._upper, lower=0, overwrite_a=1)
        self.a.append(a)
        self.b.append(b)


class _SCM(LinearHashCodes, HashMethod):
    kind: ClassVar[str] = "shallow"
    supervised: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ("image", "text", "labels")
    paper: ClassVar[str] = PAPER

    @dataclasses.dataclass(frozen=True)
    class Config:
        """``reg``: ridge added to ``XᵀX`` and ``YᵀY``, relative to the mean variance (the paper uses a small
        regulariser only for invertibility).
        ``extra_bits``: bits beyond the informative directions are random hyperplanes in the learnt subspace
        (``random``, cmh's default) or constant (``none``: the ranking of the informative bits alone); see
        :func:`cmh.baselines._common.extend_projections`."""

        reg: float = 1e-4
        extra_bits: Literal["random", "none"] = "random"

    def _prepare(self, train: Any) -> tuple[Centred, Centred, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.check_train(train)
        check_features(self.name, train.image, "image")
        check_features(self.name, train.text, "text")
        labels = check_labels(self.name, train.labels)
        cx, cy = Centred(train.image), Centred(train.text)
        cxx, cyy = ridge(cx.gram(), float(self.cfg.reg)), ridge(cy.gram(), float(self.cfg.reg))
        c = self.bits * semantic_cross(cx, cy, labels)
        rx, ry, m = whitened_cross(cxx, cyy, c, self.name)
        self.mean_image, self.mean_text = cx.mean, cy.mean
        self.dims = (cx.shape[1], cy.shape[1])
        return cx, cy, rx, ry, m, labels


@register_method("scm-orth")
class SCMOrth(_SCM):
    """SCM with orthogonal projections (Zhang & Li, AAAI 2014, SCM-Orth); see the module
    docstring for the formulation, the informative-bits extension and the differences from the public code."""

    def fit(self, train: Any) -> SCMOrth:
        cx, cy, rx, ry, m, labels = self._prepare(train)
        u, sigma, v = top_singular(m, min(self.bits, *m.shape))
        r = count_informative(sigma)
        reason = f"rank of XᵀS̃Y ≤ min(d_img, d_txt, classes) = {min(*m.shape, labels.shape[1])}; found {r}"
        e = extend_projections(
            self.name,
            self.bits,
            r,
            self.rng(),
            weights=sigma[:r] / sigma[0],
            reason=reason,
            fill=self.cfg.extra_bits,
        )
        self.n_informative = min(r, self.bits)
        self.w_image = unwhiten(rx, u[:, :r]) @ e
        self.w_text = unwhiten(ry, v[:, :r]) @ e
        self.fitted = True
        return self


@register_method("scm-seq")
class SCMSeq(_SCM):
    """SCM learnt bit by bit on the residual semantics (Zhang & Li, AAAI 2014, SCM-Seq); see the module
    docstring for the formulation and the informative-bits policy."""

    def fit(self, train: Any) -> SCMSeq:
        cx, cy, rx, ry, m, labels = self._prepare(train)
        self._warn_rank(cx, cy)
        residual = _ResidualTop1(m)
        wx, wy, sig = [], [], []
        for _ in range(self.bits):  # one closed-form generalised eigenproblem per bit
            u, sigma, v = residual.top()
            if sig and sigma < 1e-3 * sig[0]:
                break  # the residual no longer correlates the views
            sig.append(sigma)
            wx.append(unwhiten(rx, u[:, None]))
            wy.append(unwhiten(ry, v[:, None]))
            bx = sign_codes(cx.dot(wx[-1])).astype(np.float64)
            by = sign_codes(cy.dot(wy[-1])).astype(np.float64)
            # C_{t+1} = C_t − (Xᵀbx)(Yᵀby)ᵀ, in whitened coordinates
            a = scipy.linalg.solve_triangular(rx, cx.t_dot(bx), trans="T", lower=False, check_finite=False)
            b = scipy.linalg.solve_triangular(ry, cy.t_dot(by), trans="T", lower=False, check_finite=False)
            residual.subtract(a[:, 0], b[:, 0])
        w_x, w_y = np.hstack(wx), np.hstack(wy)
        self.n_informative = len(sig)
        if len(sig) < self.bits:
            e = extend_projections(
                self.name,
                self.bits,
                len(sig),
                self.rng(),
                weights=np.asarray(sig) / sig[0],
                reason="the residual semantics stopped correlating the two views",
                fill=self.cfg.extra_bits,
            )
            w_x, w_y = w_x @ e, w_y @ e
        self.w_image, self.w_text = w_x, w_y
        self.fitted = True
        return self

    def _warn_rank(self, cx: Centred, cy: Centred) -> None:
        """Warn when K exceeds a modality's rank (computed exactly only when that rank could be < 4K)."""
        n = cx.shape[0]
        bound = min(cx.shape[1], cy.shape[1], n - 1)
        if bound > 4 * self.bits:
            return
        small = cx if cx.shape[1] <= cy.shape[1] else cy
        r = min(informative_rank(small.gram()), bound)
        if r < self.bits:
            warnings.warn(
                f"{self.name}: only {r} of the {self.bits} bits can be linearly independent projections "
                f"(a modality has rank {r}); the other {self.bits - r} bits are further hyperplanes in the "
                "same span, learnt from the residual semantics (SCM-seq's sequential updates)",
                UninformativeBitsWarning,
                stacklevel=3,
            )
