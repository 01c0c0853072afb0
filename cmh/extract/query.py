"""A dataset's feature pipeline, kept with a saved model, and new queries made with it.

``cmh extract coco-mini`` (and any dataset whose files carry the same ``<stem>.json`` build description)
records how its features were made: the caption bag of words (vocabulary, tokenisation mode, 0/1 or counts)
and the image backbone (name, weights, resize/crop). :func:`pipeline_of` reads that description for a loaded
dataset; :func:`cmh.models.save_model` stores it in the model file, so that ``cmh search`` turns a caption
(:func:`text_query`) or a photo (:func:`image_query`) into exactly the kind of input the model was trained
on. :func:`check_same_pipeline` refuses a database made another way.

Pipeline dict (plain types)::

    {"text": {"mode": "captions", "binary": True, "vocabulary": [...], "vocab_sha256": "..."},
     "image": {"backbone": "efficientnet-lite0", "weights": "<file> (<bytes> bytes)", "feature_dim": 1280,
               "resize": 256, "crop": 224},
     "source": "<folder of the raw data>", "build": "<the build description file>"}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cmh.errors import CMHError, did_you_mean


def _build_file(dataset: Any) -> Path | None:
    """The ``<stem>.json`` build description beside the dataset's files, if any."""
    source = (getattr(dataset, "meta", None) or {}).get("source")
    if not source:
        return None
    src = Path(source)
    candidates = []
    if src.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml

            spec = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
            text = spec.get("text") or {}
            rel = text.get("path") if isinstance(text, dict) else text
            if rel:
                candidates.append(src.parent / Path(str(rel)).with_suffix(".json").name)
        except (OSError, ValueError):
            return None
    elif src.is_file():
        candidates.append(src.with_suffix(".json"))
    for c in candidates:
        if c.is_file():
            return c
    return None


