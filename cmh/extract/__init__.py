"""Feature extraction (``cmh extract``): image backbones, image features, bag-of-words texts, coco_mini.

Public API:

- :func:`cmh.extract.backbones.build_backbone` ``(name, weights=None) -> Backbone`` (an ``nn.Module`` mapping
  uint8 images ``(n, 3, 224, 224)`` to features; ``.transform`` makes those tensors from PIL images);
- :func:`cmh.extract.pipeline.extract_images` — folder/list of images -> resumable ``.npz`` of features;
- :func:`cmh.extract.text.extract_text` — jsonl/txt/csv -> bag-of-words CSR ``.npz`` + vocabulary;
- :func:`cmh.extract.coco_mini.build_coco_mini` — the real 159-photo set -> a native dataset ``.npz``.
"""

from cmh.extract.backbones import Backbone, build_backbone, list_backbones
from cmh.extract.images import ImageTransform, list_images
from cmh.extract.pipeline import ExtractResult, extract_images, load_features

__all__ = [
    "Backbone",
    "ExtractResult",
    "ImageTransform",
    "build_backbone",
    "extract_images",
    "list_backbones",
    "list_images",
    "load_features",
]
