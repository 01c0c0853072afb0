"""SSAH: Self-Supervised Adversarial Hashing (Li, Deng, Li, Liu, Gao & Tao, CVPR 2018), feature mode.

Networks (§3.6; every hidden layer ReLU, ``F`` = the 512-d semantic feature, ``H`` = tanh hash layer with
``K`` units, ``L̂`` = sigmoid label layer with ``c`` units):

- LabNet ``L -> 4096 -> 512 (F^l) -> (K + c)`` — the self-supervised semantic network on the labels;
- ImgNet ``x -> 512 (F^v) -> (K + c)`` — the paper's CNN-F conv1–fc7 is replaced by the given image feature
  (feature mode), followed by the paper's fc8 (512) and output layer;
- TxtNet ``t -> MS -> 4096 -> 512 (F^t) -> (K + c)`` — MS = average pooling of the bag of words at widths
  1, 2, 3, 5, 10, each up-sampled back to the vocabulary length, stacked with the input and fused by a 1×1
  convolution (§3.3). A width longer than the text vector is clamped to it (one global average): on
  Wikipedia's 10-d LDA text the widths 1, 2, 3, 5, 10 all fit; the official widths 50/30/15/10/5 become
  10/10/10/10/5;
- two discriminators ``512 -> h1 -> h2 -> 1`` telling LabNet features (label 1) from image (resp. text)
  features (label 0) (§3.4); the paper's sizes are ``h = 4096, 4096`` (``--set disc_hidden=4096,4096``),
  cmh's default is ``512, 256`` (see "CPU defaults").

Loss of each of the three networks (Eq. 3-4), with ``θ_ij = ½ F^l_i·F^*_j`` and ``Γ_ij = ½ H^l_i·H^*_j``::

    α J1 + γ J2 + η J3 + β J4,   J1 = -Σ_ij (S_ij θ_ij - log(1 + e^θ_ij)),   J2 = the same on Γ,
    J3 = ‖H^* - B‖²,  J4 = ‖L̂^* - L‖²,  α = γ = 1, η = β = 1e-4 (§4.2, Fig. 2)

computed for a batch of 128 items ``j`` against all ``n`` training items ``i`` (LabNet's outputs for all
items are kept in a bank), with ``log(1 + e^θ)`` as a stable softplus and the sums divided by ``n·128``
(a constant factor, so the paper's relative weights are kept). ``S_ij = 1`` when items share a label.

Optimisation (Algorithm 1, §3.5), one epoch = a pass of LabNet over the data, then a pass in which each
batch updates ImgNet, TxtNet and the two discriminators in turn; after the epoch ``B = sign(H^v + H^t +
H^l)`` over the training set. The generators' adversarial term is the least-squares form of the paper's
``-L_adv`` (``δ·mean((D(F^*) - 1)²)``, i.e. "make D take image/text features for label features"; the
literal ``-‖D(F^*) - 0‖²`` has the same optimum but no gradient once D wins), with ``δ = 0.1`` on a
per-item mean: the paper does not state the weight (Eq. (7)'s sum over ``n`` items next to sums over ``n²``
pairs would make it vanish); in our runs ``δ = 1`` lowered mAP and ``δ = 0.1`` was neutral. LabNet is the fixed reference distribution of the discriminators and gets no
adversarial term (§3.5: "we optimize L^v over θ^v ... by fixing θ^l"). The discriminators minimise the
squared error ``‖D(x) - y‖²`` of their sigmoid output (Eq. 5). Test-time codes come from each modality's
own network (Eq. 8).

``variant="official"`` reproduces the deviations of the authors' public TensorFlow code: the pairwise
terms are the *squared* log-likelihood ``mean((S θ - log(1 + e^θ))²)`` with ``S`` scaled by 0.999;
``α = γ = η = β = 1`` on means; the quantisation target is the sign of the batch's own output; the
adversarial gradient never reaches ImgNet/TxtNet (their adversarial term is fed from a copy of the
features), so only the discriminators learn from it, with sigmoid cross-entropy; learning rates
10^-2 (LabNet), 10^-4.5 (ImgNet), 10^-3.5 (TxtNet), 10^-3 (discriminators) with Adam, divided by √10
every epoch; pooling widths 50, 30, 15, 10, 5; discriminators ``512 -> 512 -> 256 -> 1``. The official
code's repeated inner passes with early breaks (10/15/15 passes per "epoch") are not reproduced: an epoch
is one pass, as in the paper variant.

Optimiser: the paper trains with SGD and a learning rate picked from 1e-4 ... 1e-8 for sums over pairs;
cmh uses Adam (as the official code does) for both variants, which is insensitive to the constant
normalisation of the loss (``optimizer="sgd"`` is available).

CPU defaults (an honest note): the paper states neither its number of epochs nor the adversarial weight.
cmh's defaults (``epochs=15`` — small training sets need more: on Wikipedia, 17 batches per epoch,
use ``--set epochs=150``: 32 bits, seed 0, 0.164 / 0.399 mAP after 15 epochs, 0.220 / 0.575 after 40,
0.296 / 0.696 after 120, past SePH at 16/32/64 bits, see docs/deep.md "quality bar" —, Adam,
``lr=1e-3`` for ImgNet/TxtNet, ``lr_lab=1e-4`` for LabNet — a larger
LabNet rate kills most ReLU units of F^l and collapses its codes —, ``lr_disc=1e-4``, discriminators
``512 -> 512 -> 256 -> 1``) were chosen so that ``cmh run ssah`` trains the built-in ``synthetic`` set in
about a minute on a small CPU: the paper's 4096-wide discriminators cost ~10× the rest of an epoch there.
Paper-sized run: ``--set disc_hidden=4096,4096 epochs=50``.

Feature normalisation: each image and text dimension is standardised with the training mean and standard
deviation (``image_norm`` / ``text_norm``); fc7-like features and LDA proportions need it, raw BoW does not
suffer from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cmh.methods._losses import pairwise_nll
from cmh.methods._nets import HashHead, MultiScaleText, discriminator, mlp
from cmh.methods._train import DeepConfig, DeepHashMethod, EpochContext, TrainData
from cmh.registry import register_method

PAPER = {
    "alpha": 1.0,
    "gamma": 1.0,
    "eta": 1e-4,
    "beta": 1e-4,
    "pool_widths": (1, 2, 3, 5, 10),
    "lr": 1e-3,
    "lr_lab": 1e-4,
    "lr_txt": None,
    "lr_disc": 1e-4,
}
OFFICIAL = {
    "alpha": 1.0,
    "gamma": 1.0,
    "eta": 1.0,
    "beta": 1.0,
    "pool_widths": (50, 30, 15, 10, 5),
    "lr": 10**-4.5,
    "lr_lab": 1e-2,
    "lr_txt": 10**-3.5,
    "lr_disc": 1e-3,
}


@dataclasses.dataclass(frozen=True)
class SSAHConfig(DeepConfig):
    """SSAH options; ``None`` means "the variant's value" (see the module docstring)."""

    variant: Literal["paper", "official"] = "paper"
    epochs: int = 15
    lr: float | None = None  # ImgNet (and TxtNet unless lr_txt); paper variant: 1e-3
    lr_txt: float | None = None
    lr_lab: float | None = None
    lr_disc: float | None = None
    optimizer: Literal["adam", "sgd"] = "adam"
    alpha: float | None = None
    gamma: float | None = None
    eta: float | None = None
    beta: float | None = None
    delta: float = 0.1  # weight of the generators' adversarial term (paper variant)
    lab_passes: int = 1  # LabNet passes per epoch (the official code runs up to 10 + 5)
    feature_dim: int = 512
    lab_hidden: int = 4096
    txt_hidden: int = 4096
    pool_widths: tuple[int, ...] | None = None
    ms_channels: int = 1
    disc_hidden: tuple[int, ...] = (512, 256)  # paper: (4096, 4096); see "CPU defaults"


def pairwise_squared(theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Σ (S θ - log(1 + e^θ))²: the official code's squared log-likelihood."""
    return (s * theta - F.softplus(theta)).pow(2).sum()


