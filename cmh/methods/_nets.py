"""Layers shared by the deep methods (feature mode: every network starts from a feature vector).

- :func:`mlp` — a ReLU multi-layer perceptron ``d -> h1 -> ... -> out`` (no activation after the last layer).
- :class:`HashHead` — SSAH's three-output network: ``trunk -> F`` (the semantic feature, ReLU, 512-d), then
  ``F -> H`` (tanh hash layer, ``bits``) and ``F -> L̂`` (sigmoid label layer, ``classes``), i.e. the
  ``... -> 512 -> (K + c)`` ending of every SSAH network (Li et al., CVPR 2018, §3.6).
- :class:`MultiScaleText` — SSAH's multi-scale (MS) fusion of a bag of words: average pooling at several
  widths, each pooled map linearly up-sampled back to the vocabulary length, stacked with the input as
  channels and fused by a 1×1 convolution (§3.3, §3.6).
- :func:`discriminator` — ``512 -> h1 -> h2 -> 1`` modality discriminator (§3.4, §3.6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: Sequence[int], last_activation: bool = False) -> nn.Sequential:
    """``sizes = (d_in, h1, ..., d_out)`` -> Linear/ReLU stack; ReLU after the last layer only if asked."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(int(a), int(b)))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class HashHead(nn.Module):
    """``x -> trunk -> F (ReLU, semantic) -> [tanh H (bits), sigmoid L̂ (classes)]``.

    ``forward(x)`` returns ``(F, H, L̂)`` with shapes ``(n, feature_dim)``, ``(n, bits)``, ``(n, classes)``.
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, bits: int, classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.hash = nn.Linear(feature_dim, bits)
        self.label = nn.Linear(feature_dim, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.trunk(x)
        return f, torch.tanh(self.hash(f)), torch.sigmoid(self.label(f))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Real-valued hash outputs ``H`` only (what the codes are the sign of)."""
        return torch.tanh(self.hash(self.trunk(x)))


def clamp_widths(widths: Sequence[int], length: int) -> tuple[int, ...]:
    """Pooling widths usable on a ``length``-long vector: a window wider than the vector becomes one
    global average (width = length). Duplicates are kept so the layer's shape follows the config."""
    return tuple(max(1, min(int(w), int(length))) for w in widths)


class MultiScaleText(nn.Module):
    """Multi-scale fusion (MS) of a text vector of length ``d`` (SSAH §3.3).

    For each width ``w`` the input is average-pooled with window = stride = ``w`` (a last partial window
    averages the words it covers), then linearly up-sampled back to ``d`` positions. The ``1 + len(widths)``
    maps (input first) are stacked as channels and fused by a 1×1 convolution into ``out_channels`` maps,
    followed by a ReLU. Output: ``(n, out_channels * d)``. The 1×1 convolution starts as the plain
    average of the scales (weights ``1/(1+S)``, bias 0), so training begins from a smoothed BoW.
    """

    def __init__(self, length: int, widths: Sequence[int], out_channels: int = 1) -> None:
        super().__init__()
        self.length = int(length)
        self.widths = clamp_widths(widths, length)
        channels = 1 + len(self.widths)
        self.fuse = nn.Conv1d(channels, out_channels, kernel_size=1)
        with torch.no_grad():
            self.fuse.weight.fill_(1.0 / channels)
            self.fuse.bias.zero_()
        self.out_dim = out_channels * self.length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.unsqueeze(1)  # (n, 1, d)
        maps = [t]
        for w in self.widths:
            if w == 1:
                maps.append(t)
                continue
            pooled = F.avg_pool1d(t, kernel_size=w, stride=w, ceil_mode=True)
            maps.append(F.interpolate(pooled, size=self.length, mode="linear", align_corners=False))
        fused = F.relu(self.fuse(torch.cat(maps, dim=1)))  # (n, out_channels, d)
        return fused.flatten(1)


def discriminator(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """``in_dim -> hidden... -> 1`` with ReLU; returns logits (the caller applies the sigmoid)."""
    return mlp((in_dim, *hidden, 1))
