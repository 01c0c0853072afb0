"""SePH: Semantics-Preserving Hashing (Lin, Ding, Hu, Wang, CVPR 2015), variants ``seph-rnd`` and ``seph-km``.

Z. Lin, G. Ding, M. Hu, J. Wang. "Semantics-preserving hashing for cross-view retrieval." CVPR 2015,
pp. 3864-3872 (extended: Lin, Ding, Han, Wang, "Cross-view retrieval via probability-based
semantics-preserving hashing", IEEE T-Cybernetics 2016).

Training (paper Sec. 3.1-3.2):

1. Semantic affinities from labels: ``A_ij = cos(l_i, l_j)`` (multi-hot label vectors), turned into a
   probability distribution over pairs ``P_ij = A_ij / sum_{k != l} A_kl`` (diagonal zero).
2. Relaxed codes ``H`` (n, K) define a distribution from the (relaxed) Hamming distances
   ``d_ij = ||h_i - h_j||^2 / 4`` with a Student-t-like kernel, ``Q_ij = (1 + d_ij)^-1 / sum_{k != l} (1 + d_kl)^-1``.
3. ``min_H  KL(P || Q) + alpha / (K n) * || |H| - 1 ||_F^2``: the KL term makes Hamming distances follow
   the semantics, the second term pulls every entry towards +-1 (quantisation loss). The gradient is
   ``dKL/dh_i = sum_j (P_ij - Q_ij)(1 + d_ij)^-1 (h_i - h_j)`` (t-SNE's gradient with the 1/4 scale).
   It is minimised, as in the authors' released ``minKLD`` (which they derived from van der Maaten's
   ``tsne_p.m``), by gradient descent with momentum 0.5 and delta-bar-delta gains, learning rate 500,
   from ``1e-4 * N(0, 1)``, re-centring ``H`` every step and keeping the iterate of lowest objective.
   The training codes are ``B = sign(H)``. ``P`` and ``Q`` are n x n, so this runs on a random sample of
   ``sample_size`` training pairs (5,000 by default, all of them when fewer).
4. Hash functions (Sec. 3.3): for each view and each bit a kernel logistic regression
   ``p(b_k = 1 | x) = sigmoid(w_k . phi(x))`` with RBF features ``phi(x)_a = exp(-||x - a||^2 / (2 sigma^2))``
   on 500 anchors -- random training points (``seph-rnd``) or k-means centres (``seph-km``) -- and
   ``sigma`` = the mean distance from the sampled points to the anchors (times ``kernel_scale``, 1 by
   default). Each bit minimises the logistic loss plus ``C * w_k^T K_aa w_k`` (RKHS-norm penalty,
   ``C = 0.01``, the authors' value). All bits are fitted at once by majorise-minimise Newton steps with
   Boehning's shared curvature bound (:func:`fit_kernel_logistic`; the authors used L-BFGS per bit).

Out-of-sample (Sec. 3.4): a query seen in one view gets ``b_k = sign(w_k . phi(x))``
(:meth:`encode_image`, :meth:`encode_text`). An item seen in both views gets the paper's unified code
from the two views' output probabilities, assuming the views are independent given the bit:
``p(b_k | x, y) ∝ p(b_k | x) p(b_k | y) / p(b_k)``, with ``p(b_k)`` the bit's frequency in the training
codes, i.e. ``b_k = sign(logit_x + logit_y - logit(p(b_k = 1)))`` (:meth:`encode_pair`). The cmh runner
encodes the database per view (I→T searches text codes, T→I image codes), which is the common
cross-modal protocol; :meth:`encode_pair` gives the paper's unified database codes for users who want them.

Deviation/uncertainty notes: the paper states the optimiser only as gradient descent; we follow the
authors' code (momentum + gains). On Wikipedia the T->I numbers the literature reports for SePH
(~0.62-0.66) are reproduced only with unified database codes (per view we get ~0.37-0.45); see
``docs/baselines_seph_cmssh.md``. The k-means anchors use scikit-learn's ``KMeans`` (one Lloyd run seeded from the method's
seed, ``kmeans_iters`` iterations at most).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from cmh.base import HashMethod, sign_codes
from cmh.baselines._common import check_features, check_labels
from cmh.data import to_dense
from cmh.errors import CMHError
from cmh.registry import register_method

PAPER = (
    "Z. Lin, G. Ding, M. Hu, J. Wang. Semantics-preserving hashing for cross-view retrieval. "
    "CVPR 2015, pp. 3864-3872"
)


# -- input checks shared with cmh.baselines.cmssh -------------------------------------------------------


def check_supervised_pairs(name: str, train: Any) -> tuple[np.ndarray, Any, np.ndarray]:
    """Validate a supervised training set; return (image (n, d_img) float32, text (dense or sparse), labels).

    Raises :class:`CMHError` (via :mod:`cmh.baselines._common`) for missing or single-class labels and for
    a modality whose features are all zero or the same for every training row.
    """
    labels = check_labels(name, train.labels)
    check_features(name, train.image, "image")
    check_features(name, train.text, "text")
    image = np.asarray(train.image, dtype=np.float32)
    text = train.text
    if image.shape[0] != labels.shape[0] or text.shape[0] != labels.shape[0]:
        raise CMHError(f"{name}: image, text and labels must have the same number of rows")
    return image, text, labels


def _sq_dists(x: Any, anchors: torch.Tensor, anchor_sq: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Squared Euclidean distances (n, m) float32 from rows of ``x`` (dense or sparse) to ``anchors`` (m, d).

    ``(||x||^2 + ||a||^2) - 2 x.a``, clamped at 0, with the cross term as one float32 product per chunk of rows
    and the factor -2 folded into the anchors (exact: a power of two). Dense chunks use NumPy's BLAS
    (OpenBLAS), about 15-20 % faster than torch's MKL ``addmm`` for this shape on the project's AMD CPUs, and
    write into the output in place; this GEMM is nearly all of the encoding time."""
    n, m = x.shape[0], anchors.shape[0]
    out = torch.empty(n, m)
    a_m2 = -2.0 * anchors.numpy()  # (m, d) float32
    for start in range(0, n, chunk):  # chunks of rows, not single samples
        block, o = x[start : start + chunk], out[start : start + chunk]
        if sp.issparse(block):
            block = sp.csr_matrix(block, dtype=np.float32)
            x_sq = torch.from_numpy(np.asarray(block.multiply(block).sum(axis=1), dtype=np.float32).ravel())
            o.copy_(torch.from_numpy(np.asarray(block @ a_m2.T, dtype=np.float32)))
        else:
            t = np.ascontiguousarray(block, dtype=np.float32)
            x_sq = torch.linalg.vector_norm(torch.from_numpy(t), dim=1).square_()  # no (rows, d) temporary
            np.matmul(t, a_m2.T, out=o.numpy())
        o.add_(x_sq[:, None] + anchor_sq[None, :]).clamp_min_(0.0)
    return out


