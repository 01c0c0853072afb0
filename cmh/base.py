"""The method interface every hashing method implements.

A method is created with ``bits``, ``seed``, ``device`` and config overrides, learns from the
training :class:`~cmh.data.Pairs` in :meth:`fit`, and maps each modality to ±1 codes::

    m = create_method("cvh", bits=32, seed=0)
    m.fit(dataset.part("train"))
    b_img = m.encode_image(dataset.part("query").image)   # (n, 32) int8 in {-1, +1}
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from cmh.config import build_config, config_to_dict
from cmh.errors import CMHError

MIN_BITS, MAX_BITS = 8, 256


@dataclasses.dataclass(frozen=True)
class EmptyConfig:
    """A method without options."""


def check_bits(bits: int) -> int:
    """Validate a code length (8..256)."""
    if (
        not isinstance(bits, (int, np.integer))
        or isinstance(bits, bool)
        or not MIN_BITS <= int(bits) <= MAX_BITS
    ):
        raise CMHError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}; e.g. --bits 32")
    return int(bits)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CMHError("--device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    return dev


def sign_codes(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """±1 int8 codes from real values; ``sign(0) = +1`` (the protocol's convention). Shape preserved."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return np.where(x >= 0, 1, -1).astype(np.int8)


def has_unified_codes(method: Any) -> bool:
    """Whether a method (instance or class) has ``encode_pair(image, text)``: one code per item from both
    views, the database codes of ``cmh run --database unified``."""
    return callable(getattr(method, "encode_pair", None))


class HashMethod(ABC):
    """Base class for cross-modal hashing methods.

    Subclasses set the class attributes below, define a frozen dataclass ``Config`` whose defaults are
    the paper's values (cite them in the class docstring), and implement :meth:`fit`,
    :meth:`encode_image` and :meth:`encode_text`.
    """

    name: ClassVar[str] = "?"  # set by @register_method
    kind: ClassVar[Literal["shallow", "deep"]] = "shallow"
    supervised: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ("image", "text")  # plus "labels" when supervised
    paper: ClassVar[str] = ""
    Config: ClassVar[type] = EmptyConfig
    #: Config overrides under which ``fit`` takes seconds and still learns on ~1,000 small synthetic pairs
    #: (e.g. ``{"epochs": 20, "batch_size": 32}``); the shared behavioural tests (tests/test_methods_common.py)
    #: train every registered method, plugins included, with them. Options absent here keep their defaults,
    #: except ``verbose`` (off) and, for the tests that do not measure learning, ``epochs`` (at most 2).
    test_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, seed: int = 0, device: str | torch.device = "cpu", **config: Any) -> None:
        self.bits = check_bits(bits)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.cfg = build_config(self.Config, config)
        self.fitted = False

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Any) -> HashMethod:
        """Learn from ``train`` (:class:`cmh.data.Pairs`: image (n, d_img), text (n, d_txt), labels (n, c))."""

    @abstractmethod
    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """Image features (n, d_img) -> ±1 int8 codes (n, bits)."""

    @abstractmethod
    def encode_text(self, text: Any) -> np.ndarray:
        """Text features (n, d_txt), dense or scipy-sparse -> ±1 int8 codes (n, bits)."""

    # -- shared helpers ------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The resolved configuration as a plain dict (stored in every result record)."""
        return config_to_dict(self.cfg)

    def rng(self) -> np.random.Generator:
        """A NumPy generator seeded from the method's seed."""
        return np.random.default_rng(self.seed)

    def check_fitted(self) -> None:
        if not self.fitted:
            raise CMHError(f"{self.name}: call fit() before encoding")

    def check_train(self, train: Any) -> None:
        """Fail clearly when a supervised method gets no labels, or a modality is missing, has no columns,
        is all zero or is the same for every row (:func:`cmh.baselines._common.check_features`)."""
        from cmh.baselines._common import check_features  # lazy: cmh.baselines imports this module

        if self.supervised and getattr(train, "labels", None) is None:
            raise CMHError(f"{self.name} is supervised and needs labels; the training data has none")
        for modality in ("image", "text"):
            if modality in self.inputs:
                check_features(self.name, getattr(train, modality, None), modality)

    def image_input(self, pairs: Any) -> Any:
        """What ``fit``/``encode_image`` take from a part of a dataset: its image features (n, d_img).
        Methods that read the images themselves (deep methods with ``image_backbone``) return the paths."""
        return pairs.image

    def check_dim(self, x: Any, expected: int, modality: str) -> None:
        """Fail clearly when encode() gets features of another width than fit() saw."""
        if x.ndim != 2 or x.shape[1] != expected:
            raise CMHError(
                f"{self.name}: {modality} features have shape {tuple(x.shape)} but the method was fitted "
                f"on {expected}-d {modality} features; encode features made the same way as the training ones"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, seed={self.seed}, {self.config_dict()})"
