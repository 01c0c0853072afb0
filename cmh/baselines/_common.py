"""Shared helpers for the shallow baselines (stable API; other baseline modules may import it).

Everything here is vectorised and accepts image/text features either dense (``np.ndarray``) or
scipy-sparse (bag-of-words text). Centering never densifies a sparse matrix: second moments are
computed as ``XᵀX − n·μμᵀ`` and projections as ``X W − μ W``.

Public API (kept stable):

- :class:`UninformativeBitsWarning` — warned when a method can learn fewer informative projections
  than the requested code length.
- :func:`check_features` — one-line :class:`~cmh.errors.CMHError` for empty / all-zero / constant features.
- :func:`check_labels` — one-line error for missing or single-class labels (supervised methods).
- :func:`as_matrix` — float64 dense array or float64 CSR matrix.
- :class:`Centred` — ``X − 1μᵀ`` as an operator (``t_dot``, ``dot``, ``gram``, ``cross``) for dense or
  sparse ``X``; :func:`column_mean`, :func:`scatter`, :func:`cross_scatter`, :func:`centred_project` —
  the same as functions.
- :func:`ridge` — relative ridge ``reg · trace(C)/d · I``.
- :func:`whitened_cross`, :func:`unwhiten`, :func:`top_singular`, :func:`count_informative` — CCA-like
  problems ``max wxᵀCxy wy s.t. wxᵀCxx wx = wyᵀCyy wy = 1`` via Cholesky whitening;
  :func:`cholesky_factor`, :func:`inv_sqrt_psd`, :func:`generalised_eigh` — small symmetric linear algebra.
- :func:`informative_rank` / :func:`extend_projections` — the "more bits than informative
  dimensions" policy (see below).
- :func:`row_normalise` — L2 row normalisation of label matrices.

The informative-bits policy
---------------------------
An eigen-based cross-modal method (CVH, SCM-orth, any CCA-like step) finds at most
``r = min(d_img, d_txt)`` paired projection directions with non-trivial correlation (fewer when the
covariances are rank deficient). The public MATLAB code then returns degenerate, sometimes complex,
directions whose bits are constant or noise. cmh instead keeps the ``r`` informative directions as the
first ``r`` bits and fills the remaining ``bits − r`` with *random hyperplanes inside the learnt
``r``-dimensional common subspace*: bit ``k > r`` is ``sign(z · g_k)`` with ``z`` the (centred) projection
onto the informative directions, weighted per direction, and ``g_k ~ N(0, I_r)`` seeded by the method's
seed and *shared by both modalities*. This is sign-random-projection LSH (Charikar, STOC 2002) in the
learnt common space, so the extra bits approximate the angle between the two modalities' embeddings
there rather than being constant; they carry no new information beyond the ``r`` directions, which the
:class:`UninformativeBitsWarning` states.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from cmh.base import sign_codes
from cmh.errors import CMHError, UninformativeBitsWarning

__all__ = [
    "Centred",
    "UninformativeBitsWarning",
    "as_matrix",
    "centred_project",
    "check_features",
    "check_labels",
    "cholesky_factor",
    "count_informative",
    "column_mean",
    "cross_scatter",
    "extend_projections",
    "generalised_eigh",
    "informative_rank",
    "inv_sqrt_psd",
    "ridge",
    "row_normalise",
    "scatter",
    "top_singular",
    "unwhiten",
    "whitened_cross",
]


# -- inputs ---------------------------------------------------------------------------------------


def as_matrix(x: Any) -> np.ndarray | sp.csr_matrix:
    """``x`` as a float64 dense array (n, d) or a float64 CSR matrix when sparse."""
    if sp.issparse(x):
        return sp.csr_matrix(x, dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def check_features(method: str, x: Any, modality: str) -> None:
    """Raise :class:`CMHError` when ``x`` (n, d) has no rows, is all zero or is the same for every row."""
    if x is None:
        raise CMHError(f"{method} needs {modality} features; the training data has none")
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise CMHError(f"{method}: {modality} features must be (n >= 2, d >= 1), got shape {tuple(x.shape)}")
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        zero = x.nnz == 0 or not np.any(x.data)
        if not zero:
            mean = np.asarray(x.mean(axis=0)).ravel()
            sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
            constant = bool(np.all(sq - mean**2 <= 1e-12 * np.maximum(sq, 1e-300)))
    else:
        zero = not np.any(x)
        constant = not zero and bool(np.all(x == x[:1]))
    if zero:
        raise CMHError(
            f"{method}: the {modality} features are all zero, so they carry no information; "
            f"check how the {modality} features were extracted"
        )
    if constant:
        raise CMHError(
            f"{method}: the {modality} features are identical for every training row, so they carry no "
            f"information; check how the {modality} features were extracted"
        )


def check_labels(method: str, labels: Any) -> np.ndarray:
    """Validate supervision (n, c) multi-hot; raise when missing or when every row has the same labels."""
    if labels is None:
        raise CMHError(f"{method} is supervised and needs labels; the training data has none")
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise CMHError(f"{method}: labels must be (n, classes) multi-hot, got shape {lab.shape}")
    if np.unique(lab, axis=0).shape[0] < 2:
        raise CMHError(
            f"{method} is supervised but every training pair has the same labels; it needs at least two "
            "distinct classes (use an unsupervised method such as cvh or stmh for such data)"
        )
    return lab


def row_normalise(labels: np.ndarray) -> np.ndarray:
    """Rows of ``labels`` (n, c) scaled to unit L2 norm (all-zero rows stay zero), float64."""
    lab = np.asarray(labels, dtype=np.float64)
    norms = np.linalg.norm(lab, axis=1, keepdims=True)
    return lab / np.where(norms > 0, norms, 1.0)


# -- centred data -----------------------------------------------------------------------------------


def column_mean(x: Any) -> np.ndarray:
    """Column means (d,) float64 of dense or sparse ``x`` (n, d)."""
    return np.asarray(x.mean(axis=0, dtype=np.float64), dtype=np.float64).ravel()


def _dense(a: Any) -> np.ndarray:
    return np.asarray(a.toarray() if sp.issparse(a) else a, dtype=np.float64)


class Centred:
    """A feature matrix ``X`` (n, d) seen as ``Xc = X − 1μᵀ`` without densifying sparse input.

    Dense input is centred once into a float32 (or float64, if given float64) copy, which avoids the
    cancellation of ``XᵀX − nμμᵀ`` in single precision and uses fast BLAS; sparse input stays CSR and the
    mean is subtracted algebraically. ``mean`` defaults to the column means of ``x`` (the TRAIN means; pass
    them explicitly to centre other rows the same way).
    """

    def __init__(self, x: Any, mean: np.ndarray | None = None) -> None:
        self.sparse = sp.issparse(x)
        self.mean = column_mean(x) if mean is None else np.asarray(mean, dtype=np.float64)
        self.shape = x.shape
        if self.sparse:
            self.x = sp.csr_matrix(x, dtype=np.float64)
        else:
            x = np.asarray(x)
            dtype = np.float64 if x.dtype == np.float64 else np.float32
            self.x = x.astype(dtype, copy=True)
            self.x -= self.mean.astype(dtype)

    def t_dot(self, a: np.ndarray) -> np.ndarray:
        """``Xcᵀ A`` (d, k) float64 for dense ``A`` (n, k)."""
        a = np.asarray(a)
        if self.sparse:
            return _dense(self.x.T @ a) - np.outer(self.mean, a.sum(axis=0))
        return np.asarray(self.x.T @ a.astype(self.x.dtype, copy=False), dtype=np.float64)

    def dot(self, w: np.ndarray) -> np.ndarray:
        """``Xc W`` (n, k) float64 for ``W`` (d, k)."""
        if self.sparse:
            return _dense(self.x @ w) - (self.mean @ w)[None, :]
        return np.asarray(self.x @ w.astype(self.x.dtype), dtype=np.float64)

    def gram(self) -> np.ndarray:
        """``XcᵀXc`` (d, d) float64, symmetric."""
        if self.sparse:
            g = _dense(self.x.T @ self.x) - self.shape[0] * np.outer(self.mean, self.mean)
        else:
            g = np.asarray(self.x.T @ self.x, dtype=np.float64)
        return (g + g.T) / 2

    def cross(self, other: Centred) -> np.ndarray:
        """``XcᵀYc`` (dx, dy) float64 with another :class:`Centred` of the same rows."""
        if other.sparse:
            if self.sparse:
                return _dense(self.x.T @ other.x) - self.shape[0] * np.outer(self.mean, other.mean)
            return other.t_dot(self.x).T
        return self.t_dot(other.x)


def scatter(x: Any, mean: np.ndarray) -> np.ndarray:
    """Centred scatter ``(X − 1μᵀ)ᵀ(X − 1μᵀ)`` (d, d), float64, sparse-aware."""
    return Centred(x, mean).gram()


def cross_scatter(x: Any, y: Any, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Centred cross scatter ``(X − 1μxᵀ)ᵀ(Y − 1μyᵀ)`` (dx, dy), float64."""
    return Centred(x, mx).cross(Centred(y, my))


