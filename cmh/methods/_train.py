"""The training loop shared by cmh's deep methods (SSAH, DCMH, ...).

A deep method subclasses :class:`DeepHashMethod` and implements four hooks:

- ``_build_nets(dims) -> dict[str, nn.Module]`` — the networks, from ``dims = {"image", "text", "classes"}``;
- ``_build_optimizers(nets) -> dict[str, Optimizer]``;
- ``_init_buffers(data, gen) -> dict[str, Tensor]`` — training state that is not a parameter (the code
  matrix ``B``, per-item output banks, ...);
- ``_train_epoch(epoch, ctx)`` — one epoch of the method's alternating optimisation; it draws batches
  from ``ctx.batches()``, reports each loss with ``ctx.log(name, value)`` and runs forward passes inside
  ``ctx.autocast()``;
- ``_codes(modality, x) -> Tensor`` — real-valued hash outputs of one modality's net (codes are their sign);
- optionally ``_lr_factor(epoch)`` (a per-epoch learning-rate multiplier applied to every optimiser's
  initial rates).

The base class provides everything else (:meth:`DeepHashMethod.fit`):

- **Seeds.** Network initialisation uses ``torch.manual_seed(seed)``; every random draw during training
  (batch order, bank initialisation) comes from one ``torch.Generator`` owned by the run, so a run is
  bitwise reproducible on CPU for a fixed seed (``torch.use_deterministic_algorithms(True)`` is switched on
  for the duration of ``fit`` and restored afterwards).
- **Device and precision.** The method's ``device`` (``auto`` -> CUDA when present); mixed precision
  (``torch.autocast``, bfloat16) on CUDA only, when ``amp=True``. Losses are computed in float32.
- **Feature normalisation.** Each modality is standardised with the training mean and standard deviation
  (``image_norm`` / ``text_norm`` = ``"standardize"``, or ``"none"``); the statistics are part of the state.
- **Progress.** A rich progress bar (epoch, losses, elapsed time) on a terminal when ``verbose=True``;
  quiet otherwise (no output at all when stderr is not a TTY).
- **Checkpoints and resume.** With ``checkpoint_dir`` set, the full state (networks, optimisers, buffers,
  epoch, RNG states, method, bits, config, data fingerprint, early-stopping state) is written atomically
  after every epoch to ``<checkpoint_dir>/<method>-<bits>bits-seed<seed>-<data hash>.pt``. With
  ``resume=True`` a later ``fit`` on the same data continues from it and reaches exactly the result of an
  uninterrupted run. ``epochs`` may be raised on resume; other training options must match.
- **NaN/inf guard.** A non-finite loss stops training with a one-line :class:`~cmh.errors.CMHError`
  naming the loss and suggesting a lower learning rate.
- **Early stopping.** With ``val_fraction > 0`` a seeded random part of the training pairs is held out;
  after each epoch the cross-modal mAP (mean of I->T and T->I, held-out queries against the remaining
  training items, :func:`cmh.metrics.evaluate`) is measured, the best epoch's networks are kept, and
  training stops after ``patience`` epochs without improvement.
- **Several processes.** Under ``torchrun`` (or any initialised ``torch.distributed`` process group) the
  loop trains data-parallel with the single-process objective: each rank runs the networks on its slice of
  every batch, outputs are all-gathered so the banks stay identical, gradients are averaged at the end of
  every backward pass, rank 0 alone writes checkpoints (:mod:`cmh.methods._dist`; no per-method code).
- **State.** :meth:`~DeepHashMethod.state_dict` / :meth:`~DeepHashMethod.load_state_dict` (and
  :meth:`~DeepHashMethod.save` / :meth:`~DeepHashMethod.load`) store what is needed to encode later.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from cmh._atomic import atomic_torch_save, read_torch_file
from cmh.base import HashMethod, sign_codes
from cmh.errors import CMHError, UninformativeBitsWarning
from cmh.methods import _dist

FORMAT = "cmh-deep-v1"
#: Options that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = frozenset({"epochs", "resume", "verbose", "checkpoint_dir", "patience", "image_workers"})
ENCODE_BATCH = 2048


@dataclasses.dataclass(frozen=True)
class DeepConfig:
    """Options every deep method shares (subclasses override the defaults)."""

    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 128
    image_norm: Literal["standardize", "none"] = "standardize"
    text_norm: Literal["standardize", "none"] = "standardize"
    val_fraction: float = 0.0
    patience: int = 5
    amp: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    verbose: bool = True
    #: raw-image mode (cmh/methods/_image_backbone.py): a backbone fine-tuned under the image head
    image_backbone: str | None = None
    backbone_weights: str | None = None
    backbone_lr: float = 0.1
    image_size: int = 224
    image_workers: int = 0


@dataclasses.dataclass
class TrainData:
    """Training tensors on the method's device: image (n, d_img), text (n, d_txt), labels (n, c) float32."""

    image: torch.Tensor
    text: torch.Tensor
    labels: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def similarity(self, idx: torch.Tensor) -> torch.Tensor:
        """``S`` between every training item (rows) and the items ``idx`` (columns): 1 when they share a
        label, else 0; float32 ``(n, len(idx))``."""
        return (self.labels @ self.labels[idx].T > 0).float()


