"""Build the ``coco_mini`` dataset (159 real MS-COCO photos, 5 captions each, 80 classes) from raw files.

Input: a folder with ``annotations.jsonl`` (``image``, ``captions``, ``labels`` per line), ``images/`` and
``classes.txt`` (see the data folder's SOURCE.txt). Output: a native cmh dataset ``.npz`` with exactly the
keys ``name``, ``image`` (n, d) float32 (backbone features), ``text`` (n, vocab) float32 (caption bag of
words, SSAH's MS-COCO recipe), ``labels`` (n, 80) uint8, and the split ``train``/``query``/``database``
(int64; ``n_query`` random queries from ``split_seed``, database = the rest, train = the database, as in
DCMH/SSAH). Beside it go the image-feature file (``<stem>.image.npz``, resumable), the text file
(``<stem>.text.npz`` + vocabulary), ``<stem>.json`` describing how it was built, and a YAML spec ``cmh.yaml``
(same arrays and split, plus class names and image paths) so that ``cmh run --dataset coco_mini --data
<folder>`` finds it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cmh.errors import CMHError, DataError


def read_annotations(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``(records, class names)`` from ``root/annotations.jsonl`` and ``root/classes.txt``."""
    root = Path(root)
    ann = root / "annotations.jsonl"
    if not ann.is_file():
        raise CMHError(
            f"'{ann}' not found; --data must be the coco_mini folder (with annotations.jsonl, images/, classes.txt)"
        )
    records = [json.loads(line) for line in ann.read_text(encoding="utf-8").splitlines() if line.strip()]
    classes_file = root / "classes.txt"
    classes = classes_file.read_text(encoding="utf-8").splitlines() if classes_file.is_file() else []
    if not classes:
        classes = [str(i) for i in range(1 + max(max(r["labels"]) for r in records))]
    return records, classes


def build_coco_mini(
    root: str | Path,
    out: str | Path,
    *,
    backbone: str = "efficientnet-lite0",
    weights: str | Path | None = None,
    vocab_size: int = 2000,
    n_query: int = 30,
    split_seed: int = 0,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    progress: bool = True,
    binary: bool = True,
) -> dict[str, Any]:
    """Extract image features and caption bag-of-words under ``root`` and write the dataset to ``out``.

    Returns the description that is also written to ``<out stem>.json``.
    """
    from cmh.data.splits import random_split
    from cmh.extract.pipeline import _atomic_savez, extract_images, load_features
    from cmh.extract.text import TextFeatures, bag_of_words, save_text_features

    root, out = Path(root), Path(out)
    records, classes = read_annotations(root)
    stem = out.name[:-4] if out.name.endswith(".npz") else out.name
    image_file = out.with_name(f"{stem}.image.npz")
    text_file = out.with_name(f"{stem}.text.npz")

    result = extract_images(
        root / "images",
        image_file,
        backbone,
        weights=weights,
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
    )
    feats, paths, meta = load_features(image_file)
    by_path = {f"images/{p}": i for i, p in enumerate(paths)}
    keep = [r for r in records if r["image"] in by_path]
    if len(keep) < len(records):
        missing = [r["image"] for r in records if r["image"] not in by_path]
        print(
            f"cmh: warning: {len(missing)} annotated images have no features (unreadable or missing, e.g. "
            f"{missing[0]}); their rows are dropped",
            file=sys.stderr,
        )
    if len(keep) <= n_query:
        raise DataError(f"only {len(keep)} usable images; need more than the {n_query} queries")
    image = feats[[by_path[r["image"]] for r in keep]]

    keys = [r["image"] for r in keep]
    matrix, vocab = bag_of_words(
        [r["captions"] for r in keep], mode="captions", vocab_size=vocab_size, binary=binary
    )
    text_feats = TextFeatures(matrix=matrix, vocabulary=vocab, keys=keys, field="captions", binary=binary)
    save_text_features(text_feats, text_file)
    text = text_feats.aligned_to(keys).toarray().astype(np.float32)

    labels = np.zeros((len(keep), len(classes)), dtype=np.uint8)
    for i, r in enumerate(keep):
        labels[i, r["labels"]] = 1
    n = len(keep)
    split = random_split(n, n_query, n - n_query, seed=split_seed, protocol="coco_mini")
    _atomic_savez(
        out,
        name=np.array("coco_mini"),
        image=image.astype(np.float32),
        text=text,
        labels=labels,
        train=split.train.astype(np.int64),
        query=split.query.astype(np.int64),
        database=split.database.astype(np.int64),
    )
    info = {
        "name": "coco_mini",
        "source": str(root.resolve()),
        "n": n,
        "image": {
            "backbone": meta.get("backbone"),
            "feature_layer": meta.get("feature_layer"),
            "dim": int(image.shape[1]),
            "weights": meta.get("weights"),
            "file": image_file.name,
            "images_per_s": round(result.images_per_s, 2),
        },
        "text": {
            "field": "captions",
            "vocab_size": len(vocab),
            "requested_vocab_size": vocab_size,
            "binary": binary,
            "file": text_file.name,
        },
        "labels": {"classes": len(classes), "labels_per_item": float(labels.sum(1).mean())},
        "split": {
            "seed": split_seed,
            "query": int(len(split.query)),
            "database": int(len(split.database)),
            "train": int(len(split.train)),
            "protocol": "query random, database = rest, train = database",
        },
        "rows": keys,
    }
    if len(vocab) < vocab_size:
        info["text"]["note"] = f"the captions have only {len(vocab)} distinct non-stop words"
    out.with_name(f"{stem}.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    _write_spec(out, stem, keys, classes, root, n_query, split_seed)
    return info


def _write_spec(
    out: Path, stem: str, keys: list[str], classes: list[str], root: Path, n_query: int, seed: int
) -> None:
    """``cmh.yaml`` beside the dataset so ``--dataset coco_mini --data <folder>`` finds it; the spec's split is
    the same seeded random split (query ``n_query``, train = database = the rest) and ``--split-seed`` varies it."""
    import yaml

    out.with_name(f"{stem}.images.txt").write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    n = len(keys)
    spec = {
        "name": "coco_mini",
        "description": "159 MS-COCO photos: image features + caption bag of words (cmh extract coco-mini)",
        "image": {"path": out.name, "key": "image"},
        "text": {"path": out.name, "key": "text"},
        "labels": {"path": out.name, "key": "labels"},
        "split": {"query": n_query, "train": n - n_query, "seed": seed},
        "image_paths": {"path": f"{stem}.images.txt", "root": str(root.resolve())},
        "class_names": list(classes),
    }
    out.with_name("cmh.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
