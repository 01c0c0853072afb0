"""Image files -> fixed-size uint8 tensors: listing, robust PIL decoding and the resize/centre-crop transform.

The transform is shared by every backbone (normalisation happens inside :class:`cmh.extract.backbones.Backbone`),
so data loaders ship compact ``uint8 (3, crop, crop)`` tensors between processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cmh.errors import CMHError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(images: str | Path) -> tuple[Path, list[str]]:
    """``DIR`` (searched recursively for image files) or ``LIST.txt`` (one path per line, relative to the
    list's folder or absolute; blank lines and ``#`` comments ignored) -> ``(root, sorted relative names)``.

    Names in a list keep the list's order. Raises :class:`CMHError` when nothing is found.
    """
    src = Path(images)
    if src.is_dir():
        names = sorted(
            p.relative_to(src).as_posix()
            for p in src.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )
        if not names:
            raise CMHError(
                f"no image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) found under '{src}'; "
                "point --images at a folder of images or a text file listing them"
            )
        return src, names
    if src.is_file():
        try:
            lines = src.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise CMHError(
                f"'{src}' is not a text file; --images takes a folder or a text file with one image path per line"
            ) from None
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not names:
            raise CMHError(f"the image list '{src}' names no images; write one image path per line")
        return src.parent, names
    raise CMHError(f"--images '{src}' does not exist; give a folder of images or a text file listing them")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha (RGBA/LA/PA, palette with transparency) is composited on white, CMYK and
    grayscale are converted, 16-bit/float grayscale is rescaled to 0..255."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class ImageTransform:
    """PIL image -> ``uint8 (3, crop, crop)`` tensor: RGB, shorter side resized to ``resize`` (bilinear,
    antialiased), centre crop ``crop`` (the usual 0.875 crop: 256 -> 224).

    JPEG files are decoded at a reduced scale when that still leaves the shorter side >= ``resize``
    (``Image.draft``), which makes decoding large photos several times faster.
    """

    def __init__(self, resize: int = 256, crop: int = 224) -> None:
        if crop > resize:
            raise CMHError(f"crop size {crop} exceeds resize size {resize}; use crop <= resize")
        self.resize, self.crop = int(resize), int(crop)

    def __repr__(self) -> str:
        return f"ImageTransform(resize={self.resize}, crop={self.crop})"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        if img.format == "JPEG" and min(w, h) > 2 * self.resize:
            scale = self.resize / min(w, h)
            img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
        img.load()
        img = to_rgb(img)
        w, h = img.size
        scale = self.resize / min(w, h)
        nw, nh = max(self.resize, round(w * scale)), max(self.resize, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        img = img.crop((left, top, left + self.crop, top + self.crop))
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, transform: ImageTransform) -> torch.Tensor:
    """Open, fully decode and transform one file (raises on unreadable/corrupt files)."""
    with Image.open(path) as img:
        return transform(img)  # decodes lazily (after choosing a JPEG draft scale)


class ImageFiles(torch.utils.data.Dataset):
    """Map-style dataset over image files; item ``i`` -> ``(i, uint8 tensor, ok, error message)``.

    Unreadable files give ``ok = False`` and a zero tensor instead of raising, so one bad file never stops a
    run; the caller records and skips them.
    """

    def __init__(self, paths: Sequence[str | Path], transform: ImageTransform) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, bool, str]:
        try:
            return i, load_image(self.paths[i], self.transform), True, ""
        except Exception as exc:  # noqa: BLE001 - every decoding failure is reported, not raised
            empty = torch.zeros(3, self.transform.crop, self.transform.crop, dtype=torch.uint8)
            return i, empty, False, f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
