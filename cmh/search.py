"""Search a database with a saved model: a caption finds photos, a photo finds captions (``cmh search``).

Ranking is the evaluation harness's (:mod:`cmh.metrics.retrieval`): ascending Hamming distance
``d = (K - q·b) / 2``, ties broken by ascending database index (a stable sort), so the top-k shown here are the
first k items of the ranking that mAP is computed over.

The database is a dataset's split part (encoded on the fly with the model, after checking that the dataset's
features were made by the model's pipeline) or a ``cmh encode`` shard directory made by the same model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from cmh.errors import CMHError


@dataclasses.dataclass
class Database:
    """Codes of one modality to search, with what is known about each item (all lists aligned with ``codes``)."""

    codes: np.ndarray  # (N, K) ±1 int8
    modality: str  # "image" | "text"
    rows: np.ndarray  # (N,) ids shown to the user (dataset row numbers, or the shard rows)
    labels: np.ndarray | None = None  # (N, c) multi-hot
    image_paths: list[str] | None = None
    texts: list[str] | None = None
    class_names: list[str] | None = None
    where: str = ""


@dataclasses.dataclass(frozen=True)
class Hit:
    """One retrieved item."""

    rank: int  # 1-based
    index: int  # position in the database
    row: int  # the item's id (dataset row)
    distance: int
    image: str | None
    text: str | None
    labels: tuple[str, ...]
    relevant: bool | None


def rank_hamming(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` database positions for one ±1 query ``(K,)`` and their Hamming distances (ties by index)."""
    q = np.asarray(query, dtype=np.int32).ravel()
    db = np.asarray(database, dtype=np.int32)
    if db.ndim != 2 or db.shape[1] != q.shape[0]:
        raise CMHError(
            f"the database codes are {db.shape}, the query has {q.shape[0]} bits; use the same model"
        )
    dist = (q.shape[0] - db @ q) // 2
    order = np.argsort(dist, kind="stable")[:k]
    return order, dist[order]


def _class_names(labels: np.ndarray | None, names: list[str] | None) -> list[str]:
    if labels is None:
        return []
    return [str(c) for c in (names or range(labels.shape[1]))]


def database_from_dataset(saved: Any, dataset: Any, modality: str, part: str = "database") -> Database:
    """Encode ``dataset``'s ``part`` in ``modality`` with the saved model (refusing another feature pipeline)."""
    from cmh.extract.query import check_same_pipeline, item_texts, pipeline_of
    from cmh.runner import check_codes

    where = f"'{dataset.name}'"
    check_same_pipeline(saved.pipeline, pipeline_of(dataset), where)
    trained = saved.dataset or {}
    for mod, have in (
        ("image", None if dataset.image is None else int(dataset.image.shape[1])),
        ("text", int(dataset.text.shape[1])),
    ):
        want = trained.get(f"{mod}_dim")
        if want is not None and have is not None and want != have:
            raise CMHError(
                f"the model was trained on {want}-d {mod} features but {where} has {have}-d ones; search the "
                "dataset the model was trained on (same feature pipeline)"
            )
    method = saved.method
    pairs = dataset.part(part)
    x = method.image_input(pairs) if modality == "image" else pairs.text
    encode = method.encode_image if modality == "image" else method.encode_text
    codes = check_codes(encode(x), len(pairs), method.bits, f"{method.name}.encode_{modality}")
    idx = getattr(dataset.split, part)
    texts = item_texts(dataset)
    return Database(
        codes=codes,
        modality=modality,
        rows=np.asarray(idx),
        labels=pairs.labels,
        image_paths=None if dataset.image_paths is None else [dataset.image_paths[i] for i in idx],
        texts=None if texts is None else [texts[i] for i in idx],
        class_names=(dataset.meta or {}).get("class_names"),
        where=where,
    )


