"""The built-in ``synthetic`` dataset: deterministic multi-label pairs, no files needed.

Each item has a latent semantic vector ``z`` (``latent`` dims). Labels switch on where ``z`` projects
onto a class prototype beyond a threshold (every item keeps at least one label). The image view is a
dense, noisy non-linear map of ``z`` (like a CNN fc7 feature, non-negative after a ReLU); the text view
is a sparse non-negative bag-of-words whose word rates depend on ``z`` through another non-linear map.
The two views share only ``z``, so a method must learn the cross-modal relation to retrieve well, and
the amount of noise keeps the task far from trivial (methods are ranked sensibly rather than all at 1.0).
Sized so that the flagship deep method trains in about a minute on a laptop CPU.
"""

from __future__ import annotations

import numpy as np

from cmh.data.dataset import CrossModalDataset
from cmh.data.splits import random_split


def make_synthetic(
    n: int = 6000,
    image_dim: int = 512,
    text_dim: int = 300,
    classes: int = 10,
    latent: int = 16,
    n_query: int = 500,
    n_train: int = 3000,
    noise: float = 1.0,
    seed: int = 0,
    split_seed: int = 0,
) -> CrossModalDataset:
    """Generate the synthetic dataset; the same arguments always give the same bytes."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)).astype(np.float32)
    prototypes = rng.standard_normal((classes, latent)).astype(np.float32)
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    scores = z @ prototypes.T  # (n, classes)
    labels = (scores > 1.0).astype(np.uint8)
    empty = labels.sum(axis=1) == 0
    labels[np.flatnonzero(empty), scores[empty].argmax(axis=1)] = 1

    # image: two-layer random network with ReLU, plus noise (dense, non-negative like fc7)
    w1 = rng.standard_normal((latent, 256)).astype(np.float32) / np.sqrt(latent)
    w2 = rng.standard_normal((256, image_dim)).astype(np.float32) / np.sqrt(256)
    h = np.tanh(z @ w1 + 0.5 * noise * rng.standard_normal((n, 256)).astype(np.float32))
    image = np.maximum(h @ w2 + 0.5 * noise * rng.standard_normal((n, image_dim)).astype(np.float32), 0)

    # text: word rates from another non-linear view of z; Poisson counts, binarised (tag presence)
    v1 = rng.standard_normal((latent, text_dim)).astype(np.float32) / np.sqrt(latent)
    logits = 2.5 * (z @ v1) + 0.5 * noise * rng.standard_normal((n, text_dim)).astype(np.float32) - 3.0
    rates = 12.0 * np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    text = (rng.poisson(rates) > 0).astype(np.float32)
    no_word = text.sum(axis=1) == 0
    text[np.flatnonzero(no_word), logits[no_word].argmax(axis=1)] = 1.0

    split = random_split(n, n_query, n_train, seed=split_seed, protocol="random")
    return CrossModalDataset(
        name="synthetic",
        image=image.astype(np.float32),
        text=text,
        labels=labels,
        split=split,
        meta={"generator": "cmh.data.synthetic.make_synthetic", "seed": seed, "noise": noise},
    )
