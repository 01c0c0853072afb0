"""HashGAN: attention-aware deep adversarial hashing (Zhang, Zhou, Feng, Lai, Li, Pan, Yin & Yan,
arXiv 1711.09347, 2017), feature mode.

Three modules per modality (the design decisions the paper leaves open are in docs/methods/hashgan.md):

1. **feature learning** ``F``: ``x -> 1024 -> 512`` (ReLU), the representation ``f`` (n, 512);
2. **generative attention** ``G``: ``f -> 128 (ReLU) -> 512 -> sigmoid``, an attention mask ``m ∈ [0, 1]``
   of the same shape as ``f``; the attended (foreground) feature is ``f ⊙ m``, the unattended (background)
   feature ``f ⊙ (1 - m)``, so foreground + background = ``f`` exactly;
3. **discriminative hash coding** ``D``: ``tanh(W f' + b)`` to ``K`` values, applied to both the foreground
   and the background feature (the same hash layer).

With ``θ_ij = ½ h^I_i · h^T_j`` between the batch's image and text hash outputs and ``S_ij = 1`` when items
share a label, the similarity-preservation loss is the pairwise negative log-likelihood
``J(θ) = mean(log(1 + e^θ) - S θ)`` (:func:`cmh.methods._losses.pairwise_nll`), on the foreground outputs
(``J_fg``) and on the background outputs (``J_bg``).

Adversarial training, alternating on every batch (the abstract: "the generator is learned to make the
discriminator cannot preserve the similarities of multi-modal data w.r.t. the background feature
representations, while the discriminator aims to preserve the similarities ... w.r.t. both the foreground
and the background"):

- **discriminator step** (feature modules + hash layers): minimise ``J_fg + J_bg + η Q`` with the
  quantisation term ``Q = mean((h_fg - sign(h_fg))²)``, masks fixed;
- **generator step** (attention modules): minimise ``-J_bg`` (i.e. *raise* the discriminator's loss on the
  background), features and hash layers fixed, plus ``ρ · mean(m)`` that keeps the foreground from
  swallowing the whole feature (a choice of ours, docs/methods/hashgan.md).

Codes: ``sign`` of the hash layer on each modality's **foreground** feature.

Defaults (not stated in the arXiv text available to us; chosen here, docs/methods/hashgan.md): Adam
``lr=3e-3`` (discriminator side; 1e-3 learns too slowly: synthetic_small, batch 32, 8 epochs: chance level;
3e-3, 20 epochs: 0.44 / 0.42 mAP) and ``lr_gen=1e-4`` (attention), ``η = 0.01``, ``ρ = 0.1``, batch 128,
``epochs=20``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cmh.methods._losses import pairwise_nll
from cmh.methods._nets import mlp
from cmh.methods._train import DeepConfig, DeepHashMethod, EpochContext
from cmh.registry import register_method


@dataclasses.dataclass(frozen=True)
class HashGANConfig(DeepConfig):
    """HashGAN options (defaults and the reasons for them: docs/methods/hashgan.md)."""

    epochs: int = 20
    lr: float = 3e-3
    lr_gen: float = 1e-4
    eta: float = 0.01
    rho: float = 0.1
    hidden: tuple[int, ...] = (1024, 512)
    mask_hidden: int = 128


class AttentionHashNet(nn.Module):
    """One modality's HashGAN: feature module, attention generator and hash layer (module docstring).

    ``forward(x)`` returns ``(f, m, h_fg, h_bg)``: feature (n, d_f), mask (n, d_f) in [0, 1], hash outputs
    of the foreground and background features (n, bits) in (-1, 1).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], bits: int, mask_hidden: int) -> None:
        super().__init__()
        d_f = int(hidden[-1])
        self.feature = mlp((in_dim, *hidden), last_activation=True)
        self.generator = nn.Sequential(mlp((d_f, mask_hidden, d_f)), nn.Sigmoid())
        self.hash = nn.Linear(d_f, bits)

    def split(self, f: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground ``f ⊙ m`` and background ``f ⊙ (1 - m)`` (their sum is ``f``)."""
        fg = f * m
        return fg, f - fg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.feature(x)
        m = self.generator(f)
        fg, bg = self.split(f, m)
        return f, m, torch.tanh(self.hash(fg)), torch.tanh(self.hash(bg))

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.feature.parameters(), *self.hash.parameters()]


def similarity_losses(
    out_i: tuple[torch.Tensor, ...], out_t: tuple[torch.Tensor, ...], s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J_fg, J_bg)``: mean pairwise NLL of ``S`` (m, m) on the foreground / background cross-modal
    ``θ = ½ h^I h^Tᵀ`` of two :class:`AttentionHashNet` outputs."""
    j = []
    for k in (2, 3):
        theta = 0.5 * out_i[k].float() @ out_t[k].float().T
        j.append(pairwise_nll(theta, s) / s.numel())
    return j[0], j[1]


@register_method("hashgan")
class HashGAN(DeepHashMethod):
    """Attention-aware deep adversarial cross-modal hashing (Zhang et al., 2017) on features (module docstring)."""

    #: unit tests: small networks and batches, the epochs its learning test needs (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {
        "hidden": (128, 64),
        "mask_hidden": 32,
        "batch_size": 32,
        "epochs": 12,
    }
    paper: ClassVar[str] = (
        "X. Zhang, S. Zhou, J. Feng, H. Lai, B. Li, Y. Pan, J. Yin, S. Yan. HashGAN: Attention-aware Deep "
        "Adversarial Hashing for Cross Modal Retrieval. arXiv 1711.09347, 2017."
    )
    Config: ClassVar[type] = HashGANConfig

    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        cfg, k = self.cfg, self.bits
        return {
            "img": AttentionHashNet(dims["image"], cfg.hidden, k, cfg.mask_hidden),
            "txt": AttentionHashNet(dims["text"], cfg.hidden, k, cfg.mask_hidden),
        }

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        img = nets["img"]
        head = getattr(img, "head", img)  # raw-image mode: pixels -> backbone -> this head
        backbone = list(img.backbone.parameters()) if hasattr(img, "backbone") else []
        d_params = [*backbone, *head.discriminator_parameters(), *nets["txt"].discriminator_parameters()]
        g_params = [*head.generator.parameters(), *nets["txt"].generator.parameters()]
        return {
            "disc": torch.optim.Adam(d_params, lr=self.cfg.lr),
            "gen": torch.optim.Adam(g_params, lr=self.cfg.lr_gen),
        }

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets["img" if modality == "image" else "txt"](x)[2]

    def discriminator_loss(
        self, out_i: tuple[torch.Tensor, ...], out_t: tuple[torch.Tensor, ...], s: torch.Tensor
    ) -> torch.Tensor:
        """``J_fg + J_bg + η Q`` (the hash/feature modules' objective)."""
        j_fg, j_bg = similarity_losses(out_i, out_t, s)
        h_i, h_t = out_i[2].float(), out_t[2].float()
        quant = (h_i - torch.sign(h_i.detach())).pow(2).mean() + (h_t - torch.sign(h_t.detach())).pow(
            2
        ).mean()
        return j_fg + j_bg + self.cfg.eta * quant

    def generator_loss(
        self, out_i: tuple[torch.Tensor, ...], out_t: tuple[torch.Tensor, ...], s: torch.Tensor
    ) -> torch.Tensor:
        """``-J_bg + ρ mean(m)`` (the attention modules' objective)."""
        _, j_bg = similarity_losses(out_i, out_t, s)
        area = 0.5 * (out_i[1].float().mean() + out_t[1].float().mean())
        return -j_bg + self.cfg.rho * area

    def update(self, loss: torch.Tensor, player: str) -> None:
        """One step of ``player`` (``"disc"`` or ``"gen"``) down ``loss``: each loss reaches both players'
        parameters, so both optimizers' gradients are cleared first and only ``player``'s optimizer steps."""
        for opt in self.optims.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        self.optims[player].step()

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        data, nets = ctx.data, self.nets
        for idx in ctx.batches():
            labels = data.labels[idx]
            s = (labels @ labels.T > 0).float()
            x_i, x_t = data.image[idx], data.text[idx]
            # discriminator step: preserve similarities on foreground and background
            with ctx.autocast():
                out_i, out_t = nets["img"](x_i), nets["txt"](x_t)
            d_loss = self.discriminator_loss(out_i, out_t, s)
            self.update(d_loss, "disc")
            ctx.log("disc", d_loss)
            # generator step: make the background useless for similarity preservation
            with ctx.autocast():
                out_i, out_t = nets["img"](x_i), nets["txt"](x_t)
            g_loss = self.generator_loss(out_i, out_t, s)
            self.update(g_loss, "gen")
            ctx.log("gen", g_loss)
            ctx.log("mask", 0.5 * (out_i[1].detach().float().mean() + out_t[1].detach().float().mean()))
