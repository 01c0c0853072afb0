"""DSAH: Deep Semantic-Alignment Hashing (Yang, Wu, Zhang, Zhang, Li & Wang, ICMR 2020), feature mode,
unsupervised.

DSAH builds on DJSRH (:mod:`cmh.methods.djsrh`, the authors' code starts from it) and changes two things:

1. **Semantic-alignment loss.** The similarities between features are aligned with those between codes,
   per relation: the cross-modal code similarity ``cos(B_I, B_T)`` with the fused affinity ``S`` of both
   modalities (the joint-semantics affinity with its second-order term, scaled by ``μ``), and each
   modality's own code similarity with that modality's feature similarity::

       L_sa = ‖μS - cos(B_I, B_T)‖² + λ1 ‖μ cos(F_I) - cos(B_I, B_I)‖² + λ2 ‖μ cos(F_T) - cos(B_T, B_T)‖²

2. **Cross-modal reconstruction.** Each modality's feature is reconstructed from the *other* modality's
   codes by a decoder ``K -> hidden (ReLU) -> d``: ``L_rec = ‖F_I - Dec_I(B_T)‖² + ‖F_T - Dec_T(B_I)‖²``
   (means over the batch and the feature dimensions; features are the standardised inputs), which pushes
   the codes of the two modalities to carry the same content.

Total: ``L_sa + γ L_rec``. No labels are used (``supervised = False``).

Reading of the paper: the full ICMR text was not available to us through our search tools; the losses above
follow the abstract and README ("aligns the similarities between features with those between hash codes";
"reconstruct features of one modality with hash codes of the other one") on DJSRH's formulation. The weights
``γ = 0.1`` (reconstruction), ``λ1 = λ2 = 0.1``, ``β = 0.6``, ``η = 0.4``, ``μ = 1.5`` and the optimiser
(SGD, momentum 0.9, weight decay 5e-4, lr 1e-3 image / 1e-2 text and decoders) are DJSRH's settings; the
decoder width (512) is cmh's choice. Codes: ``sign`` of each modality's hash layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from cmh.methods._losses import code_alignment, cosine_matrix
from cmh.methods._nets import mlp
from cmh.methods._train import EpochContext
from cmh.methods.djsrh import DJSRH, DJSRHConfig
from cmh.registry import register_method


@dataclasses.dataclass(frozen=True)
class DSAHConfig(DJSRHConfig):
    """DSAH options: DJSRH's plus the reconstruction weight and decoder width."""

    gamma: float = 0.1
    dec_hidden: int = 512


@register_method("dsah")
class DSAH(DJSRH):
    """Deep Semantic-Alignment Hashing (Yang et al., ICMR 2020), unsupervised (see module docstring)."""

    #: unit tests: small networks and batches, the epochs its learning test needs (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {
        "txt_hidden": 256,
        "optimizer": "adam",
        "img_hidden": 128,
        "dec_hidden": 64,
        "batch_size": 32,
        "epochs": 8,
    }
    paper: ClassVar[str] = (
        "D. Yang, D. Wu, W. Zhang, H. Zhang, B. Li, W. Wang. Deep Semantic-Alignment Hashing for Unsupervised "
        "Cross-Modal Retrieval. ICMR 2020, pp. 44-52."
    )
    Config: ClassVar[type] = DSAHConfig

    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        nets = super()._build_nets(dims)
        k, h = self.bits, self.cfg.dec_hidden
        nets["dec_img"] = mlp((k, h, dims["image"]))  # image features from text codes
        nets["dec_txt"] = mlp((k, h, dims["text"]))  # text features from image codes
        return nets

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        out = super()._build_optimizers(nets)
        dec = [*nets["dec_img"].parameters(), *nets["dec_txt"].parameters()]
        out["dec"] = self._optimizer(dec, self.cfg.lr_txt)
        return out

    def _alignment(
        self, s: torch.Tensor, x_i: torch.Tensor, x_t: torch.Tensor, b_i: torch.Tensor, b_t: torch.Tensor
    ) -> torch.Tensor:
        """``L_sa``: cross-modal codes against the joint affinity, each modality's codes against its features."""
        cfg = self.cfg
        return (
            code_alignment(s, b_i, b_t)
            + cfg.lambda1 * code_alignment(cfg.mu * cosine_matrix(x_i), b_i)
            + cfg.lambda2 * code_alignment(cfg.mu * cosine_matrix(x_t), b_t)
        )

    def _extra_loss(
        self, ctx: EpochContext, x_i: torch.Tensor, x_t: torch.Tensor, b_i: torch.Tensor, b_t: torch.Tensor
    ) -> torch.Tensor:
        """``γ L_rec``: image features from text codes, text features from image codes."""
        with ctx.autocast():
            r_i, r_t = self.nets["dec_img"](b_t), self.nets["dec_txt"](b_i)
        rec = (r_i.float() - x_i).pow(2).mean() + (r_t.float() - x_t).pow(2).mean()
        ctx.log("rec", rec)
        return self.cfg.gamma * rec