@contextlib.contextmanager
def _threads_for(work: float) -> Iterator[None]:
    """Run small problems (``work`` < 4e6 elements per op) on one torch thread: for tiny tensors the
    thread pool's synchronisation costs far more than it saves, badly so on a busy machine."""
    before = torch.get_num_threads()
    if work < 4e6 and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- step 1-3: codes by KL minimisation ------------------------------------------------------------------


def semantic_probabilities(labels: np.ndarray) -> torch.Tensor:
    """Labels (n, c) multi-hot -> P (n, n) float32: cosine affinities, zero diagonal, summing to 1."""
    lab = torch.from_numpy(np.asarray(labels, dtype=np.float32))
    norms = lab.norm(dim=1, keepdim=True).clamp_min(1e-12)
    lhat = lab / norms
    p = lhat @ lhat.T
    p.fill_diagonal_(0.0)
    p /= p.sum()
    return p.clamp_min_(1e-30)  # keeps log(P) finite; these entries add nothing to KL


def learn_codes_kl(
    p: torch.Tensor,
    bits: int,
    alpha: float,
    iters: int,
    lr: float,
    momentum: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, float]:
    """Minimise KL(P||Q) + alpha * || |H| - 1 ||_F^2 over real H (n, bits); return (best H, objective).

    ``alpha`` here is already divided by ``bits * n`` (the paper's normalisation). Gradient descent with
    momentum and delta-bar-delta gains (van der Maaten's t-SNE schedule, as in the SePH authors' code).
    """
    n = p.shape[0]
    h = torch.from_numpy(1e-4 * rng.standard_normal((n, bits))).to(torch.float32)
    inc = torch.zeros_like(h)
    gains = torch.ones_like(h)
    const = float((p * p.log()).sum())
    best_cost, best_h = math.inf, h.clone()
    for it in range(iters + 1):  # iterations, each vectorised over all pairs
        sq = (h * h).sum(1)
        num = torch.addmm(sq[:, None] + sq[None, :], h, h.T, alpha=-2.0)  # ||h_i - h_j||^2
        num.clamp_min_(0.0).mul_(0.25).add_(1.0).reciprocal_()  # (1 + d_H)^-1
        num.fill_diagonal_(0.0)
        z = float(num.sum())
        if it % 10 == 0 or it == iters:  # objective (every 10 steps; it costs n^2 logs)
            # sum P log Q = sum P log num - log z, since P sums to 1 (log of the zero diagonal: P ~ 0 there)
            p_log_num = float((p * torch.log(num.clamp_min(1e-30))).sum())
            cost = const - p_log_num + math.log(z) + alpha * float(((h.abs() - 1.0) ** 2).sum())
            if cost < best_cost:
                best_cost, best_h = cost, h.clone()
        if it == iters:
            break
        # gradient: (diag(rowsum L) - L) h with L = (P - Q) * num = P * num - num^2 / z
        lmat = torch.mul(p, num).addcmul_(num, num, value=-1.0 / z)
        grad = lmat.sum(1, keepdim=True) * h - lmat @ h
        del lmat, num
        grad += 2.0 * alpha * (h.abs() - 1.0) * torch.sign(h)
        same = torch.sign(grad) == torch.sign(inc)
        gains = torch.where(same, gains * 0.8, gains + 0.2).clamp_min_(0.01)
        inc = momentum * inc - lr * gains * grad
        h = h + inc
        h -= h.mean(0, keepdim=True)
    return best_h, best_cost


