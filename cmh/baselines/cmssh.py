"""CMSSH: Cross-Modality Similarity-Sensitive Hashing (Bronstein, Bronstein, Michel, Paragios, CVPR 2010).

M. M. Bronstein, A. M. Bronstein, F. Michel, N. Paragios. "Data fusion through cross-modality metric
learning using similarity-sensitive hashing." CVPR 2010, pp. 3594-3601.

Each bit is a pair of linear threshold functions ``xi_k(x) = sign(p_k . x + a_k)`` (image) and
``eta_k(y) = sign(q_k . y + b_k)`` (text), learnt by AdaBoost over cross-modal training pairs
``(x_i, y_j)`` labelled ``s = +1`` (positive: the items share a label) or ``s = -1`` (negative)
(paper Sec. 3, Algorithm "cross-modal SSH"):

1. Start from uniform pair weights ``w`` (half the total mass on positives, half on negatives).
2. For bit k, the weak learner ``s ≈ xi(x) eta(y)`` should maximise the weighted correlation
   ``r = sum_i w_i s_i xi(x_i) eta(y_i)``. Relaxing the signs, ``sum_i w_i s_i (p . x_i)(q . y_i) = p^T C q``
   with the weighted cross-covariance ``C = sum_P w x y^T - sum_N w x y^T`` (features centred on the
   training means), so ``p, q`` are the top left/right singular vectors of ``C`` (dense SVD when
   ``C`` is small, else block subspace iteration through products ``X^T (w s (Y V))``, never forming a
   large ``C``).
3. Thresholds ``(a, b)`` minimise the weighted error ``(1 - r) / 2`` exactly over a grid of candidate
   thresholds (quantiles of the projected training values); ``r`` for every pair of candidates is one
   matrix product. Candidates are restricted to the 2.5%-97.5% quantile range, so no bit is constant on
   the training items.
4. ``alpha_k = 1/2 log((1 + r) / (1 - r))``; ``w_i <- w_i exp(-alpha_k s_i xi(x_i) eta(y_i))``, renormalised.

Codes are the signs, ``sign(0) = +1``. The paper samples its training pairs; the default here is 10,000
pairs (half positive, drawn at random among cross-modal pairs of distinct training items, plus
aligned pairs when positives are rare) from the method's seed.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from cmh.base import HashMethod, sign_codes
from cmh.baselines.seph import check_supervised_pairs
from cmh.data import to_dense
from cmh.errors import CMHError
from cmh.registry import register_method


@dataclasses.dataclass(frozen=True)
class CMSSHConfig:
    """CMSSH options (Bronstein et al., CVPR 2010; the paper does not fix the pair counts)."""

    pairs: int = 10000  # sampled cross-modal training pairs
    positive_fraction: float = 0.5  # share of positive pairs in the sample
    thresholds: int = 64  # candidate thresholds per modality in the exact grid search
    svd_iters: int = 30  # block subspace iterations (at most) for the top singular pair of C


def sample_pairs(
    labels: np.ndarray, n_pairs: int, positive_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-modal pairs (image row i, text row j, s in {-1,+1}); s = +1 when items i and j share a label."""
    n = labels.shape[0]
    lab = labels.astype(bool)
    n_pos = int(round(n_pairs * positive_fraction))
    n_neg = n_pairs - n_pos
    pos_i, pos_j, neg_i, neg_j = [], [], [], []
    got_pos = got_neg = 0
    for _ in range(20):  # rounds of vectorised rejection sampling
        m = 4 * n_pairs
        i = rng.integers(0, n, size=m)
        j = rng.integers(0, n, size=m)
        keep = i != j
        i, j = i[keep], j[keep]
        s = np.any(lab[i] & lab[j], axis=1)
        if got_pos < n_pos:
            pos_i.append(i[s][: n_pos - got_pos])
            pos_j.append(j[s][: n_pos - got_pos])
            got_pos += len(pos_i[-1])
        if got_neg < n_neg:
            neg_i.append(i[~s][: n_neg - got_neg])
            neg_j.append(j[~s][: n_neg - got_neg])
            got_neg += len(neg_i[-1])
        if got_pos >= n_pos and got_neg >= n_neg:
            break
    if got_pos < n_pos:  # positives are rare: the aligned pairs (i, i) are always positive
        extra = rng.integers(0, n, size=n_pos - got_pos)
        pos_i.append(extra)
        pos_j.append(extra)
    pi, pj = np.concatenate(pos_i), np.concatenate(pos_j)
    ni, nj = np.concatenate(neg_i), np.concatenate(neg_j)
    s = np.concatenate([np.ones(len(pi)), -np.ones(len(ni))])
    return np.concatenate([pi, ni]), np.concatenate([pj, nj]), s


