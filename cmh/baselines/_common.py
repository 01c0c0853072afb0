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
- :func:`column_mean`, :func:`scatter`, :func:`cross_scatter`, :func:`centred_project` — centred
  second moments and projections (sparse-aware).
- :func:`ridge` — relative ridge ``reg · trace(C)/d · I``.
- :func:`inv_sqrt_psd`, :func:`generalised_eigh` — small symmetric linear algebra.
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

from cmh.errors import CMHError

__all__ = [
    "UninformativeBitsWarning",
    "as_matrix",
    "centred_project",
    "check_features",
    "check_labels",
    "column_mean",
    "cross_scatter",
    "extend_projections",
    "generalised_eigh",
    "informative_rank",
    "inv_sqrt_psd",
    "ridge",
    "row_normalise",
    "scatter",
]


class UninformativeBitsWarning(UserWarning):
    """More code bits were requested than the method has informative projections."""


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


# -- centred second moments -------------------------------------------------------------------------


def column_mean(x: Any) -> np.ndarray:
    """Column means (d,) float64 of dense or sparse ``x`` (n, d)."""
    return np.asarray(x.mean(axis=0), dtype=np.float64).ravel()


def _dense(a: Any) -> np.ndarray:
    return np.asarray(a.toarray() if sp.issparse(a) else a, dtype=np.float64)


def scatter(x: Any, mean: np.ndarray) -> np.ndarray:
    """Centred scatter ``(X − 1μᵀ)ᵀ(X − 1μᵀ) = XᵀX − n μμᵀ`` (d, d), float64, sparse-aware."""
    n = x.shape[0]
    s = _dense(x.T @ x) - n * np.outer(mean, mean)
    return (s + s.T) / 2


def cross_scatter(x: Any, y: Any, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Centred cross scatter ``(X − 1μxᵀ)ᵀ(Y − 1μyᵀ) = XᵀY − n μx μyᵀ`` (dx, dy), float64."""
    n = x.shape[0]
    return _dense(x.T @ y) - n * np.outer(mx, my)


def centred_project(x: Any, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``(X − 1μᵀ) W`` (n, k) without densifying a sparse ``X`` (n, d); ``W`` is (d, k)."""
    xw = x @ w
    return np.asarray(xw, dtype=np.float64) - (mean @ w)[None, :]


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
    """The number of informative paired directions: the smallest numerical rank among ``covariances``."""
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
) -> np.ndarray:
    """The ``(r, bits)`` matrix ``E`` mapping ``r`` informative projections to ``bits`` code projections.

    With ``r >= bits`` it selects the first ``bits`` directions (``E = [I_bits; 0]``). With ``r < bits``
    the first ``r`` columns are the identity and the other ``bits − r`` are random hyperplanes
    ``diag(weights) · g``, ``g ~ N(0, I_r)`` (sign-random-projection LSH in the learnt common space, see
    the module docstring); a :class:`UninformativeBitsWarning` names ``r``. ``weights`` (r,) scales each
    informative direction (e.g. its correlation); default 1. Both modalities must use the same ``E``.
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
