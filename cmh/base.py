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

from cmh.config import build_config, check_seed, config_to_dict
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
    """``auto`` -> CUDA when available, else CPU; otherwise ``cpu``, ``cuda[:N]`` or ``mps`` that this machine
    has (anything else, or a GPU it lacks, is a one-line :class:`CMHError`)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise CMHError(f"unknown device '{device}'; use --device auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CMHError("--device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CMHError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
            f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1}); pick one of them"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CMHError("--device mps was requested but MPS is not available; use --device cpu or auto")
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


def _canon(config: dict[str, Any]) -> str:
    import json

    return json.dumps(config, sort_keys=True, default=str)


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
        self.seed = check_seed(seed)
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

    def constant_bits(self, train: Any) -> np.ndarray:
        """Indices of the bits that are the same for every training image or every training text (they do
        not affect the Hamming ranking); ``train`` is the :class:`cmh.data.Pairs` the method was fitted on."""
        const = np.zeros(self.bits, dtype=bool)
        for codes in (self.encode_image(self.image_input(train)), self.encode_text(train.text)):
            const |= np.all(codes == codes[:1], axis=0)
        return np.flatnonzero(const)

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

    # -- state (saved models) ----------------------------------------------------------------
    #: attributes set by ``__init__`` from the constructor's arguments, not learned by ``fit``
    _construction_attrs: ClassVar[frozenset[str]] = frozenset({"bits", "seed", "device", "cfg"})

    def state_dict(self) -> dict[str, Any]:
        """The fitted state as plain tensors/numbers/strings (``torch.load(weights_only=True)`` reads it).

        The default stores every instance attribute except the constructor's (``bits``, ``seed``,
        ``device``, ``cfg``) through :func:`cmh.models.pack_state`; a method whose fitted state holds other
        objects overrides this and :meth:`load_state_dict`. Used by :func:`cmh.models.save_model`.
        """
        from cmh.models import SHALLOW_FORMAT, pack_state

        self.check_fitted()
        attrs = {k: v for k, v in vars(self).items() if k not in self._construction_attrs}
        return {
            "format": SHALLOW_FORMAT,
            "method": self.name,
            "bits": self.bits,
            "config": self.config_dict(),
            "attrs": {k: pack_state(v, f"{self.name}.{k}") for k, v in attrs.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> HashMethod:
        """Restore a state written by :meth:`state_dict` (same method, bits and config)."""
        from cmh.models import SHALLOW_FORMAT, unpack_state

        if not isinstance(state, dict) or state.get("format") != SHALLOW_FORMAT:
            raise CMHError(
                f"{self.name}: not a saved state of a shallow cmh method (format {SHALLOW_FORMAT})"
            )
        if state.get("method") != self.name or int(state.get("bits", -1)) != self.bits:
            raise CMHError(
                f"the state holds a {state.get('method')} model with {state.get('bits')} bits, not {self.name} "
                f"with {self.bits} bits; create the method with the saved name and bits"
            )
        if _canon(state.get("config", {})) != _canon(self.config_dict()):
            raise CMHError(
                f"{self.name}: the saved state was fitted with other options; use the saved config"
            )
        for k, v in state["attrs"].items():
            setattr(self, k, unpack_state(v))
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, seed={self.seed}, {self.config_dict()})"