@register_method("ssah")
class SSAH(DeepHashMethod):
    """Self-Supervised Adversarial Hashing (Li et al., CVPR 2018) on image/text features.

    See the module docstring for the networks, losses, the ``paper``/``official`` variants and the CPU
    defaults. Codes: ``sign`` of ImgNet's (TxtNet's) hash layer for images (texts).
    """

    paper: ClassVar[str] = (
        "C. Li, C. Deng, N. Li, W. Liu, X. Gao, D. Tao. Self-Supervised Adversarial Hashing Networks for "
        "Cross-Modal Retrieval. CVPR 2018."
    )
    Config: ClassVar[type] = SSAHConfig
    #: unit tests: narrow networks, small batches, a faster LabNet (see HashMethod.test_config)
    test_config: ClassVar[dict[str, Any]] = {
        "epochs": 10,
        "batch_size": 32,
        "lab_hidden": 256,
        "txt_hidden": 256,
        "feature_dim": 128,
        "disc_hidden": (64, 32),
        "lr_lab": 1e-3,
    }

    def __init__(self, bits: int, seed: int = 0, device: str | torch.device = "cpu", **config: Any) -> None:
        super().__init__(bits=bits, seed=seed, device=device, **config)
        self.hp = self._resolve()

    def _resolve(self) -> dict[str, Any]:
        base = dict(PAPER if self.cfg.variant == "paper" else OFFICIAL)
        out = {}
        for key in ("alpha", "gamma", "eta", "beta", "pool_widths", "lr", "lr_lab", "lr_txt", "lr_disc"):
            value = getattr(self.cfg, key)
            out[key] = base[key] if value is None else value
        if out["lr_txt"] is None:
            out["lr_txt"] = out["lr"]
        return out

    def config_dict(self) -> dict[str, Any]:
        """The configuration with every variant-dependent value resolved."""
        d = super().config_dict()
        for key, value in self.hp.items() if hasattr(self, "hp") else ():
            d[key] = list(value) if isinstance(value, tuple) else value
        return d

    # -- networks ---------------------------------------------------------------------------------
    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        cfg, k, c, fd = self.cfg, self.bits, dims["classes"], self.cfg.feature_dim
        ms = MultiScaleText(dims["text"], self.hp["pool_widths"], cfg.ms_channels)
        return {
            "lab": HashHead(mlp((c, cfg.lab_hidden, fd), last_activation=True), fd, k, c),
            "img": HashHead(mlp((dims["image"], fd), last_activation=True), fd, k, c),
            "txt": HashHead(
                nn.Sequential(ms, mlp((ms.out_dim, cfg.txt_hidden, fd), last_activation=True)), fd, k, c
            ),
            "disc_img": discriminator(fd, self.cfg.disc_hidden),
            "disc_txt": discriminator(fd, self.cfg.disc_hidden),
        }

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        opt = torch.optim.Adam if self.cfg.optimizer == "adam" else torch.optim.SGD
        lrs = {"lab": self.hp["lr_lab"], "img": self.hp["lr"], "txt": self.hp["lr_txt"]}
        out = {k: opt(nets[k].parameters(), lr=lr) for k, lr in lrs.items()}
        disc_params = [*nets["disc_img"].parameters(), *nets["disc_txt"].parameters()]
        out["disc"] = opt(disc_params, lr=self.hp["lr_disc"])
        return out

    def _init_buffers(self, data: TrainData, gen: torch.Generator) -> dict[str, torch.Tensor]:
        n, k, dev = data.n, self.bits, self.device
        f_l, h_l = self._label_bank(data)
        zeros = torch.zeros(n, k, device=dev)
        return {
            "F_l": f_l,
            "H_l": h_l,
            "H_v": zeros,
            "H_t": zeros.clone(),
            "B": torch.where(h_l >= 0, 1.0, -1.0),
        }

    def _label_bank(self, data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
        """LabNet's (F^l, H^l) for every training item, computed once per distinct label vector."""
        uniq, inverse = torch.unique(data.labels, dim=0, return_inverse=True)
        lab = self.nets["lab"]
        with torch.no_grad():
            f, h, _ = lab(uniq)
        return f.float()[inverse], h.float()[inverse]

    def _lr_factor(self, epoch: int) -> float:
        return 10 ** (-epoch / 2) if self.cfg.variant == "official" else 1.0

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets["img" if modality == "image" else "txt"].codes(x)

    # -- losses -----------------------------------------------------------------------------------
    def _generator_loss(
        self,
        f: torch.Tensor,
        h: torch.Tensor,
        lhat: torch.Tensor,
        idx: torch.Tensor,
        data: TrainData,
        s: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """α J1 + γ J2 + η J3 + β J4 for one batch (``f``, ``h``, ``lhat`` rows = items ``idx``)."""
        hp, buf = self.hp, self.buffers
        n, b = data.n, idx.numel()
        theta = 0.5 * buf["F_l"] @ f.T  # (n, b)
        gamma_ = 0.5 * buf["H_l"] @ h.T
        labels = data.labels[idx]
        if self.cfg.variant == "paper":
            j1, j2 = pairwise_nll(theta, s), pairwise_nll(gamma_, s)
            j3 = (h - buf["B"][idx]).pow(2).sum()
            j4 = (lhat - labels).pow(2).sum()
            total = (hp["alpha"] * j1 + hp["gamma"] * j2 + hp["eta"] * j3 + hp["beta"] * j4) / (n * b)
            parts = {"J1": j1 / (n * b), "J2": j2 / (n * b)}
        else:
            s = 0.999 * s
            j1, j2 = pairwise_squared(theta, s) / (n * b), pairwise_squared(gamma_, s) / (n * b)
            j3 = (h - torch.sign(h.detach())).pow(2).mean()
            j4 = (lhat - labels).pow(2).mean()
            total = hp["alpha"] * j1 + hp["gamma"] * j2 + hp["eta"] * j3 + hp["beta"] * j4
            parts = {"J1": j1, "J2": j2}
        return total, parts

    @staticmethod
    def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        data, buf, nets, opts = ctx.data, self.buffers, self.nets, self.optims
        paper = self.cfg.variant == "paper"

        # 1. LabNet (§3.2), against a bank of its own outputs refreshed at the start of the pass
        buf["F_l"], buf["H_l"] = self._label_bank(data)
        for idx in (i for _ in range(self.cfg.lab_passes) for i in ctx.batches()):
            s = data.similarity(idx)
            with ctx.autocast():
                f, h, lhat = nets["lab"](data.labels[idx])
            f, h, lhat = f.float(), h.float(), lhat.float()
            buf["F_l"][idx], buf["H_l"][idx] = f.detach(), h.detach()
            loss, _ = self._generator_loss(f, h, lhat, idx, data, s)
            self._step(opts["lab"], loss)
            ctx.log("lab", loss)
        buf["F_l"], buf["H_l"] = self._label_bank(data)

        # 2. ImgNet, TxtNet, discriminators, batch by batch (Algorithm 1)
        discs = (nets["disc_img"], nets["disc_txt"])
        for idx in ctx.batches():
            s = data.similarity(idx)
            feats = []
            for name, x, bank, disc in (
                ("img", data.image, "H_v", discs[0]),
                ("txt", data.text, "H_t", discs[1]),
            ):
                with ctx.autocast():
                    f, h, lhat = nets[name](x[idx])
                f, h, lhat = f.float(), h.float(), lhat.float()
                buf[bank][idx] = h.detach()
                loss, _ = self._generator_loss(f, h, lhat, idx, data, s)
                if paper and self.cfg.delta > 0:
                    disc.requires_grad_(False)
                    with ctx.autocast():
                        p = torch.sigmoid(disc(f).float())
                    adv = (p - 1).pow(2).mean()
                    disc.requires_grad_(True)
                    loss = loss + self.cfg.delta * adv
                    ctx.log(f"{name}_adv", adv)
                self._step(opts[name], loss)
                ctx.log(name, loss)
                feats.append(f.detach())

            f_l = buf["F_l"][idx]
            d_loss = torch.zeros((), device=self.device)
            for disc, f_m in zip(discs, feats, strict=True):
                with ctx.autocast():
                    real, fake = disc(f_l).float(), disc(f_m).float()
                if paper:
                    d_loss = d_loss + 0.5 * (
                        (torch.sigmoid(real) - 1).pow(2).mean() + torch.sigmoid(fake).pow(2).mean()
                    )
                else:
                    d_loss = d_loss + 0.5 * (
                        F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
                    )
            self._step(opts["disc"], d_loss)
            ctx.log("disc", d_loss)

        # 3. B = sign(H^v + H^t + H^l) (§3.5)
        buf["B"] = torch.where(buf["H_v"] + buf["H_t"] + buf["H_l"] >= 0, 1.0, -1.0)