def _best_thresholds(u: np.ndarray, v: np.ndarray, ws: np.ndarray, n_cand: int) -> tuple[float, float, float]:
    """Exact grid search: thresholds (a, b) maximising r = sum ws sign(u + a) sign(v + b).

    u, v (N,) projected pair values, ws (N,) signed weights w * s. Candidates are quantiles of u and v in
    [2.5%, 97.5%]; returns (a, b, r).
    """
    qs = np.linspace(0.025, 0.975, n_cand)
    ta = -np.quantile(u, qs)
    tb = -np.quantile(v, qs)
    xi = np.where(u[None, :] + ta[:, None] >= 0, 1.0, -1.0)  # (n_cand, N)
    eta = np.where(v[None, :] + tb[:, None] >= 0, 1.0, -1.0)
    r = (xi * ws[None, :]) @ eta.T  # (n_cand, n_cand)
    ia, ib = np.unravel_index(int(np.argmax(r)), r.shape)
    return float(ta[ia]), float(tb[ib]), float(r[ia, ib])


@register_method("cmssh")
class CMSSH(HashMethod):
    """Cross-Modality Similarity-Sensitive Hashing (Bronstein et al., CVPR 2010, Sec. 3).

    Boosting over sampled positive/negative cross-modal pairs; each bit is one pair of linear projections
    (top singular vectors of the weighted positive-minus-negative cross-covariance) with thresholds that
    minimise the weighted error; pair weights are updated AdaBoost-style. See :mod:`cmh.baselines.cmssh`.
    """

    kind: ClassVar[Literal["shallow", "deep"]] = "shallow"
    supervised: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ("image", "text", "labels")
    paper: ClassVar[str] = (
        "M. M. Bronstein, A. M. Bronstein, F. Michel, N. Paragios. Data fusion through cross-modality metric "
        "learning using similarity-sensitive hashing. CVPR 2010, pp. 3594-3601"
    )
    Config: ClassVar[type] = CMSSHConfig
    #: unit tests: 3,000 sampled pairs instead of 10,000 (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {"pairs": 3000}

    def fit(self, train: Any) -> CMSSH:
        """Boost ``bits`` weak learners on cross-modal pairs sampled from ``train``."""
        self.check_train(train)
        image, text, labels = check_supervised_pairs(self.name, train)
        cfg = self.cfg
        if cfg.pairs < 2 or not 0.0 < cfg.positive_fraction < 1.0 or cfg.thresholds < 2:
            raise CMHError(f"{self.name}: need pairs >= 2, 0 < positive_fraction < 1 and thresholds >= 2")
        d_img, d_txt = image.shape[1], text.shape[1]
        if self.bits > min(d_img, d_txt):
            warnings.warn(
                f"{self.name}: {self.bits} bits but the cross-covariance has rank <= {min(d_img, d_txt)} "
                f"(image {d_img}-d, text {d_txt}-d); the bits beyond that reuse directions of the same subspace "
                "under re-weighted pairs (different thresholds), so they add less information",
                stacklevel=2,
            )
        rng = self.rng()
        form_c = d_img * d_txt <= 1_000_000
        pi, pj, s = sample_pairs(labels, cfg.pairs, cfg.positive_fraction, rng)
        self.mean_img_ = image.mean(0).astype(np.float64)
        self.mean_txt_ = np.asarray(text.mean(0), dtype=np.float64).ravel()
        dtype = np.float64 if form_c else np.float32  # large problems: float32 products for speed
        x = (image[pi] - self.mean_img_).astype(dtype)  # (N, d_img), centred
        y = (to_dense(sp.csr_matrix(text)[pj] if sp.issparse(text) else text[pj]) - self.mean_txt_).astype(
            dtype
        )
        w = np.where(s > 0, 0.5 / (s > 0).sum(), 0.5 / (s < 0).sum())

        p_all = np.zeros((d_img, self.bits))
        q_all = np.zeros((d_txt, self.bits))
        a_all = np.zeros(self.bits)
        b_all = np.zeros(self.bits)
        alphas = np.zeros(self.bits)
        v0 = rng.standard_normal(min(d_img, d_txt))
        for k in range(self.bits):  # boosting rounds (one per bit), each vectorised over pairs
            ws = w * s
            p, q = self._top_singular_pair(x, y, ws, form_c, v0, rng)
            v0 = q if d_txt <= d_img else p
            u, v = x @ p.astype(dtype), y @ q.astype(dtype)
            u, v = u.astype(np.float64), v.astype(np.float64)
            a, b, r = _best_thresholds(u, v, ws, cfg.thresholds)
            r = float(np.clip(r, -1 + 1e-12, 1 - 1e-12))
            alpha = 0.5 * math.log((1 + r) / (1 - r))
            h = np.where(u + a >= 0, 1.0, -1.0) * np.where(v + b >= 0, 1.0, -1.0)
            w = w * np.exp(-alpha * s * h)
            w /= w.sum()
            p_all[:, k], q_all[:, k], a_all[k], b_all[k], alphas[k] = p, q, a, b, alpha
        self.p_, self.q_ = p_all.astype(np.float32), q_all.astype(np.float32)
        # fold the centring into the offsets: sign(p.(x - mu) + a) = sign(p.x + (a - p.mu))
        self.a_ = (a_all - self.mean_img_ @ p_all).astype(np.float32)
        self.b_ = (b_all - self.mean_txt_ @ q_all).astype(np.float32)
        self.alphas_ = alphas
        self.dims_ = {"image": d_img, "text": d_txt}
        self.fitted = True
        for view, codes in (("image", self.encode_image(image)), ("text", self.encode_text(text))):
            constant = int(np.sum(np.all(codes == codes[:1], axis=0)))
            if constant:  # thresholds lie inside the sampled value range, so this flags a real problem
                warnings.warn(
                    f"{self.name}: {constant} of {self.bits} {view} bits are constant on the training set; "
                    "the sampled pairs do not cover the data (raise pairs)",
                    stacklevel=2,
                )
        return self

    def _top_singular_pair(
        self,
        x: np.ndarray,
        y: np.ndarray,
        ws: np.ndarray,
        form_c: bool,
        v0: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top left/right singular vectors (p, q) of C = X^T diag(ws) Y (d_img, d_txt).

        Small C is formed and decomposed densely; otherwise block subspace iteration through products
        ``X^T (ws * (Y V))`` (never forming C), started from ``v0`` (the previous bit's vector on the smaller
        side) plus 7 seeded random vectors, with a Rayleigh-Ritz step; deterministic given the seed.
        """
        if form_c:
            c = x.T @ (ws[:, None] * y)
            uu, _, vt = np.linalg.svd(c.astype(np.float64), full_matrices=False)
            return uu[:, 0], vt[0]
        # block subspace iteration (block of 8): each step reads X and Y once for all 8 vectors
        # (a matrix-vector method is memory-bound here), then a Rayleigh-Ritz step on the block
        wsf = ws.astype(x.dtype)[:, None]
        small_is_text = y.shape[1] <= x.shape[1]
        big, small = (x, y) if small_is_text else (y, x)
        block = np.asarray(rng.standard_normal((small.shape[1], 8)), dtype=x.dtype)
        if v0 is not None:
            block[:, 0] = v0
        v, _ = np.linalg.qr(block)
        top = 0.0
        for _ in range(self.cfg.svd_iters):  # subspace iterations
            u, _ = np.linalg.qr(big.T @ (wsf * (small @ v)))  # (d_big, 8)
            m = small.T @ (wsf * (big @ u))  # C_small_big @ u : (d_small, 8)
            vv, sv, wt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
            v = vv.astype(x.dtype)
            done = abs(sv[0] - top) <= 1e-4 * sv[0]
            top = sv[0]
            if done:
                break
        vec_small = vv[:, 0]
        vec_big = u.astype(np.float64) @ wt[0]
        vec_big /= max(np.linalg.norm(vec_big), 1e-300)
        return (vec_big, vec_small) if small_is_text else (vec_small, vec_big)

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """Image features (n, d_img) -> ±1 int8 (n, bits): sign(x P + a)."""
        self.check_fitted()
        self.check_dim(image, self.dims_["image"], "image")
        return sign_codes(np.asarray(image, dtype=np.float32) @ self.p_ + self.a_)

    def encode_text(self, text: Any) -> np.ndarray:
        """Text features (n, d_txt), dense or sparse -> ±1 int8 (n, bits): sign(y Q + b)."""
        self.check_fitted()
        self.check_dim(text, self.dims_["text"], "text")
        proj = text @ self.q_ if sp.issparse(text) else np.asarray(text, dtype=np.float32) @ self.q_
        return sign_codes(np.asarray(proj) + self.b_)