# -- step 4: kernel logistic regression -------------------------------------------------------------------


def fit_kernel_logistic(
    phi: torch.Tensor, k_aa: torch.Tensor, targets: torch.Tensor, reg: float, iters: int, tol: float = 1e-7
) -> torch.Tensor:
    """Multi-output kernel logistic regression with an RKHS penalty.

    phi (n, m) kernel features, k_aa (m, m) anchor Gram matrix, targets (n, K) in {-1, +1}; returns W (m, K).
    Minimises, for the K independent columns of W at once,
    ``sum_{i,k} log(1 + exp(-t_ik (phi W)_ik)) + reg * sum_k w_k^T K_aa w_k``.
    Solver: Boehning's bound (majorise-minimise) Newton steps, ``W <- W - H0^-1 grad`` with the fixed
    curvature bound ``H0 = phi^T phi / 4 + 2 reg K_aa`` shared by all bits (one Cholesky factorisation),
    which decreases the objective monotonically; it stops when the relative decrease falls below ``tol``.
    The authors minimised the same objective per bit with minFunc's L-BFGS.
    """
    f = phi.double()
    kaa = k_aa.double()
    t = targets.double()
    m = f.shape[1]
    h0 = f.T @ f / 4.0 + 2.0 * reg * kaa
    h0 += (1e-6 * float(h0.diagonal().mean()) + 1e-12) * torch.eye(m, dtype=torch.float64)
    chol = torch.linalg.cholesky(h0)
    w = torch.zeros(m, t.shape[1], dtype=torch.float64)
    prev = math.inf
    for _ in range(iters):  # solver iterations, vectorised over samples and bits
        margins = t * (f @ w)
        kw = kaa @ w
        loss = float(torch.nn.functional.softplus(-margins).sum() + reg * (w * kw).sum())
        if prev - loss <= tol * abs(loss):
            break
        prev = loss
        grad = f.T @ (-t * torch.sigmoid(-margins)) + 2.0 * reg * kw
        w -= torch.cholesky_solve(grad, chol)
    return w.to(torch.float32)


