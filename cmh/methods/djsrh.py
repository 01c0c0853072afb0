"""DJSRH: Deep Joint-Semantics Reconstructing Hashing (Su, Zhong & Zhang, ICCV 2019), feature mode, unsupervised.

No labels are used in training (``supervised = False``): the similarity the codes learn comes from the
features themselves.

Networks: ImgNet = the paper's hash layer on the VGG-19 fc7 feature, i.e. a linear map ``x -> K`` of the
given (standardised) image feature; TxtNet = ``BoW -> 4096 (ReLU) -> K`` (the paper's text MLP). The
hash outputs are ``B = tanh(α H)`` with ``α = √(epoch + 1)`` (the authors' code: a tanh that sharpens
towards sign as training proceeds); codes are ``sign(H)``.

Joint-semantics affinity (§3.2) of a batch of ``m`` pairs, from the *input* features as given (before
cmh's standardisation of the networks' inputs: cosines of non-negative fc7 / bag-of-words vectors lie in
[0, 1] as in the paper; :func:`cmh.methods._losses.joint_semantics`): ``S̃ = β cos(F_I) + (1 - β) cos(F_T)``,
``S = (1 - η) S̃ + η S̃ S̃ᵀ / m`` (the second-order term), target ``μ S``.

Reconstruction loss (§3.3), code similarities as cosines of the batch's outputs::

    min ‖μS - cos(B_I, B_T)‖² + λ1 ‖μS - cos(B_I, B_I)‖² + λ2 ‖μS - cos(B_T, B_T)‖²

(mean squared errors over the ``m × m`` entries). Both networks are updated on every batch.

Defaults — the paper's / authors' settings for MIRFLICKR-25K: ``β = 0.6``, ``η = 0.4``, ``μ = 1.5``,
``λ1 = λ2 = 0.1``, SGD with momentum 0.9 and weight decay 5e-4, learning rates 1e-3 (ImgNet) and 1e-2
(TxtNet), batch 32 is the paper's, 128 the code's (cmh: 128). The paper trains 80 epochs on MIRFLICKR;
cmh's default is 50 (the small data sets here converge earlier; ``--set epochs=80`` for the paper).

Honest note: the image network in the paper is VGG-19 fine-tuned end to end from pixels; in cmh only its last
(hash) layer is learnt, on a fixed image feature (``img_hidden`` adds a ReLU layer under it). Training from
pixels (``image_backbone``) is refused: the affinity needs the image features themselves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from cmh.methods._losses import code_alignment, joint_semantics
from cmh.methods._nets import mlp
from cmh.methods._train import DeepConfig, DeepHashMethod, EpochContext
from cmh.registry import register_method


@dataclasses.dataclass(frozen=True)
class DJSRHConfig(DeepConfig):
    """DJSRH options (paper/authors' values in the module docstring)."""

    epochs: int = 50
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 1e-3  # ImgNet
    lr_txt: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    beta: float = 0.6
    eta: float = 0.4
    mu: float = 1.5
    lambda1: float = 0.1
    lambda2: float = 0.1
    txt_hidden: int = 4096
    img_hidden: int = 0  # > 0: a ReLU hidden layer under the image hash layer (feature mode only)


@register_method("djsrh")
class DJSRH(DeepHashMethod):
    """Deep Joint-Semantics Reconstructing Hashing (Su et al., ICCV 2019), unsupervised (module docstring)."""

    #: unit tests: small networks and batches, the epochs its learning test needs (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {
        "txt_hidden": 256,
        "optimizer": "adam",
        "img_hidden": 128,
        "batch_size": 32,
        "epochs": 8,
    }
    paper: ClassVar[str] = (
        "S. Su, Z. Zhong, C. Zhang. Deep Joint-Semantics Reconstructing Hashing for Large-Scale Unsupervised "
        "Cross-Modal Retrieval. ICCV 2019."
    )
    supervised: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ("image", "text")
    pixels: ClassVar[bool] = False  # the affinity is computed from the image features
    Config: ClassVar[type] = DJSRHConfig

    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        k, cfg = self.bits, self.cfg
        img = (dims["image"], cfg.img_hidden, k) if cfg.img_hidden > 0 else (dims["image"], k)
        return {"img": mlp(img), "txt": mlp((dims["text"], cfg.txt_hidden, k))}

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {name: self._optimizer(nets[name].parameters(), lr) for name, lr in self._lrs().items()}

    def _lrs(self) -> dict[str, float]:
        return {"img": self.cfg.lr, "txt": self.cfg.lr_txt}

    def _optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        """SGD with momentum and weight decay (the paper's), or Adam at the same rate."""
        cfg = self.cfg
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets["img" if modality == "image" else "txt"](x)

    def _raw(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The features as given (the affinity is computed before standardisation: cosines of fc7 / BoW)."""
        if f"{modality}_mean" in self.norm:
            return x * self.norm[f"{modality}_std"] + self.norm[f"{modality}_mean"]
        return x

    @staticmethod
    def _alpha(epoch: int) -> float:
        """Sharpness of ``tanh(α H)`` in epoch ``epoch`` (0-based): ``√(epoch + 1)``."""
        return math.sqrt(epoch + 1.0)

    def _alignment(
        self, s: torch.Tensor, x_i: torch.Tensor, x_t: torch.Tensor, b_i: torch.Tensor, b_t: torch.Tensor
    ) -> torch.Tensor:
        """``‖S - cos(B_I, B_T)‖² + λ1 ‖S - cos(B_I, B_I)‖² + λ2 ‖S - cos(B_T, B_T)‖²`` (means); ``S`` is the
        batch's target (m, m), ``x_*`` its features, ``b_*`` its relaxed codes (m, K)."""
        cfg = self.cfg
        return (
            code_alignment(s, b_i, b_t)
            + cfg.lambda1 * code_alignment(s, b_i)
            + cfg.lambda2 * code_alignment(s, b_t)
        )

    def _extra_loss(
        self, ctx: EpochContext, x_i: torch.Tensor, x_t: torch.Tensor, b_i: torch.Tensor, b_t: torch.Tensor
    ) -> torch.Tensor | None:
        """Hook for subclasses (DSAH adds its reconstruction term); DJSRH has none."""
        return None

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        cfg, data, nets, opts = self.cfg, ctx.data, self.nets, self.optims
        alpha = self._alpha(epoch)
        for idx in ctx.batches():
            if idx.numel() < 2:
                continue
            x_i, x_t = data.image[idx], data.text[idx]
            r_i, r_t = self._raw("image", x_i), self._raw("text", x_t)
            s = joint_semantics(r_i, r_t, cfg.beta, cfg.eta, cfg.mu)
            with ctx.autocast():
                h_i, h_t = nets["img"](x_i), nets["txt"](x_t)
            b_i, b_t = torch.tanh(alpha * h_i.float()), torch.tanh(alpha * h_t.float())
            loss = self._alignment(s, r_i, r_t, b_i, b_t)
            ctx.log("align", loss)
            extra = self._extra_loss(ctx, x_i, x_t, b_i, b_t)
            if extra is not None:
                loss = loss + extra
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts.values():
                o.step()
            ctx.log("loss", loss)
