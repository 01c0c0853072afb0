"""VGG19 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015,
Table 1 configuration E) in plain torch with torchvision's parameter names, so a torchvision ``vgg19``
state_dict file (``torch.save(model.state_dict(), path)``) loads with ``strict=True`` — without torchvision.

Layout (torchvision ``vgg19``): ``features`` = 16 3x3 convolutions (each followed by ReLU) in five blocks of
2, 2, 4, 4, 4 separated by 2x2 max-pooling, so the conv layers sit at ``features.{0,2,5,7,10,12,14,16,19,21,
23,25,28,30,32,34}``; ``avgpool`` = adaptive average pooling to 7x7; ``classifier`` = Linear(25088, 4096)
``.0``, ReLU, Dropout, Linear(4096, 4096) ``.3``, ReLU, Dropout, Linear(4096, 1000) ``.6``.
The feature is fc7 after its ReLU (``classifier.4``), 4,096-d. Inputs: RGB scaled to 0..1 and normalised with
the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), 224x224.

Widths are read from the state_dict (so tiny random copies load in tests); other networks raise
:class:`cmh.errors.CMHError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cmh.errors import CMHError

#: Convolutions per block in configuration E.
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_HINT = (
    "save torchvision's weights once on a machine that has torchvision: "
    "`torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), 'vgg19.pth')`, "
    "then pass --weights vgg19.pth"
)


def conv_indices(blocks: tuple[int, ...] = VGG19_BLOCKS) -> list[int]:
    """Indices of the conv layers inside ``features`` (torchvision numbering: conv, ReLU, ..., pool)."""
    out, i = [], 0
    for n in blocks:
        for _ in range(n):
            out.append(i)
            i += 2
        i += 1  # max-pool
    return out


class VGG19(nn.Module):
    """VGG19 (configuration E); :meth:`forward` returns fc7 after ReLU ``(n, fc)``, :meth:`logits` the classes."""

    def __init__(
        self, widths: tuple[int, ...] = VGG19_WIDTHS, fc: int = 4096, num_classes: int = 1000
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for width, n in zip(widths, VGG19_BLOCKS, strict=True):
            for _ in range(n):
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
                c = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(fc, num_classes),
        )
        self.feature_dim = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` normalised images -> ``(n, fc)`` fc7 features (after ReLU)."""
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier[:5](x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` normalised images -> ``(n, num_classes)`` scores."""
        return self.classifier[5:](self.forward(x))


def read_vgg19_state_dict(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, int | tuple[int, ...]]]:
    """Load a torchvision-style VGG19 state_dict file; returns ``(state_dict, VGG19 kwargs)``.

    Accepts a bare state_dict or one wrapped as ``{"state_dict": ...}``/``{"model": ...}`` and strips a
    ``module.`` prefix (DataParallel). Raises :class:`CMHError` for other networks.
    """
    path = Path(path)
    if not path.is_file():
        raise CMHError(f"VGG19 weights file '{path}' not found; {WEIGHTS_HINT}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CMHError(
            f"cannot read '{path}' as a torch state_dict ({type(exc).__name__}); {WEIGHTS_HINT}"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CMHError(f"'{path}' does not hold a state_dict (a dict of tensors); {WEIGHTS_HINT}")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if any("running_mean" in k for k in state):
        raise CMHError(
            f"'{path}' is a batch-norm VGG (vgg19_bn); cmh's vgg19 backbone expects plain vgg19 weights"
        )
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith(".weight"))
    expected = conv_indices()
    if convs != expected:
        raise CMHError(
            f"'{path}' is not a torchvision VGG19 state_dict: it has {len(convs)} conv layers at features"
            f"{convs[:4]}..., VGG19 has 16 at features.{{0,2,5,...,34}} (vgg16 has 13); {WEIGHTS_HINT}"
        )
    missing = [
        k for k in ("classifier.0.weight", "classifier.3.weight", "classifier.6.weight") if k not in state
    ]
    if missing:
        raise CMHError(f"'{path}' lacks {', '.join(missing)}; it is not a full torchvision VGG19 state_dict")
    widths = tuple(
        int(state[f"features.{expected[sum(VGG19_BLOCKS[:b])]}.weight"].shape[0]) for b in range(5)
    )
    fc = int(state["classifier.0.weight"].shape[0])
    num_classes = int(state["classifier.6.weight"].shape[0])
    return state, {"widths": widths, "fc": fc, "num_classes": num_classes}
