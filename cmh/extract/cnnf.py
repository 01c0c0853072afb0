"""CNN-F (Chatfield, Simonyan, Vedaldi & Zisserman, "Return of the Devil in the Details: Delving Deep into
Convolutional Nets", BMVC 2014, Table 1 "CNN-F"), the image network of DCMH and SSAH, read from MatConvNet's
``imagenet-vgg-f.mat``.

Architecture (input 224x224x3, RGB 0..255 minus the file's average image):

====== ======================================================================
conv1  64 filters 11x11, stride 4, pad 0; ReLU; LRN; max-pool 3x3 stride 2
conv2  256 filters 5x5, stride 1, pad 2; ReLU; LRN; max-pool 3x3 stride 2
conv3  256 filters 3x3, stride 1, pad 1; ReLU
conv4  256 filters 3x3, stride 1, pad 1; ReLU
conv5  256 filters 3x3, stride 1, pad 1; ReLU; max-pool 3x3 stride 2
fc6    4096 (a 6x6 convolution in MatConvNet); ReLU; dropout
fc7    4096; ReLU; dropout      <- the feature cmh extracts (after ReLU, as DCMH/SSAH use it)
fc8    1000; softmax
====== ======================================================================

MatConvNet published the file in two layouts, both read here with :func:`scipy.io.loadmat`:

- *old* (MatConvNet <= beta16): top-level ``layers`` (cell array of structs; conv layers hold ``weights =
  {filters, biases}`` or separate ``filters``/``biases`` fields, LRN layers have type ``normalize``) and
  ``normalization`` (``averageImage`` 224x224x3, ``imageSize``, ...), plus ``classes``;
- *new* (MatConvNet >= beta17): top-level ``layers`` (type ``lrn`` for LRN) and ``meta`` with
  ``meta.normalization.averageImage`` (224x224x3 or a 1x1x3 mean colour) and ``meta.classes``.

Filters are stored ``H x W x C_in x C_out`` (MATLAB order) and become torch ``C_out x C_in x H x W``;
LRN parameters ``[N kappa alpha beta]`` (MatConvNet: ``x / (kappa + alpha * sum_window x^2)^beta``) map to
``torch.nn.LocalResponseNorm(N, alpha * N, beta, kappa)`` (torch divides alpha by N). Pool padding
``[top bottom left right]`` is applied as given (MatConvNet's CNN-F uses ``[0 1 0 1]``).

Channel widths are taken from the file, so a structurally identical network with other widths also loads
(the tests use tiny random ones); anything else (another MatConvNet model, a DagNN file) raises
:class:`cmh.errors.CMHError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cmh.errors import CMHError

#: Kernel sizes and strides of CNN-F's eight weight layers (Chatfield et al. 2014, Table 1).
CNNF_KERNELS = (11, 5, 3, 3, 3, 6, 1, 1)
CNNF_STRIDES = (4, 1, 1, 1, 1, 1, 1, 1)
CNNF_PADS = (0, 2, 1, 1, 1, 0, 0, 0)
CNNF_WIDTHS = (64, 256, 256, 256, 256, 4096, 4096)
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
#: MatConvNet LRN parameters [N, kappa, alpha, beta] used when a file does not state them.
DEFAULT_LRN = (5.0, 1.0, 2e-5, 0.75)
DEFAULT_POOL_PAD = (0, 1, 0, 1)
WEIGHTS_HINT = (
    "download imagenet-vgg-f.mat from the MatConvNet pretrained-models page "
    "(https://www.vlfeat.org/matconvnet/pretrained/) and pass it with --weights PATH"
)


class _Pool(nn.Module):
    """3x3 stride-2 max pooling with MatConvNet's explicit ``[top bottom left right]`` padding."""

    def __init__(
        self, size: int = 3, stride: int = 2, pad: tuple[int, int, int, int] = DEFAULT_POOL_PAD
    ) -> None:
        super().__init__()
        self.size, self.stride, self.pad = size, stride, tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, left, r = self.pad
        if any(self.pad):
            x = F.pad(x, (left, r, t, b), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


@dataclass
class CNNFConfig:
    """Hyper-parameters of one CNN-F file (widths, LRN and pooling as stored)."""

    widths: tuple[int, ...] = CNNF_WIDTHS
    num_classes: int = 1000
    lrn: tuple[float, float, float, float] = DEFAULT_LRN
    pool_pads: tuple[tuple[int, int, int, int], ...] = (DEFAULT_POOL_PAD,) * 3
    conv_pads: tuple[int, ...] = CNNF_PADS[:5]
    extra: dict[str, Any] = field(default_factory=dict)


class CNNF(nn.Module):
    """CNN-F; :meth:`forward` returns the fc7 feature after ReLU ``(n, widths[6])``, :meth:`logits` fc8."""

    def __init__(self, config: CNNFConfig | None = None) -> None:
        super().__init__()
        cfg = config or CNNFConfig()
        self.config = cfg
        w = cfg.widths
        c_in = (3, *w[:4])
        for i in range(5):
            setattr(
                self,
                f"conv{i + 1}",
                nn.Conv2d(c_in[i], w[i], CNNF_KERNELS[i], CNNF_STRIDES[i], cfg.conv_pads[i]),
            )
        n, kappa, alpha, beta = cfg.lrn
        self.norm = nn.LocalResponseNorm(int(n), alpha=alpha * n, beta=beta, k=kappa)
        self.pool1, self.pool2, self.pool5 = (_Pool(pad=p) for p in cfg.pool_pads)
        self.fc6 = nn.Linear(w[4] * 6 * 6, w[5])
        self.fc7 = nn.Linear(w[5], w[6])
        self.fc8 = nn.Linear(w[6], cfg.num_classes)
        self.dropout = nn.Dropout(0.5)

    @property
    def feature_dim(self) -> int:
        return int(self.config.widths[6])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` mean-subtracted images -> ``(n, widths[6])`` fc7 features (after ReLU)."""
        x = self.pool1(self.norm(F.relu(self.conv1(x))))
        x = self.pool2(self.norm(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = self.pool5(F.relu(self.conv5(x)))
        if x.shape[-2:] != (6, 6):
            raise CMHError(f"CNN-F needs 224x224 inputs (pool5 must be 6x6, got {tuple(x.shape[-2:])})")
        x = self.dropout(F.relu(self.fc6(x.flatten(1))))
        return F.relu(self.fc7(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` mean-subtracted images -> ``(n, num_classes)`` fc8 scores."""
        return self.fc8(self.dropout(self.forward(x)))


# --------------------------------------------------------------------------------------------- .mat reading


def _get(struct: Any, name: str, default: Any = None) -> Any:
    names = getattr(struct, "_fieldnames", None)
    if names is not None:
        return getattr(struct, name) if name in names else default
    if isinstance(struct, np.ndarray) and struct.dtype.names and name in struct.dtype.names:
        return struct[name]
    return default


def _unwrap(x: Any) -> Any:
    """Strip MATLAB's 1x1 cell/struct wrapping (loadmat with squeeze_me=False)."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _text(x: Any) -> str:
    x = _unwrap(x)
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        return str(x.reshape(-1)[0]) if x.dtype.kind == "U" else str(x)
    return "" if x is None else str(x)


def _numbers(x: Any) -> np.ndarray | None:
    x = _unwrap(x)
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.dtype == object or arr.size == 0:
        return None
    return arr.astype(np.float64).reshape(-1)


def _conv_weights(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    weights = _get(layer, "weights")
    if weights is not None:
        cells = np.asarray(weights, dtype=object).reshape(-1)
        filters, biases = cells[0], cells[1] if len(cells) > 1 else None
    else:
        filters, biases = _get(layer, "filters"), _get(layer, "biases")
    filters = np.asarray(_unwrap(filters), dtype=np.float32)
    if filters.ndim == 2:  # 1x1 filters saved without their leading singleton dims
        filters = filters[None, None]
    while filters.ndim < 4:  # trailing singleton dims dropped by MATLAB
        filters = filters[..., None]
    if biases is None:
        biases = np.zeros(filters.shape[3], np.float32)
    return filters, np.asarray(_unwrap(biases), dtype=np.float32).reshape(-1)


def _pad4(x: Any, default: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    arr = _numbers(x)
    if arr is None:
        return default
    if arr.size == 1:
        return (int(arr[0]),) * 4
    if arr.size == 2:
        return (int(arr[0]), int(arr[0]), int(arr[1]), int(arr[1]))
    return tuple(int(v) for v in arr[:4])  # type: ignore[return-value]


def read_vgg_f_mat(path: str | Path) -> tuple[dict[str, torch.Tensor], CNNFConfig, np.ndarray, str]:
    """Read a MatConvNet CNN-F file (either layout).

    Returns ``(state_dict, config, average_image, layout)``: a state_dict for :class:`CNNF`, its config, the
    average image as float32 ``(H, W, 3)`` or ``(1, 1, 3)`` on the 0..255 scale, and ``"old"``/``"new"``.
    Raises :class:`CMHError` for anything that is not CNN-F.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise CMHError(f"CNN-F weights file '{path}' not found; {WEIGHTS_HINT}")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    except NotImplementedError:
        raise CMHError(
            f"'{path}' is a MATLAB v7.3 file; CNN-F must be MatConvNet's v5 imagenet-vgg-f.mat ({WEIGHTS_HINT})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is a user-file problem
        raise CMHError(f"cannot read '{path}' as a MATLAB file ({exc}); {WEIGHTS_HINT}") from None
    if "layers" not in mat:
        raise CMHError(
            f"'{path}' has no 'layers' variable, so it is not a MatConvNet network; {WEIGHTS_HINT}"
        )
    if "vars" in mat or "params" in mat:
        raise CMHError(
            f"'{path}' is a MatConvNet DagNN file; CNN-F is read from the SimpleNN imagenet-vgg-f.mat "
            f"({WEIGHTS_HINT})"
        )
    if "meta" in mat:
        layout = "new"
        norm = _get(_unwrap(mat["meta"]), "normalization")
    elif "normalization" in mat:
        layout = "old"
        norm = mat["normalization"]
    else:
        raise CMHError(
            f"'{path}' has neither 'normalization' nor 'meta'; it is not imagenet-vgg-f.mat ({WEIGHTS_HINT})"
        )
    avg = _unwrap(_get(_unwrap(norm), "averageImage"))
    if avg is None or np.asarray(avg).size == 0:
        raise CMHError(f"'{path}' has no averageImage in its normalization; it is not imagenet-vgg-f.mat")
    avg = np.asarray(avg, dtype=np.float32)
    if avg.ndim == 1 or avg.size == 3:
        avg = avg.reshape(1, 1, 3)
    if avg.ndim != 3 or avg.shape[2] != 3:
        raise CMHError(f"'{path}': averageImage has shape {avg.shape}, expected HxWx3 or 3 values")

    layers = [_unwrap(x) for x in np.asarray(mat["layers"], dtype=object).reshape(-1)]
    convs, lrn, pools = [], None, []
    for layer in layers:
        kind = _text(_get(layer, "type")).lower()
        if kind == "conv":
            filters, biases = _conv_weights(layer)
            stride = _numbers(_get(layer, "stride"))
            pad = _pad4(_get(layer, "pad"), (0, 0, 0, 0))
            convs.append(
                (
                    _text(_get(layer, "name")),
                    filters,
                    biases,
                    int(stride[0]) if stride is not None else 1,
                    pad,
                )
            )
        elif kind in ("normalize", "lrn"):
            p = _numbers(_get(layer, "param"))
            lrn = tuple(float(v) for v in p[:4]) if p is not None and p.size >= 4 else DEFAULT_LRN
        elif kind == "pool":
            pools.append(_pad4(_get(layer, "pad"), DEFAULT_POOL_PAD))

    kernels = tuple(int(c[1].shape[0]) for c in convs)
    strides = tuple(c[3] for c in convs)
    if kernels != CNNF_KERNELS or strides != CNNF_STRIDES or len(pools) != 3 or lrn is None:
        what = f"{len(convs)} weight layers with kernels {list(kernels)} and strides {list(strides)}"
        raise CMHError(
            f"'{path}' is not CNN-F (imagenet-vgg-f): it has {what}, expected kernels {list(CNNF_KERNELS)} "
            f"and conv1 stride 4; {WEIGHTS_HINT}"
        )
    state: dict[str, torch.Tensor] = {}
    widths = []
    prev = 3
    for i, (_name, filters, biases, _stride, _pad) in enumerate(convs):
        h, w, c_in, c_out = filters.shape
        if c_in != prev or biases.shape[0] != c_out:
            raise CMHError(
                f"'{path}': layer {LAYER_NAMES[i]} has {c_in} input channels but the previous layer gives {prev}; "
                "the file is damaged or not CNN-F"
            )
        prev = c_out
        weight = torch.from_numpy(np.ascontiguousarray(filters.transpose(3, 2, 0, 1)))
        if i >= 5:  # fully connected: (C_out, C_in, h, w) flattened in torch's (C, H, W) order
            weight = weight.reshape(c_out, -1)
        state[f"{LAYER_NAMES[i]}.weight"] = weight
        state[f"{LAYER_NAMES[i]}.bias"] = torch.from_numpy(biases.copy())
        widths.append(c_out)
    conv_pads = []
    for i in range(5):
        t, b, left, r = convs[i][4]
        if not (t == b == left == r):
            raise CMHError(f"'{path}': {LAYER_NAMES[i]} has asymmetric padding {convs[i][4]}; not CNN-F")
        conv_pads.append(t)
    config = CNNFConfig(
        widths=tuple(widths[:7]),
        num_classes=widths[7],
        lrn=lrn,  # type: ignore[arg-type]
        pool_pads=tuple(pools),
        conv_pads=tuple(conv_pads),
    )
    return state, config, avg, layout
