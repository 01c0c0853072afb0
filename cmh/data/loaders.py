"""Loaders for the benchmark file layouts and cmh's native ``.npz`` (docs/data.md).

Every loader returns a validated :class:`~cmh.data.dataset.CrossModalDataset` and reports problems as one-line
:class:`~cmh.errors.DataError` messages that name the file, what was found and what was expected.

Layouts
-------
- **native** ``.npz`` (:func:`load_npz`, written by :func:`save_npz` / ``cmh data convert``): ``image`` (n, d_img),
  ``text`` (n, d_txt) or its CSR parts ``text_data``/``text_indices``/``text_indptr``/``text_shape``, ``labels``
  (n, c) multi-hot, optional ``train``/``query``/``database`` int64 indices (+ ``split_protocol``,
  ``split_seed``), optional ``image_paths`` and ``name``.
- **Wikipedia** (Rasiwasia et al., ACM MM 2010) as used by CVH/SCM/SePH (:func:`load_wikipedia`):
  ``raw_features.mat`` (``I_tr``, ``I_te``, ``T_tr``, ``T_te``) plus ``trainset_txt_img_cat.list`` /
  ``testset_txt_img_cat.list`` (tab-separated ``text id, image id, category 1..10``), or the ``wikipedia.npz``
  convenience copy. Split: query = the 693 test pairs, database = train = the 2,173 training pairs.
- **DCMH** (Jiang & Li, CVPR 2017 release; :func:`load_dcmh`): one file holding ``images``/``YAll``/``LAll``
  (``FLICKR-25K.mat``, MATLAB v7.3) or separate ``LAll``/``YAll``/``IAll`` files (``mirflickr25k-lall.mat`` …).
  ``images`` may be features ``(n, d)`` or raw pixels ``(n, h, w, 3)``; raw pixels need extracted features
  (``image_features=``). Split: the paper protocol (SSAH Table 1) with a seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cmh._atomic import atomic_path
from cmh.data.dataset import PARTS, CrossModalDataset, Split, one_hot
from cmh.data.mat import check_file, is_hdf5, mat_variables, read_mat
from cmh.data.splits import fixed_split, protocol_split, random_split
from cmh.errors import DataError

# ----------------------------------------------------------------------------------------------------------------
# generic arrays


def read_array(path: str | Path, key: str | None = None, what: str = "array", mmap: bool = True) -> Any:
    """One array from ``.npy`` (memory-mapped), ``.npz``, ``.mat`` (v5/v7.3), ``.h5``/``.hdf5`` or text.

    ``key`` names the array inside ``.npz``/``.mat``/``.h5`` containers (optional when the file holds exactly
    one; in an ``.npz`` with several arrays, ``features`` is taken by default, as written by ``cmh extract``).
    A scipy ``save_npz`` file, or a cmh native ``.npz`` with CSR parts ``<key>_data`` …, comes back as
    ``scipy.sparse.csr_matrix``. Text files (``.txt``, ``.csv``, ``.tsv``) are read with ``np.loadtxt``.
    """
    p = check_file(path, f"{what} file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{what} file '{p}' is not a readable .npy array ({_first_line(exc)})") from None
    if suffix == ".npz":
        return _read_npz_member(p, key, what)
    if suffix in (".mat", ".h5", ".hdf5", ".hdf"):
        if suffix != ".mat" and not is_hdf5(p):
            raise DataError(f"{what} file '{p}' is not an HDF5 file; check the path")
        if key is None:
            names = list(mat_variables(p))
            if len(names) != 1:
                raise DataError(
                    f"{what} file '{p.name}' holds {len(names)} variables ({', '.join(sorted(names)) or 'none'}); "
                    "name one with 'key'"
                )
            key = names[0]
        return read_mat(p, [key])[key]
    if suffix in (".txt", ".csv", ".tsv", ".dat"):
        delimiter = "," if suffix == ".csv" else ("\t" if suffix == ".tsv" else None)
        try:
            return np.loadtxt(p, delimiter=delimiter, ndmin=1)
        except ValueError as exc:
            raise DataError(f"{what} file '{p}' is not a numeric text table ({_first_line(exc)})") from None
    raise DataError(
        f"{what} file '{p.name}' has an unknown extension '{suffix}'; use .npy, .npz, .mat, .h5 or .txt/.csv"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _open_npz(p: Path) -> Any:
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"'{p}' is not a readable .npz file ({_first_line(exc)}); is it truncated?") from None


def _read_npz_member(p: Path, key: str | None, what: str) -> Any:
    z = _open_npz(p)
    with z:
        files = list(z.files)
        if {"format", "shape", "indptr", "indices", "data"} <= set(files):  # scipy.sparse.save_npz
            return sp.load_npz(p).tocsr()
        if key is not None and key not in files and f"{key}_data" in files:
            return _csr_from(z, key, p)
        if key is None and len(files) > 1 and "features" in files:
            key = "features"  # the feature files written by `cmh extract image`
        if key is None:
            if len(files) != 1:
                raise DataError(
                    f"{what} file '{p.name}' holds {len(files)} arrays ({', '.join(files)}); name one with 'key'"
                )
            key = files[0]
        if key not in files:
            raise DataError(
                f"{what} file '{p.name}' has no array '{key}' (it has: {', '.join(files)}); fix 'key'"
            )
        return z[key]


def _csr_from(z: Any, key: str, p: Path) -> sp.csr_matrix:
    parts = [f"{key}_{s}" for s in ("data", "indices", "indptr", "shape")]
    missing = [k for k in parts if k not in z.files]
    if missing:
        raise DataError(f"'{p.name}' has sparse '{key}' parts but lacks {', '.join(missing)}; rewrite it")
    data, indices, indptr, shape = (z[k] for k in parts)
    try:
        return sp.csr_matrix((data, indices, indptr), shape=tuple(int(s) for s in shape))
    except ValueError as exc:
        raise DataError(f"'{p.name}': sparse '{key}' parts are inconsistent ({_first_line(exc)})") from None


# ----------------------------------------------------------------------------------------------------------------
# array validation and conversion


def as_features(x: Any, what: str, source: str) -> Any:
    """2-d float32 features (dense, or CSR for sparse input); NaN/inf and wrong rank raise :class:`DataError`.

    A float32 memory map stays a memory map; other dtypes are converted (a copy).
    """
    if sp.issparse(x):
        x = x.tocsr().astype(np.float32)
        values = x.data
    else:
        x = np.asarray(x) if not isinstance(x, np.memmap) else x
        if x.ndim == 1:
            raise DataError(f"{what} from {source} is 1-d (shape {x.shape}); features must be (n, d)")
        if x.ndim != 2:
            raise DataError(f"{what} from {source} has shape {x.shape}; features must be 2-d (n, d)")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"{what} from {source} has non-numeric dtype {x.dtype}; expected numbers")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        values = x
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(finite.size - finite.sum())
        raise DataError(f"{what} from {source} contain {bad} NaN/inf values; clean or impute them first")
    return x


def as_labels(x: Any, source: str, base: int = 0, num_classes: int | None = None) -> np.ndarray:
    """uint8 multi-hot ``(n, c)`` labels from a multi-hot matrix or from integer class ids ``(n,)``/``(n, 1)``.

    Class ids count from ``base`` (0, or 1 for MATLAB-style ids).
    """
    if sp.issparse(x):
        x = x.toarray()
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1 and x.shape[0] > 1:
        x = x[:, 0]
    if x.ndim == 1:
        if not np.all(np.isfinite(x)) or not np.all(np.equal(np.mod(x, 1), 0)):
            raise DataError(f"class ids from {source} must be whole numbers")
        ids = x.astype(np.int64) - base
        if ids.size and ids.min() < 0:
            raise DataError(f"class ids from {source} go below {base}; set the id base (base: 0 or 1)")
        return one_hot(ids, num_classes)
    if x.ndim != 2:
        raise DataError(
            f"labels from {source} have shape {x.shape}; expected (n, classes) multi-hot or (n,) ids"
        )
    if not np.all(np.isfinite(x)):
        raise DataError(f"labels from {source} contain NaN/inf; labels must be 0/1")
    values = np.unique(x)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(f"{v:g}" for v in values[:5])
        raise DataError(
            f"labels from {source} hold values {shown}{' ...' if len(values) > 5 else ''}; expected 0/1 multi-hot"
        )
    return x.astype(np.uint8)


def check_rows(source: str, **arrays: Any) -> int:
    """All given arrays (``name=array``; ``None`` skipped) have the same number of rows; returns it."""
    rows = {k: int(v.shape[0]) for k, v in arrays.items() if v is not None}
    if len(set(rows.values())) > 1:
        desc = ", ".join(f"{k} {r}" for k, r in rows.items())
        raise DataError(f"{source}: row counts differ ({desc}); rows must be aligned image-text-label pairs")
    return next(iter(rows.values()), 0)


def check_labelled(labels: np.ndarray, source: str, fix: str) -> None:
    """Every row has at least one label, else a :class:`DataError` that says how to ``fix`` it."""
    empty = int((np.asarray(labels).sum(axis=1) == 0).sum())
    if empty:
        raise DataError(f"{source}: {empty} of {labels.shape[0]} rows have no label; {fix}")


def drop_unlabelled(
    arrays: dict[str, Any], require_text: bool = True, text_key: str = "text", label_key: str = "labels"
) -> tuple[dict[str, Any], np.ndarray]:
    """Drop pairs without any label (and, if ``require_text``, without any text term), as DCMH does.

    ``arrays`` maps names to row-aligned arrays (dense or sparse; ``None`` values pass through). Returns the
    filtered dict and the int64 indices of the kept rows.
    """
    labels = arrays[label_key]
    keep = np.asarray(labels.sum(axis=1)).ravel() > 0
    text = arrays.get(text_key)
    if require_text and text is not None:
        keep &= np.asarray(abs(text).sum(axis=1)).ravel() > 0
    idx = np.flatnonzero(keep).astype(np.int64)
    out = {}
    for k, v in arrays.items():
        if v is None:
            out[k] = None
        elif isinstance(v, (list, tuple)):
            out[k] = type(v)(v[i] for i in idx)
        else:
            out[k] = v[idx]
    return out, idx


# ----------------------------------------------------------------------------------------------------------------
# splits


def default_split(n: int, seed: int = 0) -> Split:
    """Random split for data without a protocol: query 10 % (at most 2,000), train = the rest up to 10,000."""
    n_query = max(1, min(2000, n // 10))
    if n < 3:
        raise DataError(f"a dataset of {n} rows is too small to split into train, query and database")
    return random_split(n, n_query, min(10000, n - n_query), seed=seed, protocol="random")


def split_from_indices(
    n: int, query: Any, train: Any = None, database: Any = None, protocol: str = "custom"
) -> Split:
    """A split from explicit index arrays; ``database`` defaults to all rows outside ``query``, ``train`` to it."""
    q = _index_array(query, n, "query")
    db = (
        np.setdiff1d(np.arange(n, dtype=np.int64), q)
        if database is None
        else _index_array(database, n, "database")
    )
    tr = db if train is None else _index_array(train, n, "train")
    split = Split(train=tr, query=q, database=db, protocol=protocol, seed=None)
    split.check(n)
    return split


def _index_array(x: Any, n: int, part: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ and a.shape == (n,):
        return np.flatnonzero(a).astype(np.int64)
    a = a.ravel()
    if a.size and not np.all(np.equal(np.mod(a, 1), 0)):
        raise DataError(f"split part '{part}' holds non-integer indices; expected row numbers 0..{n - 1}")
    a = a.astype(np.int64)
    if len(np.unique(a)) != len(a):
        raise DataError(f"split part '{part}' repeats row indices; each row may appear once")
    return a


# ----------------------------------------------------------------------------------------------------------------
# native .npz


def save_npz(dataset: CrossModalDataset, path: str | Path, compress: bool = False) -> Path:
    """Write ``dataset`` (arrays, split, name, image paths) as cmh's native ``.npz``, atomically.

    The file is written to a temporary name in the target folder and moved into place with :func:`os.replace`,
    so a crash never leaves a half-written file behind.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "labels": np.asarray(dataset.labels, dtype=np.uint8),
        "name": np.array(dataset.name),
    }
    if dataset.image is not None:
        arrays["image"] = np.asarray(dataset.image, dtype=np.float32)
    text = dataset.text
    if sp.issparse(text):
        t = text.tocsr()
        arrays.update(
            text_data=t.data.astype(np.float32),
            text_indices=t.indices,
            text_indptr=t.indptr,
            text_shape=np.asarray(t.shape, dtype=np.int64),
        )
    else:
        arrays["text"] = np.asarray(text, dtype=np.float32)
    for part in PARTS:
        arrays[part] = np.asarray(getattr(dataset.split, part), dtype=np.int64)
    arrays["split_protocol"] = np.array(dataset.split.protocol)
    arrays["split_seed"] = np.array(
        -1 if dataset.split.seed is None else int(dataset.split.seed), dtype=np.int64
    )
    if dataset.image_paths is not None:
        arrays["image_paths"] = np.asarray(dataset.image_paths, dtype=str)
    class_names = dataset.meta.get("class_names")
    if class_names:
        arrays["class_names"] = np.asarray(class_names, dtype=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return path


def load_npz(
    path: str | Path,
    name: str | None = None,
    split_seed: int = 0,
    protocol: str | None = None,
    image_features: str | Path | None = None,
    image_key: str | None = None,
    resplit: bool = False,
) -> CrossModalDataset:
    """Load a native ``.npz`` (see module docstring) or the ``wikipedia.npz`` convenience copy.

    A stored split is used as it is (unless ``resplit``); otherwise the split is ``protocol`` (a name from
    :data:`~cmh.data.splits.PROTOCOLS`) or, when ``protocol`` is ``None``, :func:`default_split`, seeded by
    ``split_seed``. ``image_features``
    supplies (or replaces) the image modality from another file (e.g. for ``mirflickr25k_text_labels.npz``).
    """
    p = check_file(path, "dataset file")
    z = _open_npz(p)
    with z:
        files = set(z.files)
        if {"image_train", "image_test", "text_train", "text_test", "label_train", "label_test"} <= files:
            return _wikipedia_from_npz(p, z, name)
        if "labels" not in files or not ({"text", "text_data"} & files):
            raise DataError(
                f"'{p.name}' is not a cmh dataset .npz: it has {', '.join(sorted(files))} but needs labels, "
                "text (or text_data/text_indices/text_indptr/text_shape) and image; see docs/data.md"
            )
        src = f"'{p.name}'"
        labels = as_labels(z["labels"], src)
        text = as_features(
            _csr_from(z, "text", p) if "text_data" in files else z["text"], "text features", src
        )
        image = None
        if image_features is not None:
            image = as_features(
                read_array(image_features, image_key, "image features"),
                "image features",
                f"'{Path(image_features).name}'",
            )
        elif "image" in files:
            image = as_features(z["image"], "image features", src)
        image_paths = tuple(str(s) for s in z["image_paths"]) if "image_paths" in files else None
        if image is None and image_paths is None:
            raise DataError(
                f"{src} has text and labels but no image features; pass them with image_features=FILE "
                "(cmh: --image-features FILE) or extract them with `cmh extract`"
            )
        ds_name = name or (str(z["name"]) if "name" in files else p.stem)
        n = check_rows(
            src,
            image=image,
            text=text,
            labels=labels,
            image_paths=None if image_paths is None else np.empty(len(image_paths)),
        )
        check_labelled(labels, src, "drop those rows (cmh.data.loaders.drop_unlabelled) and convert again")
        stored = [k for k in PARTS if k in files]
        if stored and not resplit:
            if "query" not in files:
                raise DataError(
                    f"{src} stores split part(s) {', '.join(stored)} but no 'query'; store all three"
                )
            proto = str(z["split_protocol"]) if "split_protocol" in files else "custom"
            split = split_from_indices(
                n,
                z["query"],
                z["train"] if "train" in files else None,
                z["database"] if "database" in files else None,
                protocol=proto,
            )
            seed = int(z["split_seed"]) if "split_seed" in files else -1
            if seed >= 0:
                split = Split(split.train, split.query, split.database, protocol=proto, seed=seed)
        else:
            split = _protocol_or_default(n, protocol, split_seed)
        class_names = [str(s) for s in z["class_names"]] if "class_names" in files else None
    meta = {"source": str(p), "format": "cmh-npz"}
    if class_names:
        meta["class_names"] = class_names
    return CrossModalDataset(ds_name, image, text, labels, split, image_paths=image_paths, meta=meta)


def _protocol_or_default(n: int, protocol: str | None, seed: int) -> Split:
    if protocol is None or protocol == "random":
        return default_split(n, seed)
    return protocol_split(n, protocol, seed=seed)


# ----------------------------------------------------------------------------------------------------------------
# Wikipedia

WIKIPEDIA_VARS = ("I_tr", "I_te", "T_tr", "T_te")
WIKIPEDIA_LISTS = ("trainset_txt_img_cat.list", "testset_txt_img_cat.list")


def read_category_list(path: str | Path) -> np.ndarray:
    """Category ids (int64, as written: 1..10) from a Wikipedia ``*_txt_img_cat.list`` (3rd tab column)."""
    p = check_file(path, "Wikipedia label list")
    lines = [ln for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    cats = []
    for i, line in enumerate(lines, 1):
        cols = line.split("\t")
        if len(cols) < 3 or not cols[2].strip().lstrip("-").isdigit():
            raise DataError(f"'{p.name}' line {i} has no integer category in its 3rd tab-separated column")
        cats.append(int(cols[2]))
    return np.asarray(cats, dtype=np.int64)


def load_wikipedia(path: str | Path, name: str = "wikipedia") -> CrossModalDataset:
    """Wikipedia from a folder, its ``raw_features.mat`` (+ the two ``.list`` files beside it) or ``wikipedia.npz``.

    Rows are the 2,173 training pairs followed by the 693 test pairs; labels one-hot over the 10 categories;
    split: query = test pairs, database = train = training pairs (:func:`~cmh.data.splits.fixed_split`).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "raw_features.mat").exists():
            p = p / "raw_features.mat"
        elif (p / "wikipedia.npz").exists():
            p = p / "wikipedia.npz"
        else:
            raise DataError(
                f"folder '{p}' has neither raw_features.mat nor wikipedia.npz; point at the Wikipedia folder"
            )
    p = check_file(p, "Wikipedia file")
    if p.suffix.lower() == ".npz":
        z = _open_npz(p)
        with z:
            return _wikipedia_from_npz(p, z, name)
    arrays = read_mat(p, WIKIPEDIA_VARS)
    cats = []
    for list_name in WIKIPEDIA_LISTS:
        lp = p.parent / list_name
        if not lp.exists():
            raise DataError(
                f"'{p.name}' holds no labels and '{list_name}' is missing beside it; copy the label lists next to it"
            )
        cats.append(read_category_list(lp))
    src = f"'{p.name}'"
    for part, (img, txt), c in zip(
        ("train", "test"), (("I_tr", "T_tr"), ("I_te", "T_te")), cats, strict=True
    ):
        check_rows(
            f"Wikipedia {part} set ({src} + {WIKIPEDIA_LISTS[part == 'test']})",
            **{img: arrays[img], txt: arrays[txt], "labels": c},
        )
    image = np.concatenate([arrays["I_tr"], arrays["I_te"]]).astype(np.float32)
    text = np.concatenate([arrays["T_tr"], arrays["T_te"]]).astype(np.float32)
    ids = np.concatenate(cats) - 1
    return _wikipedia_dataset(p, name, image, text, ids, len(cats[0]), "wikipedia-mat")


def _wikipedia_from_npz(p: Path, z: Any, name: str | None) -> CrossModalDataset:
    src = f"'{p.name}'"
    for part in ("train", "test"):
        check_rows(
            f"Wikipedia {part} set ({src})",
            image=z[f"image_{part}"],
            text=z[f"text_{part}"],
            labels=z[f"label_{part}"],
        )
    image = np.concatenate([z["image_train"], z["image_test"]]).astype(np.float32)
    text = np.concatenate([z["text_train"], z["text_test"]]).astype(np.float32)
    ids = np.concatenate([z["label_train"], z["label_test"]]).astype(np.int64)
    return _wikipedia_dataset(
        p, name or "wikipedia", image, text, ids, len(z["label_train"]), "wikipedia-npz"
    )


def _wikipedia_dataset(
    p: Path, name: str, image: np.ndarray, text: np.ndarray, ids: np.ndarray, n_train: int, fmt: str
) -> CrossModalDataset:
    src = f"'{p.name}'"
    image = as_features(image, "image features", src)
    text = as_features(text, "text features", src)
    labels = as_labels(ids, src, num_classes=max(10, int(ids.max()) + 1) if ids.size else 10)
    n = len(ids)
    split = fixed_split(np.arange(n_train), np.arange(n_train, n), protocol="wikipedia")
    meta: dict[str, Any] = {"source": str(p), "format": fmt}
    cat_file = p.parent / "categories.list"
    if cat_file.exists():
        meta["class_names"] = [s.strip() for s in cat_file.read_text().splitlines() if s.strip()]
    return CrossModalDataset(name, image, text, labels, split, meta=meta)


# ----------------------------------------------------------------------------------------------------------------
# DCMH layouts

#: Accepted variable names (first match wins, case-insensitive) for each role in DCMH-style files.
DCMH_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("IAll", "images", "XAll", "image"),
    "text": ("YAll", "tags", "text"),
    "labels": ("LAll", "labels"),
}


def _find_dcmh_vars(path: Path) -> dict[str, tuple[Path, str, tuple[int, ...]]]:
    """Locate the image/text/label variables: in ``path`` itself first, then in the ``.mat`` files beside it.

    When several sibling files hold the same role (e.g. MIRFLICKR and NUS-WIDE files in one folder), the one whose
    name shares the longest prefix with ``path`` wins; a tie is an error asking for an explicit file.
    """
    if path.is_dir():
        files = sorted(path.glob("*.mat"))
        if not files:
            raise DataError(f"folder '{path}' has no .mat files; expected DCMH LAll/YAll/IAll .mat files")
    else:
        check_file(path, "DCMH file")
        files = [path, *sorted(f for f in path.parent.glob("*.mat") if f != path)]
    candidates: dict[str, list[tuple[Path, str, tuple[int, ...]]]] = {role: [] for role in DCMH_NAMES}
    for f in files:
        try:
            variables = mat_variables(f)
        except DataError:
            if f == path:
                raise
            continue
        lower = {k.lower(): k for k in variables}
        for role, names in DCMH_NAMES.items():
            for cand in names:
                if cand.lower() in lower:
                    key = lower[cand.lower()]
                    candidates[role].append((f, key, variables[key]))
                    break
    found: dict[str, tuple[Path, str, tuple[int, ...]]] = {}
    for role, cands in candidates.items():
        if not cands:
            continue
        if cands[0][0] == path or len(cands) == 1:
            found[role] = cands[0]
            continue
        ref = path.name if path.is_file() else ""
        score = [len(os.path.commonprefix([ref.lower(), c[0].name.lower()])) for c in cands]
        best = [c for c, sc in zip(cands, score, strict=True) if sc == max(score)]
        if len(best) > 1:
            names = ", ".join(c[0].name for c in best)
            raise DataError(
                f"several files hold the {role} ({names}); point --data at one of the dataset's files"
            )
        found[role] = best[0]
    return found


def load_dcmh(
    path: str | Path,
    name: str = "mirflickr25k",
    protocol: str | None = "mirflickr25k",
    split_seed: int = 0,
    image_features: str | Path | None = None,
    image_key: str | None = None,
    drop_empty: bool = False,
) -> CrossModalDataset:
    """Load a DCMH-style dataset: ``LAll`` labels, ``YAll`` bag of tags and image features.

    ``path`` is a ``.mat`` file (``FLICKR-25K.mat`` with ``images``/``YAll``/``LAll``, or one of the separate
    ``*-lall.mat``/``*-yall.mat``/``*-iall.mat`` files: the others are looked up beside it) or their folder.
    ``image_features`` (``.npy``/``.npz``/``.mat``/``.h5``, ``image_key`` inside it) supplies the image modality
    when the files hold none or hold raw pixels. ``drop_empty`` drops pairs with no label or no tag (DCMH's
    preprocessing); otherwise such rows are an error. Split: ``protocol`` (SSAH Table 1) seeded by ``split_seed``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"DCMH data '{p}' does not exist; check the path (or set CMH_DATA)")
    found = _find_dcmh_vars(p)
    where = p if p.is_dir() else p.parent
    for role in ("labels", "text"):
        if role not in found:
            want = " or ".join(DCMH_NAMES[role][:2])
            raise DataError(
                f"no {role} variable ({want}) in '{p.name}' or the .mat files beside it in '{where}'"
            )
    arrays: dict[str, Any] = {}
    for role in ("labels", "text"):
        f, key, _ = found[role]
        arrays[role] = read_mat(f, [key])[key]
    image_src = ""
    if image_features is not None:
        image_src = f"'{Path(image_features).name}'"
        arrays["image"] = read_array(image_features, image_key, "image features")
    elif "image" in found:
        f, key, shape = found["image"]
        image_src = f"'{f.name}' ({key})"
        if len(shape) >= 3:
            raise DataError(
                f"'{f.name}' holds raw pixels {key} {tuple(shape)}, not features; extract features first "
                "(cmh extract, or cmh.data.mat.read_mat_slice in batches) and pass them with --image-features FILE"
            )
        arrays["image"] = read_mat(f, [key])[key]
    else:
        raise DataError(
            f"no image features (IAll or images) in '{where}': the shared {name} copy has text + labels only; "
            "pass features with --image-features FILE (.npy/.npz/.mat, one row per pair) or use a YAML spec"
        )
    labels_src = f"'{found['labels'][0].name}'"
    labels = as_labels(arrays["labels"], labels_src)
    text = arrays["text"]
    check_rows(f"{name}", image=arrays["image"], text=text, labels=labels)
    if drop_empty:
        kept, idx = drop_unlabelled({"image": arrays["image"], "text": text, "labels": labels})
        arrays["image"], text, labels = kept["image"], kept["text"], kept["labels"]
        dropped = int(len(arrays["labels"]) - len(idx))
    else:
        dropped = 0
        check_labelled(labels, labels_src, "pass drop_empty=True (DCMH drops them) or clean the file")
    image = as_features(arrays["image"], "image features", image_src)
    text = as_features(text, "text features", f"'{found['text'][0].name}'")
    n = labels.shape[0]
    split = _protocol_or_default(n, protocol, split_seed)
    meta = {
        "source": str(p),
        "format": "dcmh-mat",
        "files": {role: f"{f.name}:{key}" for role, (f, key, _) in found.items()},
        "dropped_rows": dropped,
    }
    if image_features is not None:
        meta["files"]["image"] = str(image_features)
    return CrossModalDataset(name, image, text, labels, split, meta=meta)


def is_dcmh_file(path: Path) -> bool:
    """True when the ``.mat`` file has a DCMH label variable (``LAll``) or ``YAll``."""
    try:
        names = {k.lower() for k in mat_variables(path)}
    except DataError:
        return False
    return bool({"lall", "yall"} & names)
