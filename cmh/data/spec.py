"""YAML dataset specs: point cmh at your own files without converting them.

Example (paths relative to the YAML file; see docs/data.md for every field)::

    name: my-flickr
    image: {path: feats.npy}                 # .npy (memory-mapped), .npz/.mat/.h5 with key, .txt/.csv
    text: {path: tags.mat, key: YAll}        # dense or sparse (scipy save_npz / MATLAB sparse)
    labels: {path: labels.mat, key: LAll}    # multi-hot (n, c), or class ids (n,) with base: 0|1
    split: {protocol: mirflickr25k}          # or {query: 2000, train: 10000}, or index files
    # optional: image_paths: {path: images.txt, root: images/}; class_names: classes.txt; drop_unlabelled: true

Split seeds: a random split uses ``load_dataset(..., split_seed=s)`` (``--split-seed``) when ``s`` is non-zero,
else the spec's ``split.seed`` (default 0); the seed actually used is stored in the split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cmh.data.dataset import CrossModalDataset
from cmh.data.loaders import (
    as_features,
    as_labels,
    check_labelled,
    check_rows,
    default_split,
    drop_unlabelled,
    read_array,
    split_from_indices,
)
from cmh.data.mat import check_file
from cmh.data.splits import PROTOCOLS, protocol_split, random_split
from cmh.errors import DataError, did_you_mean

SPEC_KEYS = (
    "name",
    "image",
    "text",
    "labels",
    "split",
    "image_paths",
    "class_names",
    "drop_unlabelled",
    "description",
)
ARRAY_KEYS = ("path", "key", "base", "transpose", "root")
SPLIT_KEYS = ("protocol", "seed", "query", "train", "database")


def read_spec(path: str | Path) -> dict[str, Any]:
    """Parse and check a YAML dataset spec; returns the mapping (paths not yet resolved)."""
    import yaml

    p = check_file(path, "dataset spec")
    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"dataset spec '{p.name}' is not valid YAML{where}; fix its syntax") from None
    if not isinstance(spec, dict):
        raise DataError(f"dataset spec '{p.name}' must be a mapping with image, text and labels entries")
    for key in spec:
        if key not in SPEC_KEYS:
            raise DataError(
                f"dataset spec '{p.name}': unknown field '{key}'{did_you_mean(key, SPEC_KEYS)}; "
                f"fields are {', '.join(SPEC_KEYS)}"
            )
    for key in ("text", "labels"):
        if key not in spec:
            raise DataError(
                f"dataset spec '{p.name}' has no '{key}' entry; add {key}: {{path: FILE, key: NAME}}"
            )
    if "image" not in spec and "image_paths" not in spec:
        raise DataError(f"dataset spec '{p.name}' has neither 'image' features nor 'image_paths'; add one")
    return spec


def _entry(spec_name: str, field: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"path": value}
    if not isinstance(value, dict) or "path" not in value:
        raise DataError(
            f"dataset spec '{spec_name}': '{field}' needs a file, e.g. {field}: {{path: FILE, key: NAME}}"
        )
    for k in value:
        if k not in ARRAY_KEYS:
            raise DataError(
                f"dataset spec '{spec_name}': '{field}' has unknown option '{k}'{did_you_mean(k, ARRAY_KEYS)}"
            )
    return value


def _resolve(base: Path, rel: str) -> Path:
    q = Path(str(rel)).expanduser()
    return q if q.is_absolute() else base / q


def _load_entry(base: Path, spec_name: str, field: str, value: Any) -> tuple[Any, str]:
    e = _entry(spec_name, field, value)
    path = _resolve(base, e["path"])
    x = read_array(path, e.get("key"), what=f"{field}")
    if e.get("transpose"):
        x = x.T
    src = f"'{path.name}'" + (f" ({e['key']})" if e.get("key") else "")
    return x, src


def load_spec(path: str | Path, split_seed: int = 0, name: str | None = None) -> CrossModalDataset:
    """Load the dataset described by the YAML spec at ``path`` (see module docstring)."""
    p = Path(path).expanduser().resolve()
    spec = read_spec(p)
    base = p.parent
    ds_name = name or str(spec.get("name") or p.stem)

    labels_entry = _entry(p.name, "labels", spec["labels"])
    raw_labels, labels_src = _load_entry(base, p.name, "labels", labels_entry)
    labels = as_labels(raw_labels, labels_src, base=int(labels_entry.get("base", 0)))
    text, text_src = _load_entry(base, p.name, "text", spec["text"])
    image, image_src = (None, "")
    if "image" in spec:
        image, image_src = _load_entry(base, p.name, "image", spec["image"])
    image_paths = _image_paths(base, p.name, spec["image_paths"]) if "image_paths" in spec else None

    check_rows(
        f"dataset spec '{p.name}'",
        image=image,
        text=text,
        labels=labels,
        image_paths=None if image_paths is None else np.empty(len(image_paths)),
    )
    dropped = 0
    if spec.get("drop_unlabelled"):
        kept, idx = drop_unlabelled(
            {"image": image, "text": text, "labels": labels, "image_paths": image_paths}
        )
        dropped = labels.shape[0] - len(idx)
        image, text, labels, image_paths = kept["image"], kept["text"], kept["labels"], kept["image_paths"]
    else:
        check_labelled(labels, labels_src, "set 'drop_unlabelled: true' in the spec to drop them")
    if image is not None:
        image = as_features(image, "image features", image_src)
    text = as_features(text, "text features", text_src)
    n = labels.shape[0]
    split = _spec_split(base, p.name, spec.get("split"), n, split_seed, dropped)
    meta: dict[str, Any] = {"source": str(p), "format": "cmh-yaml", "dropped_rows": dropped}
    if spec.get("class_names"):
        meta["class_names"] = _class_names(base, spec["class_names"])
    return CrossModalDataset(ds_name, image, text, labels, split, image_paths=image_paths, meta=meta)


def _image_paths(base: Path, spec_name: str, value: Any) -> tuple[str, ...]:
    e = _entry(spec_name, "image_paths", value)
    list_file = check_file(_resolve(base, e["path"]), "image path list")
    root = _resolve(base, str(e["root"])) if "root" in e else list_file.parent
    lines = [ln.strip() for ln in list_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return tuple(str(_resolve(root, ln)) for ln in lines)


def _class_names(base: Path, value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    f = check_file(_resolve(base, str(value)), "class names file")
    return [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _spec_split(base: Path, spec_name: str, split: Any, n: int, split_seed: int, dropped: int):
    if split is None:
        return default_split(n, split_seed)
    if isinstance(split, str):
        split = {"protocol": split}
    if not isinstance(split, dict):
        raise DataError(
            f"dataset spec '{spec_name}': 'split' must be a mapping, e.g. split: {{protocol: mirflickr25k}}"
        )
    for k in split:
        if k not in SPLIT_KEYS:
            raise DataError(
                f"dataset spec '{spec_name}': unknown split option '{k}'{did_you_mean(k, SPLIT_KEYS)}"
            )
    seed = int(split_seed) if split_seed else int(split.get("seed", 0))
    if "protocol" in split:
        proto = str(split["protocol"])
        if proto == "random":
            return default_split(n, seed)
        if proto not in PROTOCOLS:
            raise DataError(
                f"dataset spec '{spec_name}': unknown split protocol '{proto}'"
                f"{did_you_mean(proto, PROTOCOLS)}; known: {', '.join(PROTOCOLS)}"
            )
        return protocol_split(n, proto, seed=seed)
    q = split.get("query")
    if isinstance(q, int) and not isinstance(q, bool):
        t = split.get("train", n - q)
        if not isinstance(t, int):
            raise DataError(f"dataset spec '{spec_name}': with query: {q} give train as a number of rows too")
        return random_split(n, q, t, seed=seed, protocol="random")
    if q is None:
        raise DataError(
            f"dataset spec '{spec_name}': split needs 'protocol', sizes (query: N, train: N) or index files"
        )
    if dropped:
        raise DataError(
            f"dataset spec '{spec_name}': index-file splits cannot be combined with drop_unlabelled "
            f"({dropped} rows were dropped, so the indices would shift); clean the files instead"
        )
    parts = {}
    for part in ("query", "train", "database"):
        v = split.get(part)
        if v is None:
            parts[part] = None
        elif isinstance(v, list):
            parts[part] = np.asarray(v)
        else:
            parts[part] = read_array(_resolve(base, str(v)), None, what=f"split '{part}' index", mmap=False)
    return split_from_indices(n, parts["query"], parts["train"], parts["database"], protocol="custom")
