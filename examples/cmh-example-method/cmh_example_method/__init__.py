"""PairAlign (``example-pairs``): an example deep cross-modal hashing method living outside cmh.

Each modality gets an MLP ``d -> hidden (ReLU) -> K`` with a tanh output ``B``. For a batch with label
similarity ``S`` (1 when two items share a label, else 0), the target cosine between two items' codes is
``T = 2S - 1`` and the loss is the squared error of the code cosines against it, across and within
modalities: ``mean((cos(B_I, B_T) - T)²) + ½ mean((cos(B_I, B_I) - T)²) + ½ mean((cos(B_T, B_T) - T)²)``.
Codes are ``sign(B)``. Everything else (seeds, checkpoints, resume, device, progress, records) comes from
cmh's shared deep loop.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from cmh.deep import DeepConfig, DeepHashMethod, EpochContext, code_alignment, mlp


@dataclasses.dataclass(frozen=True)
class PairAlignConfig(DeepConfig):
    """Options; the defaults are this example's own (no paper)."""

    epochs: int = 5
    lr: float = 1e-3
    hidden: int = 256
    intra: float = 0.5


class PairAlign(DeepHashMethod):
    """Supervised code-cosine alignment (module docstring); registered by the entry point, not by cmh."""

    paper: ClassVar[str] = "cmh example method (docs/adding-a-method.md)"
    Config: ClassVar[type] = PairAlignConfig

    def _build_nets(self, dims: dict[str, int]) -> dict[str, nn.Module]:
        h, k = self.cfg.hidden, self.bits
        return {"img": mlp((dims["image"], h, k)), "txt": mlp((dims["text"], h, k))}

    def _build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        params = [p for net in nets.values() for p in net.parameters()]
        return {"all": torch.optim.Adam(params, lr=self.cfg.lr)}

    def _codes(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets["img" if modality == "image" else "txt"](x)

    def _train_epoch(self, epoch: int, ctx: EpochContext) -> None:
        data, opt = ctx.data, self.optims["all"]
        for idx in ctx.batches():
            labels = data.labels[idx]
            target = 2.0 * (labels @ labels.T > 0).float() - 1.0
            with ctx.autocast():
                b_i = torch.tanh(self.nets["img"](data.image[idx])).float()
                b_t = torch.tanh(self.nets["txt"](data.text[idx])).float()
            loss = code_alignment(target, b_i, b_t) + self.cfg.intra * (
                code_alignment(target, b_i) + code_alignment(target, b_t)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.log("loss", loss)