def _read_build(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "text" in info and "image" in info else None


def vocab_sha(vocabulary: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(vocabulary).encode()).hexdigest()


def pipeline_of(dataset: Any) -> dict[str, Any] | None:
    """The feature pipeline of a loaded dataset (see module docstring), or ``None`` when its features were
    not made by ``cmh extract`` (synthetic, Wikipedia, files from elsewhere)."""
    from cmh.extract.text import load_text_features

    build = _build_file(dataset)
    info = _read_build(build) if build else None
    if info is None:
        return None
    text_file = build.parent / str(info["text"].get("file", ""))
    if not text_file.is_file():
        return None
    vocab = load_text_features(text_file).vocabulary
    image = dict(info["image"])
    resize, crop = 256, 224
    image_file = build.parent / str(image.get("file", ""))
    if image_file.is_file():
        with np.load(image_file) as z:
            resize = int(z["resize"]) if "resize" in z.files else resize
            crop = int(z["crop"]) if "crop" in z.files else crop
    return {
        "text": {
            "mode": "tags" if info["text"].get("field") == "tags" else "captions",
            "binary": bool(info["text"].get("binary", True)),
            "vocabulary": list(vocab),
            "vocab_sha256": vocab_sha(vocab),
        },
        "image": {
            "backbone": image.get("backbone"),
            "weights": image.get("weights"),
            "feature_dim": int(image.get("dim", 0)),
            "resize": resize,
            "crop": crop,
        },
        "source": info.get("source"),
        "build": str(build),
    }


def _signature(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    img = p.get("image") or {}
    weights = str(img.get("weights") or "")
    size = re.search(r"\((\d+) bytes\)", weights)
    return {
        "text": {k: p["text"].get(k) for k in ("mode", "binary", "vocab_sha256")},
        "image": {
            "backbone": img.get("backbone"),
            "weights_bytes": size.group(1) if size else weights,
            **{k: img.get(k) for k in ("feature_dim", "resize", "crop")},
        },
    }


def check_same_pipeline(model: dict[str, Any] | None, database: dict[str, Any] | None, where: str) -> None:
    """A one-line error when the model's features were made another way than the database's."""
    a, b = _signature(model), _signature(database)
    if a == b:
        return
    if a is None or b is None:
        had = "was trained on features without a recorded pipeline" if a is None else "records a pipeline"
        other = "has one (cmh extract)" if a is None else "has none"
        raise CMHError(
            f"the model {had} but the database {where} {other}; search the dataset the model was trained on"
        )
    diff = [f"{m}.{k}" for m in ("text", "image") for k in a[m] if a[m][k] != b[m][k]]
    raise CMHError(
        f"the model's feature pipeline differs from the database {where} ({', '.join(diff)}); encode the "
        "database with features made the same way (same vocabulary and image backbone) or retrain"
    )


def text_query(text: str, pipeline: dict[str, Any], drop_unknown: bool = False) -> sp.csr_matrix:
    """One caption/tag string -> ``(1, vocab)`` float32 bag of words under ``pipeline`` (as at training).

    Words outside the vocabulary are an error naming them (``drop_unknown=True`` ignores them); a text with
    no vocabulary word left is an error too. Stop words are dropped silently, as at training.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    from cmh.extract.text import _tag_tokens

    t = pipeline["text"]
    vocab = list(t["vocabulary"])
    if t["mode"] == "tags":
        vec = CountVectorizer(
            vocabulary=vocab, tokenizer=str.split, token_pattern=None, lowercase=False, dtype=np.float32
        )
        doc = " ".join(_tag_tokens(text))
    else:
        vec = CountVectorizer(vocabulary=vocab, stop_words="english", lowercase=True, dtype=np.float32)
        doc = text
    tokens = vec.build_analyzer()(doc)
    known = set(vocab)
    unknown = list(dict.fromkeys(w for w in tokens if w not in known))
    if unknown and not drop_unknown:
        hint = did_you_mean(unknown[0], vocab)
        raise CMHError(
            f"{len(unknown)} word(s) of the query are not in the model's {len(vocab)}-word vocabulary: "
            f"{', '.join(unknown[:8])}{hint}; rephrase, or pass --drop-unknown to ignore them"
        )
    m = vec.transform([doc]).tocsr().astype(np.float32)
    if m.nnz == 0:
        raise CMHError(
            f"the query '{text}' has no word of the model's vocabulary (stop words are dropped); "
            "use words from the training captions"
        )
    if t.get("binary", True):
        m.data[:] = 1.0
    return m


def image_query(path: str | Path, pipeline: dict[str, Any], weights: str | Path | None = None) -> np.ndarray:
    """One photo -> ``(1, feature_dim)`` float32 features with the pipeline's backbone (CPU, float32).

    ``weights`` overrides the weights file recorded in the pipeline (needed for cnn-f/vgg19 on another
    machine). An unreadable image is a one-line :class:`CMHError`.
    """
    import torch

    from cmh.extract.backbones import build_backbone
    from cmh.extract.images import ImageTransform

    img = pipeline.get("image") or {}
    name = img.get("backbone")
    if not name:
        raise CMHError(
            "the model records no image backbone; --image needs a model trained on extracted features"
        )
    if weights is None and name != "efficientnet-lite0":
        recorded = str(img.get("weights") or "").split(" (")[0]
        weights = recorded if recorded and Path(recorded).is_file() else None
        if weights is None:
            raise CMHError(f"the {name} weights the model was trained with are not here; pass --weights PATH")
    transform = ImageTransform(int(img.get("resize", 256)), int(img.get("crop", 224)))
    x = read_image(path, transform)
    # float32, channels-last on the CPU: the same arithmetic as `cmh extract` on the CPU, so a database photo
    # given as a query gets its extracted features (to float32 round-off: bit for bit only where the CPU's
    # kernels for one image are those it used for the batch)
    bb = build_backbone(name, weights, transform=transform).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        feats = bb(x[None].contiguous(memory_format=torch.channels_last)).float().numpy()
    if feats.shape[1] != int(img.get("feature_dim", feats.shape[1])):
        raise CMHError(
            f"the {name} backbone gives {feats.shape[1]}-d features, the model expects {img['feature_dim']}"
        )
    return feats


def read_image(path: str | Path, transform: Any) -> Any:
    """Decode one photo with ``transform`` (uint8 (3, crop, crop)); unreadable files are a CMHError."""
    from cmh.extract.images import load_image

    p = Path(path)
    if not p.is_file():
        raise CMHError(f"image '{p}' not found; pass the path of a photo")
    try:
        return load_image(p, transform)
    except Exception as exc:  # noqa: BLE001 - every decoding failure is the user's file
        raise CMHError(f"cannot read image '{p}' ({type(exc).__name__}); pass a JPEG/PNG photo") from None


def item_captions(dataset: Any) -> list[list[str]] | None:
    """Every caption of every dataset row, from the raw annotations recorded in the dataset's build
    description (``None`` when unknown)."""
    build = _build_file(dataset)
    info = _read_build(build) if build else None
    if not info or not info.get("rows") or not info.get("source"):
        return None
    ann = Path(info["source"]) / "annotations.jsonl"
    if not ann.is_file() or len(info["rows"]) != dataset.n:
        return None
    by_image: dict[str, list[str]] = {}
    for line in ann.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            caps = rec.get("captions") or [""]
            by_image[rec.get("image")] = [
                str(c).strip() for c in (caps if isinstance(caps, list) else [caps])
            ]
    return [by_image.get(r, [""]) for r in info["rows"]]


def item_texts(dataset: Any) -> list[str] | None:
    """One caption per dataset row (the first of the item's captions), or ``None`` when unknown."""
    caps = item_captions(dataset)
    return None if caps is None else [c[0] if c else "" for c in caps]
