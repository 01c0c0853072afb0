"""SAALDH: Self-Attention and Adversary Learning Deep Hashing (Chen, Wu, Wang & Yu, Computers & Electrical
Engineering 93, 2021, 107262), feature mode.

Networks (one per modality, :class:`MultiLayerAttentionHash`): the input feature goes through hidden layers
``d -> 1024 -> 512`` (ReLU); every hidden layer has its own linear hash branch to ``K`` values, so each
item has ``L`` hash representations (one per layer). They are **integrated** position by position (a
learnt weighted sum over the layers, ``z_k = Σ_l w_l h_{l,k} + b``), and **self-attention** re-weights
each position of the integrated representation: position ``k`` is a token whose descriptor is its ``L``
per-layer values; ``A = softmax(Q Kᵀ / √d_a)`` over the ``K`` positions (queries/keys ``L -> d_a``,
values ``L -> 1``), and ``H = tanh(z + γ · A v)`` with ``γ`` learnt from 0 (training starts from the plain
integration). Codes are ``sign(H)`` of each modality's own network.

Losses, for a batch of ``m`` pairs (labels define positives: items that share a label):

- **triplet loss** in both directions (image anchors against the batch's texts and text anchors against the
  batch's images), on the relaxed Hamming distance ``(K - a·b) / 2`` with margin ``margin × K`` bits
  (:func:`cmh.methods._losses.triplet_loss`). ``mining="semi-hard"`` (default, the paper's **batch
  semi-hard selection**): for every (anchor, positive) pair the negative is the closest one that is still
  farther than the positive; when no negative is farther, the pair falls back to its farthest negative.
  ``mining="hard"`` is the authors' public code: batch-hard mining, one triplet per anchor (farthest
  positive, closest negative), which the paper reports gets stuck in poor local optima;
- **adversarial loss**: a modality discriminator ``K -> 256 -> 64 -> 1`` learns to tell image hash
  representations (1) from text ones (0) (least squares, as SSAH's Eq. 5); each hash network is trained
  to make it answer the opposite (weight ``delta``), so that the two modalities' representations become
  indistinguishable;
- **quantisation** ``eta · mean((H - sign(H))²)``.

Defaults: the paper's margin, loss weights and epochs are not in the material available to us (abstract
and README); cmh's values (``margin=0.25`` of the code length, ``delta=0.1``, ``eta=0.01``, Adam
``lr=3e-4`` (synthetic, 32 bits, seed 0: 1e-3 -> 0.390 / 0.358 mAP, 3e-4 -> 0.501 / 0.470; at 1e-3 the 64-bit runs
fell to ~0.33), discriminator ``lr_disc=1e-4``, batch 128, ``epochs=20``) were chosen on the synthetic set so a
run takes about a minute on a small CPU (docs/deep.md). The paper fine-tunes CNN-F from pixels; here the
image network starts from the given features (``image_backbone`` restores end-to-end training).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cmh.methods._losses import Mining, lsgan_discriminator_loss, lsgan_generator_loss, triplet_loss
from cmh.methods._nets import discriminator
from cmh.methods._train import DeepConfig, DeepHashMethod, EpochContext
from cmh.registry import register_method


@dataclasses.dataclass(frozen=True)
class SAALDHConfig(DeepConfig):
    """SAALDH options (see the module docstring for where each default comes from)."""

    epochs: int = 20
    lr: float = 3e-4
    lr_disc: float = 1e-4
    mining: Mining = "semi-hard"
    margin: float = 0.25  # fraction of the code length
    delta: float = 0.1  # adversarial weight of the hash networks
    eta: float = 0.01  # quantisation weight
    hidden: tuple[int, ...] = (1024, 512)
    attn_dim: int = 8
    disc_hidden: tuple[int, ...] = (256, 64)


class MultiLayerAttentionHash(nn.Module):
    """``x -> hidden layers``; per-layer hash branches, integrated and re-weighted by self-attention.

    ``forward(x)`` returns ``H = tanh(z + γ A v)`` of shape ``(n, bits)`` (module docstring of saaldh).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], bits: int, attn_dim: int = 8) -> None:
        super().__init__()
        layers, sizes = [], (int(in_dim), *map(int, hidden))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(nn.Sequential(nn.Linear(a, b), nn.ReLU()))
        self.layers = nn.ModuleList(layers)
        self.branches = nn.ModuleList(nn.Linear(int(h), bits) for h in hidden)
        n_layers = len(self.branches)
        self.integrate = nn.Linear(n_layers, 1)
        with torch.no_grad():  # start from the mean of the layers' representations
            self.integrate.weight.fill_(1.0 / n_layers)
            self.integrate.bias.zero_()
        self.query = nn.Linear(n_layers, attn_dim, bias=False)
        self.key = nn.Linear(n_layers, attn_dim, bias=False)
        self.value = nn.Linear(n_layers, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.scale = 1.0 / math.sqrt(attn_dim)

    def representations(self, x: torch.Tensor) -> torch.Tensor:
        """The per-layer hash representations, ``(n, bits, L)`` (position-major)."""
        reps = []
        for layer, branch in zip(self.layers, self.branches, strict=True):
            x = layer(x)
            reps.append(branch(x))
        return torch.stack(reps, dim=2)

    def attention(self, reps: torch.Tensor) -> torch.Tensor:
        """Attention weights between the ``bits`` positions, ``(n, bits, bits)``, rows summing to 1."""
        q, k = self.query(reps), self.key(reps)
        return torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reps = self.representations(x)
        z = self.integrate(reps).squeeze(-1)  # (n, bits)
        attended = (self.attention(reps) @ self.value(reps)).squeeze(-1)  # (n, bits)
        return torch.tanh(z + self.gamma * attended)


@register_method("saaldh")
class SAALDH(DeepHashMethod):
    """Self-Attention and Adversary Learning Deep Hashing (Chen et al., 2021) on features (module docstring)."""

    #: unit tests: small networks and batches, the epochs its learning test needs (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {"hidden": (128, 64), "batch_size": 32, "epochs": 20}
    paper: ClassVar[str] = (
        "S. Chen, S. Wu, L. Wang, Z. Yu. Self-attention and adversary learning deep hashing network for "
        "cross-modal retrieval. Computers & Electrical Engineering 93 (2021) 107262."
    )
    Config: ClassVar[type] = SAALDHConfig

    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        cfg, k = self.cfg, self.bits
        return {
            "img": MultiLayerAttentionHash(dims["image"], cfg.hidden, k, cfg.attn_dim),
            "txt": MultiLayerAttentionHash(dims["text"], cfg.hidden, k, cfg.attn_dim),
            "disc": discriminator(k, cfg.disc_hidden),
        }

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        params = [*nets["img"].parameters(), *nets["txt"].parameters()]
        return {
            "hash": torch.optim.Adam(params, lr=self.cfg.lr),
            "disc": torch.optim.Adam(nets["disc"].parameters(), lr=self.cfg.lr_disc),
        }

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets["img" if modality == "image" else "txt"](x)

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        cfg, data, nets, opts = self.cfg, ctx.data, self.nets, self.optims
        margin = cfg.margin * self.bits
        disc = nets["disc"]
        for idx in ctx.batches():
            if idx.numel() < 2:
                continue
            labels = data.labels[idx]
            similar = (labels @ labels.T > 0).float()
            with ctx.autocast():
                h_i, h_t = nets["img"](data.image[idx]), nets["txt"](data.text[idx])
            h_i, h_t = h_i.float(), h_t.float()
            l_it, st_it = triplet_loss(h_i, h_t, similar, margin, cfg.mining)
            l_ti, st_ti = triplet_loss(h_t, h_i, similar, margin, cfg.mining)
            quant = (h_i - torch.sign(h_i.detach())).pow(2).mean() + (h_t - torch.sign(h_t.detach())).pow(
                2
            ).mean()
            loss = (l_it + l_ti) / self.bits + cfg.eta * quant
            if cfg.delta > 0:
                disc.requires_grad_(False)
                with ctx.autocast():
                    d_i, d_t = disc(h_i).float(), disc(h_t).float()
                adv = lsgan_generator_loss(d_i, 0.0) + lsgan_generator_loss(d_t, 1.0)  # fool: swap the sides
                disc.requires_grad_(True)
                loss = loss + cfg.delta * adv
                ctx.log("adv", adv)
            opts["hash"].zero_grad(set_to_none=True)
            loss.backward()
            opts["hash"].step()
            ctx.log("triplet", (l_it + l_ti).detach() / self.bits)
            ctx.log("hash", loss)
            ctx.log("fallback", torch.tensor((st_it["fallback"] + st_ti["fallback"]) / 2))

            with ctx.autocast():
                real, fake = disc(h_i.detach()).float(), disc(h_t.detach()).float()
            d_loss = lsgan_discriminator_loss(real, fake)
            opts["disc"].zero_grad(set_to_none=True)
            d_loss.backward()
            opts["disc"].step()
            ctx.log("disc", d_loss)