def centred_project(x: Any, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``(X − 1μᵀ) W`` (n, k) float64 without densifying a sparse ``X`` (n, d) or copying a dense one.

    ``W`` is (d, k). Dense float32 input is multiplied in float32 (no float64 copy of a large ``X``).
    """
    if sp.issparse(x):
        xw = sp.csr_matrix(x) @ w
    else:
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)
        xw = x @ np.asarray(w, dtype=x.dtype)
    return np.asarray(xw, dtype=np.float64) - (np.asarray(mean, dtype=np.float64) @ w)[None, :]


class LinearHashCodes:
    """Mixin for methods whose codes are ``sign((X − 1μᵀ) W)`` per view (CVH, SCM, CMFH).

    ``fit`` sets ``w_image`` (d_img, K), ``w_text`` (d_txt, K), ``mean_image``, ``mean_text`` and ``dims``;
    list it before :class:`~cmh.base.HashMethod` in the bases.
    """

    w_image: np.ndarray
    w_text: np.ndarray
    mean_image: np.ndarray
    mean_text: np.ndarray
    dims: tuple[int, int]

    def encode_image(self, image: Any) -> np.ndarray:
        """±1 codes (n, K) of image features (n, d_img)."""
        self.check_fitted()  # type: ignore[attr-defined]
        self.check_dim(image, self.dims[0], "image")  # type: ignore[attr-defined]
        return sign_codes(centred_project(image, self.w_image, self.mean_image))

    def encode_text(self, text: Any) -> np.ndarray:
        """±1 codes (n, K) of text features (n, d_txt), dense or CSR."""
        self.check_fitted()  # type: ignore[attr-defined]
        self.check_dim(text, self.dims[1], "text")  # type: ignore[attr-defined]
        return sign_codes(centred_project(text, self.w_text, self.mean_text))


def ridge(c: np.ndarray, reg: float) -> np.ndarray:
    """``C + reg · (trace(C)/d) · I``: a ridge relative to the mean variance, so it is unit-free."""
    d = c.shape[0]
    scale = float(np.trace(c)) / d if d else 0.0
    if scale <= 0:
        scale = 1.0
    return c + reg * scale * np.eye(d)


# -- linear algebra --------------------------------------------------------------------------------


def inv_sqrt_psd(c: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """``C^{-1/2}`` of a symmetric positive (semi)definite (d, d) matrix; eigenvalues floored at ``floor·max``."""
    vals, vecs = np.linalg.eigh((c + c.T) / 2)
    vals = np.maximum(vals, floor * max(float(vals.max()), 1e-300))
    return (vecs / np.sqrt(vals)) @ vecs.T


def cholesky_factor(c: np.ndarray, method: str = "") -> np.ndarray:
    """Upper Cholesky factor ``R`` (d, d) with ``RᵀR = C``; a one-line :class:`CMHError` if ``C`` is not PD."""
    try:
        return scipy.linalg.cholesky((c + c.T) / 2, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        raise CMHError(
            f"{method}: a feature covariance is singular; increase the ridge, e.g. --set reg=1e-3"
        ) from None


def whitened_cross(
    cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, method: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Rx, Ry, M)`` with ``Cxx = RxᵀRx``, ``Cyy = RyᵀRy`` and ``M = Rx⁻ᵀ Cxy Ry⁻¹`` (dx, dy).

    The singular triplets ``(u, σ, v)`` of ``M`` solve ``max wxᵀ Cxy wy  s.t.  wxᵀCxx wx = wyᵀCyy wy = 1``
    (CCA-like generalised eigenproblems): ``wx = Rx⁻¹ u``, ``wy = Ry⁻¹ v`` (:func:`unwhiten`). Cholesky
    whitening costs ``d³/3`` instead of an eigendecomposition.
    """
    rx, ry = cholesky_factor(cxx, method), cholesky_factor(cyy, method)
    m = scipy.linalg.solve_triangular(rx, cxy, trans="T", lower=False, check_finite=False)
    m = scipy.linalg.solve_triangular(ry, m.T, trans="T", lower=False, check_finite=False).T
    return rx, ry, m


def unwhiten(r: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``R⁻¹ U``: whitened directions (d, k) back to feature-space projections."""
    return scipy.linalg.solve_triangular(r, u, lower=False, check_finite=False)


def top_singular(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` singular triplets ``(U (p, k), σ (k,), V (q, k))`` of ``m`` (p, q), descending.

    Computed from the eigendecomposition of the smaller Gram matrix (only its top ``k`` eigenpairs), so a
    4096 × 1386 matrix costs a 1386² eigenproblem. Vectors of (near-)zero singular values are returned as
    zeros on the larger side. Signs are fixed so that the largest-magnitude entry of each ``U`` column is
    positive (deterministic output).
    """
    p, q = m.shape
    k = int(min(k, p, q))
    small_right = q <= p
    g = m.T @ m if small_right else m @ m.T
    s = g.shape[0]
    vals, vecs = scipy.linalg.eigh((g + g.T) / 2, subset_by_index=[s - k, s - 1])
    vals, vecs = vals[::-1], vecs[:, ::-1]
    sigma = np.sqrt(np.maximum(vals, 0.0))
    tol = 1e-10 * max(float(sigma[0]) if k else 0.0, 1e-300)
    inv = np.where(sigma > tol, 1.0 / np.where(sigma > tol, sigma, 1.0), 0.0)
    if small_right:
        v = vecs
        u = (m @ v) * inv
    else:
        u = vecs
        v = (m.T @ u) * inv
    idx = np.argmax(np.abs(u), axis=0) if k else np.zeros(0, int)
    signs = np.sign(u[idx, np.arange(k)]) if k else np.ones(0)
    signs[signs == 0] = 1
    return u * signs, sigma, v * signs


def count_informative(sigma: np.ndarray, rel_tol: float = 1e-3) -> int:
    """How many values of a descending spectrum ``sigma`` exceed ``rel_tol · sigma[0]`` (0 if all are 0).

    The default 1e-3 sits well above the float32 round-off of centred features and the ~1e-4 error of
    singular values obtained through a Gram matrix (:func:`top_singular`), and far below any useful direction.
    """
    if sigma.size == 0 or sigma[0] <= 0:
        return 0
    return int((sigma > rel_tol * sigma[0]).sum())


def generalised_eigh(a: np.ndarray, b: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` solutions of ``A v = λ B v`` (A symmetric, B symmetric positive definite).

    Returns eigenvalues (k,) in descending order and eigenvectors (d, k) with ``VᵀBV = I``; each
    eigenvector's sign is fixed so that its largest-magnitude entry is positive (deterministic output).
    """
    a = (a + a.T) / 2
    b = (b + b.T) / 2
    vals, vecs = scipy.linalg.eigh(a, b)
    order = np.argsort(-vals, kind="stable")
    if k is not None:
        order = order[:k]
    vals, vecs = vals[order], vecs[:, order]
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1
    return vals, vecs * signs


# -- the informative-bits policy --------------------------------------------------------------------


def informative_rank(*covariances: np.ndarray, tol: float = 1e-8) -> int:
    """The smallest numerical rank among ``covariances`` (a full eigendecomposition: O(d³), small d only;
    the methods themselves count informative directions from their spectrum, :func:`count_informative`)."""
    ranks = []
    for c in covariances:
        vals = np.linalg.eigvalsh((c + c.T) / 2)
        top = max(float(vals.max()), 0.0)
        ranks.append(int((vals > tol * top).sum()) if top > 0 else 0)
    return min(ranks)


def extend_projections(
    method: str,
    bits: int,
    n_informative: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    reason: str = "",
    fill: str = "random",
) -> np.ndarray:
    """The ``(r, bits)`` matrix ``E`` mapping ``r`` informative projections to ``bits`` code projections.

    With ``r >= bits`` it selects the first ``bits`` directions (``E = [I_bits; 0]``). With ``r < bits``
    the first ``r`` columns are the identity and the other ``bits − r`` are random hyperplanes
    ``diag(weights) · g``, ``g ~ N(0, I_r)`` (sign-random-projection LSH in the learnt common space, see
    the module docstring); a :class:`UninformativeBitsWarning` names ``r``. ``weights`` (r,) scales each
    informative direction (e.g. its correlation); default 1. Both modalities must use the same ``E``.
    ``fill="none"`` (the option ``extra_bits=none``) leaves the other ``bits − r`` columns zero: those bits
    are ``sign(0) = +1`` for every item, so the ranking is that of the ``r`` informative bits alone, as in
    implementations that stop at the informative directions; the warning says so.
    """
    if n_informative < 1:
        raise CMHError(
            f"{method}: the training features have no informative direction (rank 0); check that the image and "
            "text features vary across training rows"
        )
    r = int(n_informative)
    if r >= bits:
        return np.eye(r, bits)
    extra = bits - r
    if fill == "none":
        warnings.warn(
            f"{method}: only {r} of the {bits} bits are informative{(' (' + reason + ')') if reason else ''}; "
            f"extra_bits=none: the other {extra} bits are constant (+1) and do not change the ranking "
            "(extra_bits=random fills them with random hyperplanes in the learnt subspace)",
            UninformativeBitsWarning,
            stacklevel=3,
        )
        return np.hstack([np.eye(r), np.zeros((r, extra))])
    if fill != "random":
        raise CMHError(f"{method}: unknown extra_bits={fill!r}; use random or none")
    warnings.warn(
        f"{method}: only {r} of the {bits} bits are informative{(' (' + reason + ')') if reason else ''}; "
        f"the other {extra} bits are random hyperplanes in the learnt {r}-d common subspace "
        "(they add no new information; use at most "
        f"{r} bits to avoid them)",
        UninformativeBitsWarning,
        stacklevel=3,
    )
    g = rng.standard_normal((r, extra))
    if weights is not None:
        g = np.asarray(weights, dtype=np.float64)[:, None] * g
    g /= np.linalg.norm(g, axis=0, keepdims=True)
    return np.hstack([np.eye(r), g])