class EpochContext:
    """What :meth:`DeepHashMethod._train_epoch` gets: batches, loss logging, autocast, the generator."""

    def __init__(self, method: DeepHashMethod, data: TrainData, gen: torch.Generator) -> None:
        self.method = method
        self.data = data
        self.gen = gen
        self.device = method.device
        self.losses: dict[str, list[torch.Tensor]] = {}
        self._amp = method.device.type == "cuda" and bool(method.cfg.amp)

    def batches(self) -> Iterator[torch.Tensor]:
        """Index tensors (on the device) of a fresh random permutation, ``batch_size`` at a time."""
        n, b = self.data.n, int(self.method.cfg.batch_size)
        perm = torch.randperm(n, generator=self.gen)
        for start in range(0, n, b):
            yield perm[start : start + b].to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision (bfloat16) on CUDA when ``amp`` is on; a no-op on CPU."""
        if self._amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def log(self, name: str, value: torch.Tensor) -> None:
        """Record one batch's value of loss ``name``; a NaN/inf stops training with a CMHError."""
        v = value.detach().float()
        if self.device.type == "cpu":  # free on CPU; on GPU checked once per epoch (no per-step sync)
            _check_finite(self.method, name, v)
        self.losses.setdefault(name, []).append(v)

    def summary(self) -> dict[str, float]:
        """Mean of every logged loss over the epoch (raises on NaN/inf)."""
        out = {}
        for name, values in self.losses.items():
            mean = torch.stack(values).mean()
            _check_finite(self.method, name, mean)
            out[name] = float(mean)
        return out


def _check_finite(method: HashMethod, name: str, value: torch.Tensor) -> None:
    if not bool(torch.isfinite(value).all()):
        lr = getattr(method, "hp", {}).get("lr") or getattr(method.cfg, "lr", None) or 1e-3
        raise CMHError(
            f"{method.name}: loss '{name}' became NaN/inf during training; lower the learning rate "
            f"(e.g. --set lr={float(lr) / 10:g}) or check the input features"
        )


def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    if sp.issparse(x):
        x = x.toarray()
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


