"""The dataset type: paired image/text features, multi-hot labels and a train/query/database split.

Shapes and units
----------------
- ``image``: float32 ``(n, d_img)`` features (or ``None`` when only ``image_paths`` are known).
- ``text``: float32 ``(n, d_txt)``, dense ``np.ndarray`` or ``scipy.sparse.csr_matrix`` (bag of words).
- ``labels``: uint8 ``(n, c)`` multi-hot (single-label sets are one-hot); every row has >= 1 label.
- ``split``: :class:`Split` of int64 index arrays ``train``, ``query``, ``database``.

Everything is validated on construction (:meth:`CrossModalDataset.validate`) with one-line errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import scipy.sparse as sp

from cmh.errors import DataError

PARTS = ("train", "query", "database")


def to_dense(x: Any) -> np.ndarray:
    """Dense float32 array from a dense or scipy-sparse matrix."""
    if sp.issparse(x):
        return np.asarray(x.toarray(), dtype=np.float32)
    return np.asarray(x, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Split:
    """Index arrays (int64, into the dataset's rows) for the three parts, plus how they were made."""

    train: np.ndarray
    query: np.ndarray
    database: np.ndarray
    protocol: str = "custom"
    seed: int | None = None

    def check(self, n: int) -> None:
        for part in PARTS:
            idx = getattr(self, part)
            if idx.ndim != 1 or len(idx) == 0:
                raise DataError(
                    f"split part '{part}' is empty; every split needs train, query and database rows"
                )
            if idx.min() < 0 or idx.max() >= n:
                raise DataError(f"split part '{part}' indexes rows outside 0..{n - 1}; rebuild the split")
        if np.intersect1d(self.query, self.database).size:
            raise DataError(
                "query and database overlap; a retrieval split needs disjoint query and database rows"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "sizes": {p: int(len(getattr(self, p))) for p in PARTS},
        }


@dataclasses.dataclass(frozen=True)
class Pairs:
    """One part of a dataset: aligned rows of image features, text features and labels."""

    image: np.ndarray | None
    text: Any
    labels: np.ndarray | None
    image_paths: tuple[str, ...] | None = None

    def __len__(self) -> int:
        for x in (self.image, self.text, self.labels):
            if x is not None:
                return int(x.shape[0])
        return len(self.image_paths or ())


@dataclasses.dataclass(frozen=True)
class CrossModalDataset:
    """A paired image-text dataset with labels and a retrieval split (see module docstring)."""

    name: str
    image: np.ndarray | None
    text: Any
    labels: np.ndarray
    split: Split
    image_paths: tuple[str, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    def validate(self) -> None:
        """Check shapes, dtypes, finiteness, row counts and the split; raise :class:`DataError`."""
        labels = self.labels
        if not isinstance(labels, np.ndarray) or labels.ndim != 2:
            raise DataError(
                f"{self.name}: labels must be a 2-d (n, classes) multi-hot array, got shape "
                f"{getattr(labels, 'shape', None)}; convert class ids with cmh.data.one_hot"
            )
        n = labels.shape[0]
        if self.image is None and self.image_paths is None:
            raise DataError(f"{self.name}: the dataset has no image features and no image paths")
        for modality, x in (("image", self.image), ("text", self.text)):
            if x is None:
                if modality == "text":
                    raise DataError(f"{self.name}: the dataset has no text features")
                continue
            if x.ndim != 2:
                raise DataError(f"{self.name}: {modality} features must be 2-d (n, d), got shape {x.shape}")
            if x.shape[0] != n:
                raise DataError(
                    f"{self.name}: {modality} features have {x.shape[0]} rows but labels have {n}; "
                    "rows must be aligned pairs"
                )
            values = x.data if sp.issparse(x) else x
            if not np.issubdtype(values.dtype, np.number):
                raise DataError(f"{self.name}: {modality} features must be numeric, got dtype {values.dtype}")
            if not np.all(np.isfinite(values)):
                bad = int(np.size(values) - np.isfinite(values).sum())
                raise DataError(
                    f"{self.name}: {modality} features contain {bad} NaN/inf values; clean or impute them first"
                )
        if self.image_paths is not None and len(self.image_paths) != n:
            raise DataError(f"{self.name}: {len(self.image_paths)} image paths but {n} label rows")
        if not np.all(np.isin(np.unique(labels), (0, 1))):
            raise DataError(
                f"{self.name}: labels must be multi-hot 0/1; convert class ids with cmh.data.one_hot"
            )
        empty = int((labels.sum(axis=1) == 0).sum())
        if empty:
            raise DataError(
                f"{self.name}: {empty} rows have no label; drop them (e.g. cmh.data.loaders.drop_unlabelled) first"
            )
        self.split.check(n)

    def part(self, name: str) -> Pairs:
        """The rows of one split part (``train``, ``query`` or ``database``) as :class:`Pairs`."""
        if name not in PARTS:
            raise DataError(f"unknown split part '{name}'; use one of {', '.join(PARTS)}")
        idx = getattr(self.split, name)
        return Pairs(
            image=None if self.image is None else self.image[idx],
            text=self.text[idx],
            labels=self.labels[idx],
            image_paths=None if self.image_paths is None else tuple(self.image_paths[i] for i in idx),
        )

    def with_split(self, split: Split) -> CrossModalDataset:
        """The same data under another split."""
        return dataclasses.replace(self, split=split)

    def content_hash(self) -> str:
        """A short sha256 over features, labels and split indices: two records agree iff the data did.

        Computed once per dataset (it is immutable): every planned run of ``cmh run``/``cmh sweep`` names its
        record with it before training."""
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            cached = self.__dict__["_content_hash"] = self._hash_content()
        return cached

    def _hash_content(self) -> str:
        h = hashlib.sha256()
        for x in (self.image, self.text, self.labels, *(getattr(self.split, p) for p in PARTS)):
            if x is None:
                h.update(b"none")
            elif sp.issparse(x):
                x = x.tocsr()
                for a in (x.data, x.indices, x.indptr):
                    h.update(np.ascontiguousarray(a).tobytes())
            else:
                h.update(str(x.shape).encode())
                h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """A summary dict for ``cmh data info`` and result records."""
        return {
            "name": self.name,
            "n": self.n,
            "image_dim": None if self.image is None else int(self.image.shape[1]),
            "text_dim": int(self.text.shape[1]),
            "text_sparse": bool(sp.issparse(self.text)),
            "classes": self.num_classes,
            "labels_per_item": float(self.labels.sum(axis=1).mean()),
            "split": self.split.to_dict(),
        }


def one_hot(class_ids: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Integer class ids (n,) -> uint8 one-hot (n, c)."""
    ids = np.asarray(class_ids).astype(np.int64).ravel()
    c = int(ids.max()) + 1 if num_classes is None else num_classes
    out = np.zeros((len(ids), c), dtype=np.uint8)
    out[np.arange(len(ids)), ids] = 1
    return out