def database_from_shards(saved: Any, directory: str | Path, modality: str) -> Database:
    """A ``cmh encode`` shard directory as a database; it must hold ``modality`` codes of this model."""
    from cmh.data.shards import load_codes

    codes, labels, manifest = load_codes(directory)
    if manifest["modality"] != modality:
        raise CMHError(
            f"'{directory}' holds {manifest['modality']} codes but this query searches {modality} codes; "
            f"encode the {modality} features with `cmh encode --modality {modality}`"
        )
    made_by = (manifest.get("source") or {}).get("model") or {}
    from cmh.data.shards import file_sha256

    if made_by.get("sha256") and made_by["sha256"] != file_sha256(saved.path):
        raise CMHError(
            f"the codes in '{directory}' were made by another model ({made_by.get('method')}, "
            f"{made_by.get('bits')} bits, {made_by.get('file')}); encode them with this model"
        )
    if int(manifest["bits"]) != saved.method.bits:
        raise CMHError(
            f"'{directory}' holds {manifest['bits']}-bit codes, the model makes {saved.method.bits}"
        )
    return Database(
        codes=codes, modality=modality, rows=np.arange(len(codes)), labels=labels, where=str(directory)
    )


def text_query_codes(saved: Any, text: str, drop_unknown: bool = False) -> np.ndarray:
    """A caption -> the model's ±1 text code ``(K,)`` through the recorded pipeline."""
    from cmh.extract.query import text_query

    if not saved.pipeline:
        raise CMHError(
            f"the model was trained on '{(saved.dataset or {}).get('name')}', whose text features were not made "
            "by `cmh extract`, so a typed text cannot be turned into its input; train on a dataset built with "
            "`cmh extract` (e.g. coco_mini)"
        )
    x = text_query(text, saved.pipeline, drop_unknown=drop_unknown)
    return np.asarray(saved.method.encode_text(x))[0]


def image_query_codes(saved: Any, path: str | Path, weights: str | None = None) -> np.ndarray:
    """A photo -> the model's ±1 image code ``(K,)`` (its backbone's features, or pixels in raw-image mode)."""
    from cmh.extract.images import ImageTransform
    from cmh.extract.query import image_query, read_image

    method = saved.method
    if getattr(method, "raw_images", False):
        read_image(path, ImageTransform())  # a clear error for an unreadable file
        return np.asarray(method.encode_image([str(path)]))[0]
    if not saved.pipeline:
        raise CMHError(
            f"the model was trained on '{(saved.dataset or {}).get('name')}', whose image features were not made "
            "by `cmh extract`, so a photo cannot be turned into its input; train on a dataset built with "
            "`cmh extract` (e.g. coco_mini)"
        )
    return np.asarray(method.encode_image(image_query(path, saved.pipeline, weights)))[0]


def parse_labels(text: str | None, class_names: list[str] | None, classes: int) -> np.ndarray | None:
    """``"person,horse"`` (class names or indices) -> a multi-hot ``(classes,)`` vector, or ``None``."""
    if not text:
        return None
    from cmh.errors import did_you_mean

    names = class_names or [str(i) for i in range(classes)]
    pos = {n: i for i, n in enumerate(names)}
    vec = np.zeros(classes, dtype=np.uint8)
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item in pos:
            vec[pos[item]] = 1
        elif item.isdigit() and int(item) < classes:
            vec[int(item)] = 1
        else:
            raise CMHError(f"unknown label '{item}'{did_you_mean(item, names)}; use class names or indices")
    return vec


def search(db: Database, query: np.ndarray, k: int = 10, query_labels: np.ndarray | None = None) -> list[Hit]:
    """The top ``k`` items of ``db`` for a ±1 query code; relevant = shares a label (when both are known)."""
    if k < 1:
        raise CMHError(f"--top must be positive, got {k}")
    order, dist = rank_hamming(query, db.codes, k)
    names = _class_names(db.labels, db.class_names)
    hits = []
    for r, (i, d) in enumerate(zip(order.tolist(), dist.tolist(), strict=True), 1):
        lab = db.labels[i] if db.labels is not None else None
        relevant = None
        if lab is not None and query_labels is not None:
            relevant = bool(np.any((lab > 0) & (query_labels > 0)))
        hits.append(
            Hit(
                rank=r,
                index=int(i),
                row=int(db.rows[i]),
                distance=int(d),
                image=db.image_paths[i] if db.image_paths else None,
                text=db.texts[i] if db.texts else None,
                labels=tuple(names[c] for c in np.flatnonzero(lab)) if lab is not None else (),
                relevant=relevant,
            )
        )
    return hits