def _fingerprint(image: Any, text: Any, labels: np.ndarray) -> str:
    """A short hash of the training data (shapes, labels, a strided sample of the features; image paths in
    raw-image mode)."""
    h = hashlib.sha1()
    n = labels.shape[0]
    rows = np.arange(0, n, max(1, n // 256))
    if isinstance(image, (tuple, list)):
        h.update("\n".join(map(str, image)).encode())
        image = np.zeros((n, 0), np.float32)
    for x in (image, text, labels):
        h.update(str(tuple(x.shape)).encode())
        sample = x[rows]
        sample = sample.toarray() if sp.issparse(sample) else np.asarray(sample)
        h.update(np.ascontiguousarray(sample, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return h.hexdigest()[:12]


class DeepHashMethod(HashMethod):
    """Base class of cmh's deep methods: the shared loop, checkpoints and state (see module docstring)."""

    kind: ClassVar[Literal["shallow", "deep"]] = "deep"
    #: key of the image network in ``nets`` (wrapped under a backbone in raw-image mode)
    image_net: ClassVar[str] = "img"
    supervised: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ("image", "text", "labels")
    Config: ClassVar[type] = DeepConfig
    #: keys of ``nets`` that run whole on every rank in distributed training (not one row per input row)
    unsharded_nets: ClassVar[tuple[str, ...]] = ()
    #: whether ``image_backbone`` (training from pixels) is supported; ``False`` for methods whose losses need
    #: the image *features* themselves (e.g. DJSRH's affinity)
    pixels: ClassVar[bool] = True

    def __init__(self, bits: int, seed: int = 0, device: str | torch.device = "cpu", **config: Any) -> None:
        super().__init__(bits=bits, seed=seed, device=device, **config)
        cfg = (
            self.cfg
        )  # (epochs, batch_size, lr, ... ranges: cmh.config.RANGE_RULES, checked in build_config)
        if cfg.image_backbone and not self.pixels:
            raise CMHError(
                f"{self.name} trains on image features only (its loss uses them); drop image_backbone and "
                "pass features (`cmh extract` makes them)"
            )
        if not 0.0 <= cfg.val_fraction < 0.5:
            raise CMHError(f"{self.name}: val_fraction must be in [0, 0.5), got {cfg.val_fraction}")
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.dims: dict[str, int] = {}
        self.norm: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, Any]] = []
        self.epochs_done = 0
        self.best_epoch: int | None = None
        self.total_epochs: int | None = None
        #: Optional ``callback(method, record)`` after every epoch (e.g. a benchmark measuring mAP per epoch);
        #: the networks are in training mode again when it returns.
        self.on_epoch_end: Callable[[DeepHashMethod, dict[str, Any]], None] | None = None

    # -- hooks ------------------------------------------------------------------------------------
    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _init_buffers(self, data: TrainData, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        raise NotImplementedError

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _lr_factor(self, epoch: int) -> float:
        return 1.0

    def _resolve_epochs(self, n_train: int) -> int:
        """The number of epochs to train for ``n_train`` pairs (``cfg.epochs`` unless a method derives it)."""
        return int(self.cfg.epochs)

    # -- data -------------------------------------------------------------------------------------
    @property
    def raw_images(self) -> bool:
        """True when the image network starts from pixels (``image_backbone`` set)."""
        return bool(self.cfg.image_backbone)

    def image_input(self, pairs: Any) -> Any:
        """Image features (n, d_img), or the image paths in raw-image mode."""
        if not self.raw_images:
            return super().image_input(pairs)
        if getattr(pairs, "image_paths", None) is None:
            raise CMHError(
                f"{self.name}: image_backbone={self.cfg.image_backbone} trains on the images themselves, "
                "but this dataset has no image paths; use a YAML spec with image_paths (docs/data.md)"
            )
        return pairs.image_paths

    def check_train(self, train: Any) -> None:
        if not self.raw_images:
            return super().check_train(train)
        self.image_input(train)
        if (self.supervised and getattr(train, "labels", None) is None) or getattr(
            train, "text", None
        ) is None:
            raise CMHError(f"{self.name} needs labels and text features; the training data lacks them")

    def _backbone(self, for_loading: bool = False) -> Any:
        from cmh.methods._image_backbone import build_image_backbone

        return build_image_backbone(
            self.cfg.image_backbone,
            self.cfg.backbone_weights,
            int(self.cfg.image_size),
            for_loading=for_loading,
        )

    def _wrap_image_net(self, backbone: Any) -> None:
        from cmh.methods._image_backbone import BackboneNet

        self.nets[self.image_net] = BackboneNet(backbone, self.nets[self.image_net]).to(self.device)

    def _fit_norm(self, image: torch.Tensor, text: torch.Tensor) -> None:
        for modality, x in (("image", image), ("text", text)):
            if modality == "image" and self.raw_images:
                continue  # pixels: the backbone normalises its input
            if getattr(self.cfg, f"{modality}_norm") == "standardize":
                mean = x.mean(dim=0)
                std = x.std(dim=0, unbiased=False)
                self.norm[f"{modality}_mean"] = mean
                self.norm[f"{modality}_std"] = torch.where(std > 1e-8, std, torch.ones_like(std))

    def _normalize(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        if f"{modality}_mean" in self.norm:
            return (x - self.norm[f"{modality}_mean"]) / self.norm[f"{modality}_std"]
        return x

    def _encode(self, modality: str, x: Any) -> np.ndarray:
        self.check_fitted()
        raw = modality == "image" and self.raw_images
        if raw:
            from cmh.methods._image_backbone import ENCODE_CHUNK, load_images

            backbone, x, step = self.nets[self.image_net].backbone, list(x), ENCODE_CHUNK
        else:
            self.check_dim(x, self.dims[modality], modality)
            step = ENCODE_BATCH
        for net in self.nets.values():
            net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x) if raw else x.shape[0], step):
                if raw:
                    chunk = load_images(
                        x[start : start + step], backbone, self.cfg.image_workers, f"{self.name}: "
                    ).to(self.device)
                else:
                    chunk = _as_tensor(x[start : start + step], self.device)
                out.append(self._codes(modality, self._normalize(modality, chunk)).float().cpu())
        if not out:
            return np.zeros((0, self.bits), dtype=np.int8)
        return sign_codes(torch.cat(out))

    def encode_image(self, image: Any) -> np.ndarray:
        """Image features (n, d_img) (or image paths in raw-image mode) -> ±1 int8 codes (n, bits)."""
        return self._encode("image", image)

    def encode_text(self, text: Any) -> np.ndarray:
        """Text features (n, d_txt), dense or sparse -> ±1 int8 codes (n, bits) from the text network."""
        return self._encode("text", text)

    # -- training ---------------------------------------------------------------------------------
    def checkpoint_path(self, fingerprint: str) -> Path | None:
        """Where this run's checkpoint lives (``None`` without ``checkpoint_dir``)."""
        if not self.cfg.checkpoint_dir:
            return None
        return Path(self.cfg.checkpoint_dir) / f"{self.name}-{self.bits}bits-seed{self.seed}-{fingerprint}.pt"

    def fit(self, train: Any) -> DeepHashMethod:
        """Train on ``train`` (:class:`cmh.data.Pairs` with image (n, d_img), text (n, d_txt), labels (n, c))."""
        self.check_train(train)
        labels_np = self._train_labels(train)
        if labels_np.ndim != 2 or len(labels_np) < 2:
            raise CMHError(f"{self.name}: labels must be a (n, classes) multi-hot array with n >= 2")
        fingerprint = _fingerprint(self.image_input(train), train.text, labels_np)
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            self._fit(train, labels_np, fingerprint)
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        if not self.raw_images:  # (pixels would mean another pass of the backbone over the training set)
            self._warn_constant_bits(train)
        return self

    def _warn_constant_bits(self, train: Any) -> None:
        """Warn (never silently) when bits come out constant over the training images or texts, as they do
        for an under-trained network; ``constant_bits_`` lists them."""
        self.constant_bits_ = self.constant_bits(train)
        if len(self.constant_bits_):
            warnings.warn(
                f"{self.name}: {len(self.constant_bits_)} of the {self.bits} bits are constant over the training "
                f"images or texts after {self.epochs_done} epochs, so they do not affect the ranking; "
                "train longer (--set epochs=...) or use fewer bits",
                UninformativeBitsWarning,
                stacklevel=3,
            )

    def _train_labels(self, train: Any) -> np.ndarray:
        """The labels training may use: ``train.labels`` for a supervised method; an empty ``(n, 0)`` array
        for an unsupervised one (``supervised = False``), which never sees labels, present or not."""
        if self.supervised:
            return np.asarray(train.labels)
        if self.cfg.val_fraction > 0:
            raise CMHError(
                f"{self.name} is unsupervised and early stopping scores held-out pairs by their labels; "
                "leave val_fraction=0"
            )
        return np.zeros((int(train.text.shape[0]), 0), dtype=np.uint8)

    def _fit(self, train: Any, labels_np: np.ndarray, fingerprint: str) -> DeepHashMethod:
        cfg, dev = self.cfg, self.device
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy API
        torch.manual_seed(self.seed)
        backbone = None
        if self.raw_images:
            from cmh.methods._image_backbone import load_images

            backbone = self._backbone()
            image = load_images(train.image_paths, backbone, cfg.image_workers, f"{self.name}: ").to(dev)
        else:
            image = _as_tensor(train.image, dev)
        text = _as_tensor(train.text, dev)
        labels = torch.as_tensor(labels_np.astype(np.float32), device=dev)
        image_dim = backbone.feature_dim if backbone is not None else int(image.shape[1])
        self.dims = {"image": int(image_dim), "text": int(text.shape[1]), "classes": int(labels.shape[1])}

        # held-out part for early stopping (seeded; the same on resume)
        n = labels.shape[0]
        val_idx = None
        if cfg.val_fraction > 0:
            split_gen = torch.Generator().manual_seed(self.seed + 7919)
            perm = torch.randperm(n, generator=split_gen)
            n_val = max(1, int(round(cfg.val_fraction * n)))
            if n - n_val < 2:
                raise CMHError(f"{self.name}: val_fraction={cfg.val_fraction} leaves too few training pairs")
            val_idx, fit_idx = perm[:n_val].to(dev), perm[n_val:].to(dev)
            val = TrainData(image[val_idx], text[val_idx], labels[val_idx])
            image, text, labels = image[fit_idx], text[fit_idx], labels[fit_idx]

        self.norm = {}
        self._fit_norm(image, text)
        data = TrainData(self._normalize("image", image), self._normalize("text", text), labels)
        if val_idx is not None:
            val = TrainData(
                self._normalize("image", val.image), self._normalize("text", val.text), val.labels
            )

        torch.manual_seed(self.seed)
        self.nets = {k: v.to(dev) for k, v in self._build_nets(self.dims).items()}
        if backbone is not None:
            from cmh.methods._image_backbone import backbone_param_groups

            self._wrap_image_net(backbone)
        self.optims = self._build_optimizers(self.nets)
        if backbone is not None:
            for o in self.optims.values():
                backbone_param_groups(o, backbone, float(cfg.backbone_lr))
        base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.optims.items()}
        gen = torch.Generator().manual_seed(self.seed)
        self.buffers = {k: v.to(dev) for k, v in self._init_buffers(data, gen).items()}
        self.history, self.epochs_done = [], 0
        self.total_epochs = self._resolve_epochs(data.n)
        best: dict[str, Any] = {"score": -math.inf, "epoch": -1, "nets": None, "bad": 0}

        path = self.checkpoint_path(fingerprint)
        if path is not None and cfg.resume and path.is_file():
            state = _load_file(path)
            self._check_compatible(state, path)
            if state.get("fingerprint") != fingerprint:
                raise CMHError(
                    f"{self.name}: checkpoint {path} was made on other training data; delete it or use another "
                    "checkpoint_dir"
                )
            for (
                k,
                net,
            ) in self.nets.items():  # into the existing modules: the optimisers hold their parameters
                net.load_state_dict(state["nets"][k])
            tr = state["train"]
            for k, o in self.optims.items():
                o.load_state_dict(tr["optims"][k])
            self.buffers = {k: v.to(dev) for k, v in tr["buffers"].items()}
            gen.set_state(tr["rng"]["generator"])
            torch.set_rng_state(tr["rng"]["torch"])
            if int(tr["epoch"]) > self.total_epochs:
                raise CMHError(
                    f"{self.name}: checkpoint {path} holds {int(tr['epoch'])} trained epochs, more than "
                    f"epochs={self.total_epochs}; set epochs >= {int(tr['epoch'])} or delete the checkpoint"
                )
            self.history = list(tr["history"])
            self.epochs_done = int(tr["epoch"])
            best = dict(tr["best"])
            if best.get("nets") is not None:
                best["nets"] = {k: {n_: t.to(dev) for n_, t in sd.items()} for k, sd in best["nets"].items()}

        ranks = _dist.Trainer(self)  # data-parallel over torchrun's ranks; a no-op in one process
        ranks.start(fingerprint)
        show = cfg.verbose and sys.stderr.isatty() and _dist.is_writer()
        progress = _Progress(self, total=self.total_epochs) if show else None
        try:
            if progress:
                progress.start(self.epochs_done)
            for epoch in range(self.epochs_done, self.total_epochs):
                if best["bad"] >= cfg.patience and val_idx is not None:
                    break
                factor = self._lr_factor(epoch)
                for k, o in self.optims.items():
                    for g, lr0 in zip(o.param_groups, base_lrs[k], strict=True):
                        g["lr"] = lr0 * factor
                for net in self.nets.values():
                    net.train()
                t0 = time.perf_counter()
                ctx = EpochContext(self, data, gen)
                with ranks.sharded():
                    self._train_epoch(epoch, ctx)
                record: dict[str, Any] = {"epoch": epoch + 1, **ctx.summary()}
                record["seconds"] = round(time.perf_counter() - t0, 3)
                if val_idx is not None:
                    score = self._validate(data, val)
                    record["val_map"] = score
                    if score > best["score"]:
                        best = {
                            "score": score,
                            "epoch": epoch + 1,
                            "bad": 0,
                            "nets": {k: copy.deepcopy(v.state_dict()) for k, v in self.nets.items()},
                        }
                    else:
                        best["bad"] += 1
                self.history.append(record)
                self.epochs_done = epoch + 1
                if path is not None and _dist.is_writer():
                    self._save_checkpoint(path, fingerprint, gen, best)
                if progress:
                    progress.update(record)
                if self.on_epoch_end is not None:
                    was_fitted, self.fitted = self.fitted, True  # the callback may encode
                    self.on_epoch_end(self, record)
                    self.fitted = was_fitted
                    for net in self.nets.values():
                        net.train()
        finally:
            ranks.close()
            if progress:
                progress.stop()
        if val_idx is not None and best.get("nets") is not None:
            for k, sd in best["nets"].items():
                self.nets[k].load_state_dict(sd)
            self.best_epoch = int(best["epoch"])
        self.fitted = True
        for net in self.nets.values():
            net.eval()
        return self

    def _validate(self, data: TrainData, val: TrainData) -> float:
        """Mean of I->T and T->I mAP of held-out queries against the training items (own networks)."""
        from cmh.metrics import evaluate

        step = 256 if self.raw_images else sys.maxsize  # pixels: bounded backbone batches; features: one pass
        for net in self.nets.values():
            net.eval()
        with torch.no_grad():
            codes = {
                (part, m): sign_codes(
                    torch.cat([self._codes(m, x).float() for x in getattr(d, m).split(step)])
                )
                for part, d in (("val", val), ("train", data))
                for m in ("image", "text")
            }
        vl, tl = val.labels.cpu().numpy().astype(np.uint8), data.labels.cpu().numpy().astype(np.uint8)
        i2t = evaluate(codes["val", "image"], codes["train", "text"], vl, tl)["map"]
        t2i = evaluate(codes["val", "text"], codes["train", "image"], vl, tl)["map"]
        for net in self.nets.values():
            net.train()
        return float((i2t + t2i) / 2)

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What is needed to encode later: method, bits, seed, config, dims, normalisation, weights."""
        self.check_fitted()
        return self._meta() | {"nets": {k: v.state_dict() for k, v in self.nets.items()}}

    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.name,
            "bits": self.bits,
            "seed": self.seed,
            "config": self.config_dict(),
            "dims": dict(self.dims),
            "norm": {k: v.detach().cpu() for k, v in self.norm.items()},
            "epochs_done": self.epochs_done,
            "history": list(self.history),
        }

    def _check_compatible(self, state: Any, source: Any = "state") -> None:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CMHError(f"{source} is not a cmh deep-method checkpoint (format {FORMAT})")
        if state.get("method") != self.name or int(state.get("bits", -1)) != self.bits:
            raise CMHError(
                f"{source} holds a {state.get('method')} model with {state.get('bits')} bits, not "
                f"{self.name} with {self.bits} bits; create the method with the checkpoint's name and bits"
            )
        mine, theirs = self.config_dict(), state.get("config", {})
        for key in sorted(set(mine) | set(theirs)):
            if key not in RESUMABLE_CHANGES and mine.get(key) != theirs.get(key):
                raise CMHError(
                    f"{source} was trained with {key}={theirs.get(key)!r}, this {self.name} has "
                    f"{key}={mine.get(key)!r}; use the same setting or another checkpoint"
                )

    def _load_nets(self, state: dict[str, Any]) -> None:
        self.dims = {k: int(v) for k, v in state["dims"].items()}
        self.norm = {k: v.to(self.device) for k, v in state["norm"].items()}
        torch.manual_seed(self.seed)
        self.nets = {k: v.to(self.device) for k, v in self._build_nets(self.dims).items()}
        if self.raw_images:
            self._wrap_image_net(self._backbone(for_loading=True))
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])

    def load_state_dict(self, state: dict[str, Any]) -> DeepHashMethod:
        """Restore a model saved by :meth:`state_dict` (or a training checkpoint) for encoding."""
        self._check_compatible(state)
        self._load_nets(state)
        self.epochs_done = int(state.get("epochs_done", state.get("train", {}).get("epoch", 0)))
        self.history = list(state.get("history", state.get("train", {}).get("history", [])))
        self.fitted = True
        for net in self.nets.values():
            net.eval()
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` (atomically)."""
        atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | os.PathLike[str]) -> DeepHashMethod:
        """Load a file written by :meth:`save` or a training checkpoint."""
        state = _load_file(Path(path))
        self._check_compatible(state, path)
        return self.load_state_dict(state)

    def _save_checkpoint(
        self, path: Path, fingerprint: str, gen: torch.Generator, best: dict[str, Any]
    ) -> None:
        state = self._meta() | {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "fingerprint": fingerprint,
            "train": {
                "epoch": self.epochs_done,
                "optims": {k: o.state_dict() for k, o in self.optims.items()},
                "buffers": {k: v.detach().cpu() for k, v in self.buffers.items()},
                "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
                "history": list(self.history),
                "best": best,
            },
        }
        atomic_torch_save(state, path)


def _load_file(path: Path) -> Any:
    return read_torch_file(
        path,
        missing=f"checkpoint '{path}' not found; pass the path of a file written by cmh",
        unreadable=f"cannot read checkpoint '{path}' ({{error}}); is it a cmh checkpoint?",
    )


class _Progress:
    """A rich progress bar over epochs showing the latest losses; only used on a terminal."""

    def __init__(self, method: HashMethod, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn(f"{method.name} {method.bits} bits"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[losses]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.total = total
        self.task: Any = None

    def start(self, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("epochs", total=self.total, completed=done, losses="")

    def update(self, record: dict[str, Any]) -> None:
        shown = {k: v for k, v in record.items() if k not in ("epoch", "seconds")}
        text = "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
        self.progress.update(self.task, completed=record["epoch"], losses=text)

    def stop(self) -> None:
        self.progress.stop()
