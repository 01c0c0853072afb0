"""Dataset names -> loaders: ``load_dataset(name, path, split_seed)`` is what ``cmh run`` calls.

Names
-----
- ``synthetic`` (default): the built-in generator, no files.
- ``wikipedia``: a folder, ``raw_features.mat`` (+ label lists) or ``wikipedia.npz``; default ``$CMH_DATA/wikipedia``.
- ``mirflickr25k`` / ``nus-wide`` / ``coco``: DCMH-style ``.mat`` files (``LAll``/``YAll``/``IAll`` or one file
  with ``images``/``YAll``/``LAll``), split by the paper protocol; image features via ``image_features=FILE``
  when the files have none. Default path ``$CMH_DATA/<name>``.
- ``coco_mini``: a YAML spec written after ``cmh extract`` (a ``.yaml`` path, or a folder holding one).
- no name, ``path`` given: the format is detected from the path (``.npz``, ``.yaml``/``.yml``, ``.mat``, folder).
- any other name with a ``path``: the path is loaded generically and the dataset takes that name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cmh.data.dataset import CrossModalDataset
from cmh.errors import DataError, did_you_mean

#: name -> one-line description (``cmh list datasets``).
CATALOG: dict[str, str] = {
    "synthetic": "built-in deterministic multi-label pairs (no files)",
    "wikipedia": "Wikipedia (Rasiwasia et al. 2010): 2,173 train/database + 693 query pairs, 10 classes",
    "mirflickr25k": "MIRFLICKR-25K, DCMH files (LAll/YAll + image features); query 2,000, train 10,000",
    "nus-wide": "NUS-WIDE, DCMH files (LAll/YAll/IAll); query 2,100, train 10,500",
    "coco": "MS-COCO, DCMH-style files (LAll/YAll/IAll); query 5,000, train 10,000",
    "coco_mini": "159 COCO photos: a YAML spec over features written by `cmh extract`",
}
DATASETS = tuple(CATALOG)
DCMH_PROTOCOL = {"mirflickr25k": "mirflickr25k", "nus-wide": "nus-wide", "coco": "coco"}
SPEC_NAMES = ("cmh.yaml", "dataset.yaml", "spec.yaml", "cmh.yml", "dataset.yml")


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    return sorted(DATASETS)


def data_root() -> Path | None:
    """``$CMH_DATA`` as a path, or ``None`` when unset."""
    root = os.environ.get("CMH_DATA")
    return Path(root).expanduser() if root else None


def load_dataset(
    name: str | None = None, path: str | Path | None = None, split_seed: int = 0, **kwargs: Any
) -> CrossModalDataset:
    """Load dataset ``name`` (from ``path`` where it needs files); ``split_seed`` seeds random splits.

    Extra keyword arguments go to the loader: ``image_features``/``image_key`` (DCMH, npz), ``protocol``
    (npz, DCMH), ``drop_empty`` (DCMH) and the :func:`~cmh.data.synthetic.make_synthetic` arguments.
    """
    key = name.lower() if name else None
    if key is None and path is None:
        key = "synthetic"
    if key == "synthetic":
        if path is not None:
            raise DataError(
                "dataset 'synthetic' is generated and takes no --data path; drop --data or name a dataset"
            )
        return _synthetic(split_seed=split_seed, **kwargs)
    if key == "wikipedia":
        from cmh.data.loaders import load_wikipedia

        _no_extra("wikipedia", kwargs)
        return load_wikipedia(_default_path("wikipedia", path))
    if key in DCMH_PROTOCOL:
        p = _default_path(key, path)
        if p.suffix.lower() in (".npz", ".yaml", ".yml"):
            return load_path(p, split_seed=split_seed, name=key, protocol=DCMH_PROTOCOL[key], **kwargs)
        from cmh.data.loaders import load_dcmh

        kwargs.setdefault("protocol", DCMH_PROTOCOL[key])
        return load_dcmh(p, name=key, split_seed=split_seed, **kwargs)
    if key == "coco_mini":
        p = _default_path(key, path)
        return load_path(_find_spec(p, key), split_seed=split_seed, name=key, **kwargs)
    if path is None:
        raise DataError(
            f"unknown dataset '{name}'{did_you_mean(str(name), DATASETS)}; run `cmh list datasets`, "
            "or give your own files with --data PATH"
        )
    return load_path(path, split_seed=split_seed, name=name, **kwargs)


def load_path(
    path: str | Path, split_seed: int = 0, name: str | None = None, **kwargs: Any
) -> CrossModalDataset:
    """Load a dataset from ``path``, detecting its format (native/Wikipedia ``.npz``, YAML spec, ``.mat``, folder)."""
    from cmh.data import loaders
    from cmh.data.spec import load_spec

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path '{p}' does not exist; check --data (or set CMH_DATA)")
    if p.is_dir():
        if (p / "raw_features.mat").exists() or (p / "wikipedia.npz").exists():
            _no_extra("wikipedia", kwargs)
            return loaders.load_wikipedia(p, name=name or "wikipedia")
        specs = [p / s for s in SPEC_NAMES if (p / s).exists()]
        if specs:
            return load_spec(specs[0], split_seed=split_seed, name=name)
        mats = sorted(p.glob("*.mat"))
        if any(loaders.is_dcmh_file(m) for m in mats):
            return loaders.load_dcmh(p, name=name or p.name, split_seed=split_seed, **_dcmh_kwargs(kwargs))
        npzs = sorted(p.glob("*.npz"))
        if len(npzs) == 1:
            return loaders.load_npz(npzs[0], name=name, split_seed=split_seed, **kwargs)
        raise DataError(
            f"folder '{p}' holds no dataset cmh recognises (raw_features.mat, cmh.yaml, DCMH .mat "
            "files or one .npz); point --data at a file"
        )
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return loaders.load_npz(p, name=name, split_seed=split_seed, **kwargs)
    if suffix in (".yaml", ".yml"):
        _no_extra("a YAML spec", {k: v for k, v in kwargs.items() if k != "protocol"})
        return load_spec(p, split_seed=split_seed, name=name)
    if suffix == ".mat":
        from cmh.data.mat import mat_variables

        names = set(mat_variables(p))
        if {"I_tr", "I_te", "T_tr", "T_te"} <= names:
            _no_extra("wikipedia", kwargs)
            return loaders.load_wikipedia(p, name=name or "wikipedia")
        if loaders.is_dcmh_file(p):
            return loaders.load_dcmh(p, name=name or p.stem, split_seed=split_seed, **_dcmh_kwargs(kwargs))
        raise DataError(
            f"'{p.name}' has variables {', '.join(sorted(names)) or '(none)'}; expected the Wikipedia layout "
            "(I_tr, I_te, T_tr, T_te) or DCMH (LAll, YAll, IAll/images); write a YAML spec for other layouts"
        )
    raise DataError(f"cannot tell the format of '{p.name}'; use a .npz, .yaml, .mat file or a dataset folder")


def _dcmh_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    out.setdefault("protocol", None)
    return out


def _no_extra(what: str, kwargs: dict[str, Any]) -> None:
    extra = {k: v for k, v in kwargs.items() if v is not None}
    if extra:
        raise DataError(
            f"{what} takes no option(s) {', '.join(sorted(extra))}; its files and split are fixed"
        )


def _default_path(name: str, path: str | Path | None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    root = data_root()
    if root is None:
        raise DataError(
            f"dataset '{name}' needs files: pass --data PATH or set CMH_DATA to the folder holding {name}/"
        )
    p = root / name
    if not p.exists():
        raise DataError(f"dataset '{name}' not found at '{p}' (from CMH_DATA); pass --data PATH")
    return p


def _find_spec(p: Path, name: str) -> Path:
    if p.is_file():
        return p
    for cand in (*SPEC_NAMES, f"{name}.yaml", "features/cmh.yaml", f"features/{name}.yaml"):
        if (p / cand).exists():
            return p / cand
    raise DataError(
        f"dataset '{name}' needs extracted features: run `cmh extract` to write them and a YAML spec, "
        f"then pass --data SPEC.yaml (no spec found in '{p}')"
    )


def _synthetic(split_seed: int = 0, **kwargs: Any) -> CrossModalDataset:
    from cmh.data.synthetic import make_synthetic

    return make_synthetic(split_seed=split_seed, **kwargs)