@dataclasses.dataclass(frozen=True)
class SePHConfig:
    """SePH options; defaults are the paper's / authors' code values (see module docstring)."""

    sample_size: int = 5000  # training pairs used to learn codes (P, Q are n x n); all if fewer
    anchors: int = 500  # kernel anchors per view (paper: 500)
    alpha: float = 0.01  # quantisation weight, divided by bits * sample size (authors' code: 1e-2)
    kl_iters: int = 100  # gradient-descent iterations on KL(P||Q) (authors' code: 100)
    kl_lr: float = 500.0  # t-SNE style learning rate (authors' code: 500)
    momentum: float = 0.5  # (authors' code: 0.5)
    klr_reg: float = 0.01  # C, weight of w^T K w in the kernel logistic regression (authors: 1e-2)
    klr_iters: int = 200  # solver iterations (at most) for the kernel logistic regression
    kmeans_iters: int = 100  # Lloyd iterations for seph-km anchors (authors: MaxIter 100)
    kernel_scale: float = (
        1.0  # multiplies sigma^2 (1.0: sigma = mean distance from the sample to the anchors)
    )


class _SePH(HashMethod):
    """Shared implementation; the subclasses choose how anchors are picked."""

    kind: ClassVar[Literal["shallow", "deep"]] = "shallow"
    supervised: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ("image", "text", "labels")
    paper: ClassVar[str] = PAPER
    Config: ClassVar[type] = SePHConfig
    anchor_mode: ClassVar[str] = "random"

    # -- training -------------------------------------------------------------------------------------
    def fit(self, train: Any) -> _SePH:
        """Learn codes for a sample of ``train`` by KL minimisation, then per-view kernel logistic regression."""
        self.check_train(train)
        image, text, labels = check_supervised_pairs(self.name, train)
        ns = min(labels.shape[0], self.cfg.sample_size)
        with _threads_for(float(ns) * ns):
            return self._fit(image, text, labels)

    def _fit(self, image: np.ndarray, text: Any, labels: np.ndarray) -> _SePH:
        cfg = self.cfg
        if cfg.sample_size < 2 or cfg.anchors < 1:
            raise CMHError(f"{self.name}: sample_size must be >= 2 and anchors >= 1")
        rng = self.rng()
        n = labels.shape[0]
        idx = (
            np.sort(rng.choice(n, size=cfg.sample_size, replace=False))
            if n > cfg.sample_size
            else np.arange(n)
        )
        ns = len(idx)
        if np.unique(labels[idx], axis=0).shape[0] < 2:
            raise CMHError(f"{self.name}: the sampled training pairs share one label set; raise sample_size")

        p = semantic_probabilities(labels[idx])
        h, self.kl_objective_ = learn_codes_kl(
            p, self.bits, cfg.alpha / (self.bits * ns), cfg.kl_iters, cfg.kl_lr, cfg.momentum, rng
        )
        del p
        codes = torch.from_numpy(sign_codes(h).astype(np.float32))  # (ns, K) in {-1, +1}
        constant = int((codes.abs().sum(0) == codes.sum(0).abs()).sum())
        if constant:  # pragma: no cover - re-centring makes this practically impossible
            raise CMHError(f"{self.name}: {constant} learnt training bits are constant; raise kl_iters")
        self.bit_prior_ = ((codes > 0).float().mean(0)).clamp(1e-6, 1 - 1e-6)  # p(b_k = +1)

        n_anchor = min(cfg.anchors, ns)
        if n_anchor < cfg.anchors:
            warnings.warn(
                f"{self.name}: only {ns} sampled pairs, so {n_anchor} anchors instead of {cfg.anchors}",
                stacklevel=2,
            )
        self.views_: dict[str, dict[str, torch.Tensor]] = {}
        self.dims_ = {"image": image.shape[1], "text": text.shape[1]}
        seeds = rng.integers(0, 2**31 - 1, size=2)
        for (view, feats), seed in zip(
            (("image", image[idx]), ("text", to_dense(text[idx]))), seeds, strict=True
        ):
            anchors = self._anchors(feats, n_anchor, int(seed))
            a = torch.from_numpy(anchors)
            a_sq = (a * a).sum(1)
            d_xa = _sq_dists(feats, a, a_sq)
            sigma2 = float(d_xa.sqrt().mean()) ** 2 * cfg.kernel_scale  # sigma = mean distance to anchors
            if sigma2 <= 0:
                raise CMHError(
                    f"{self.name}: the sampled {view} features are all identical; check the features"
                )
            phi = torch.exp(-d_xa / (2 * sigma2))
            k_aa = torch.exp(-_sq_dists(anchors, a, a_sq) / (2 * sigma2))
            w = fit_kernel_logistic(phi, k_aa, codes, cfg.klr_reg, cfg.klr_iters)
            pred = sign_codes(phi @ w)
            const_bits = int(np.sum(np.all(pred == pred[:1], axis=0)))
            if const_bits:
                warnings.warn(
                    f"{self.name}: {const_bits} of {self.bits} {view} hash functions give the same bit for every "
                    f"training sample; the {view} features cannot predict them (try more anchors or fewer bits)",
                    stacklevel=2,
                )
            self.views_[view] = {"anchors": a, "anchor_sq": a_sq, "sigma2": torch.tensor(sigma2), "w": w}
        self.sample_index_ = idx
        self.train_codes_ = codes.to(torch.int8).numpy()
        self.fitted = True
        return self

    def _anchors(self, feats: np.ndarray, m: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.anchor_mode == "random":
            return np.ascontiguousarray(feats[np.sort(rng.choice(feats.shape[0], size=m, replace=False))])
        from sklearn.cluster import KMeans

        km = KMeans(
            n_clusters=m,
            init="random",
            n_init=1,
            max_iter=self.cfg.kmeans_iters,
            random_state=seed,
            algorithm="lloyd",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning (fewer distinct points than clusters)
            km.fit(feats)
        return np.ascontiguousarray(km.cluster_centers_, dtype=np.float32)

    # -- encoding -------------------------------------------------------------------------------------
    def logits(self, x: Any, view: str) -> torch.Tensor:
        """Features of one view (n, d) -> per-bit logits (n, bits) of p(b_k = +1 | x), float32."""
        self.check_fitted()
        self.check_dim(x, self.dims_[view], view)
        v = self.views_[view]
        if not sp.issparse(x):
            x = np.asarray(x, dtype=np.float32)
        d = _sq_dists(x, v["anchors"], v["anchor_sq"])
        return d.div_(-2 * v["sigma2"]).exp_() @ v["w"]

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """Image features (n, d_img) -> ±1 int8 (n, bits): sign of the image view's logistic outputs."""
        return sign_codes(self.logits(image, "image"))

    def encode_text(self, text: Any) -> np.ndarray:
        """Text features (n, d_txt), dense or sparse -> ±1 int8 (n, bits)."""
        return sign_codes(self.logits(text, "text"))

    def encode_pair(self, image: np.ndarray, text: Any) -> np.ndarray:
        """Unified codes (n, bits) for items seen in both views (paper Sec. 3.4).

        ``b_k = sign(log p(+1|x)p(+1|y)/p(+1) - log p(-1|x)p(-1|y)/p(-1))``
        ``    = sign(logit_x + logit_y - logit(p(b_k = +1)))``.
        """
        prior = torch.log(self.bit_prior_) - torch.log1p(-self.bit_prior_)
        return sign_codes(self.logits(image, "image") + self.logits(text, "text") - prior)


@register_method("seph-rnd")
class SePHRandom(_SePH):
    """SePH with 500 random training points as kernel anchors (``SePH_rnd``; Lin et al., CVPR 2015).

    See :mod:`cmh.baselines.seph` for the algorithm (Sec. 3, Eq. for P, Q, KL + quantisation loss) and the
    defaults (sample 5,000, alpha 0.01, C 0.01, 500 anchors).
    """

    anchor_mode = "random"


@register_method("seph-km")
class SePHKMeans(_SePH):
    """SePH with 500 k-means centres as kernel anchors (``SePH_km``; Lin et al., CVPR 2015).

    See :mod:`cmh.baselines.seph`; anchors are scikit-learn k-means centres of each view's sampled features.
    """

    anchor_mode = "kmeans"
