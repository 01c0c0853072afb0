"""Saved models: one file holding a fitted method and the feature pipeline of the data it was trained on.

``save_model(method, path, dataset=ds)`` writes (atomically, with :func:`torch.save`) a dict::

    {"format": "cmh-model", "version": 1,
     "method": "ssah", "bits": 32, "seed": 0, "config": {...},   # enough to rebuild the method
     "state": method.state_dict(),                               # its fitted parameters
     "dataset": {"name", "content_hash", "image_dim", "text_dim", "classes", "source", "split_seed"},
     "pipeline": {...} | None}                                   # cmh.extract.query.pipeline_of(ds)

``load_model(path)`` reads it back with ``torch.load(weights_only=True)`` (no arbitrary pickles: only
tensors, numbers, strings, lists and dicts are accepted) and returns a :class:`SavedModel` whose ``method``
encodes right away. ``cmh run --save-model``, ``cmh search`` and ``cmh encode`` use these two functions.

Every registered method can be saved: deep methods have their own ``state_dict`` (networks, normalisation);
shallow ones use :meth:`cmh.base.HashMethod.state_dict`, which stores the fitted attributes through
:func:`pack_state` (NumPy arrays become tensors tagged with their dtype, scipy sparse matrices their CSR
parts, tuples are kept) and restores them with :func:`unpack_state`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from cmh._atomic import atomic_torch_save, read_torch_file
from cmh.errors import CMHError

FORMAT = "cmh-model"
VERSION = 1
SHALLOW_FORMAT = "cmh-shallow-v1"
_TAG = "__cmh__"


@dataclasses.dataclass
class SavedModel:
    """What :func:`load_model` returns: the ready method, the training data's description and pipeline."""

    method: Any
    dataset: dict[str, Any]
    pipeline: dict[str, Any] | None
    path: Path


def pack_state(value: Any, where: str = "state") -> Any:
    """A value of fitted attributes -> something ``torch.load(weights_only=True)`` reads back.

    Arrays (any numeric dtype) become ``{"__cmh__": "ndarray", "data": tensor, "dtype": str}``; sparse
    matrices their CSR parts; dicts (string keys), lists, tuples, tensors, numbers, strings and ``None`` are
    kept. Anything else (functions, open files, custom objects) is a :class:`CMHError` naming ``where``.
    """
    if isinstance(value, np.generic):
        return {_TAG: "scalar", "dtype": value.dtype.str, "value": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise CMHError(f"cannot save {where}: a NumPy array of dtype {value.dtype} (numbers only)")
        arr = np.ascontiguousarray(value)
        store = arr.astype(np.int64) if arr.dtype.kind == "u" and arr.dtype.itemsize > 1 else arr
        return {_TAG: "ndarray", "dtype": arr.dtype.str, "data": torch.from_numpy(store.copy())}
    if sp.issparse(value):
        m = sp.csr_matrix(value)
        return {
            _TAG: "csr",
            "shape": list(m.shape),
            "data": pack_state(m.data, where),
            "indices": pack_state(m.indices, where),
            "indptr": pack_state(m.indptr, where),
        }
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [pack_state(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [pack_state(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CMHError(f"cannot save {where}: a dict with non-string keys")
        if _TAG in value:
            raise CMHError(f"cannot save {where}: the key '{_TAG}' is reserved")
        return {k: pack_state(v, f"{where}.{k}") for k, v in value.items()}
    raise CMHError(
        f"cannot save {where} of type {type(value).__name__}; give the method its own state_dict/load_state_dict"
    )


def unpack_state(value: Any) -> Any:
    """Inverse of :func:`pack_state`."""
    if isinstance(value, list):
        return [unpack_state(v) for v in value]
    if isinstance(value, dict):
        tag = value.get(_TAG)
        if tag == "ndarray":
            return value["data"].numpy().astype(np.dtype(value["dtype"]), copy=False)
        if tag == "scalar":
            return np.dtype(value["dtype"]).type(value["value"])
        if tag == "csr":
            return sp.csr_matrix(
                (unpack_state(value["data"]), unpack_state(value["indices"]), unpack_state(value["indptr"])),
                shape=tuple(value["shape"]),
            )
        if tag == "tuple":
            return tuple(unpack_state(v) for v in value["items"])
        return {k: unpack_state(v) for k, v in value.items()}
    return value


def dataset_info(dataset: Any) -> dict[str, Any]:
    """What a saved model remembers of its training data (name, content hash, dims, where it was loaded)."""
    meta = getattr(dataset, "meta", {}) or {}
    return {
        "name": dataset.name,
        "content_hash": dataset.content_hash(),
        "image_dim": None if dataset.image is None else int(dataset.image.shape[1]),
        "text_dim": int(dataset.text.shape[1]),
        "classes": int(dataset.num_classes),
        "source": meta.get("source"),
        "split_seed": dataset.split.seed,
    }


def save_model(method: Any, path: str | os.PathLike[str], dataset: Any = None) -> Path:
    """Write ``method`` (fitted) and, when ``dataset`` is given, its description and feature pipeline to
    ``path`` (atomic). Returns the path."""
    from cmh.extract.query import pipeline_of

    method.check_fitted()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "method": method.name,
        "bits": int(method.bits),
        "seed": int(method.seed),
        "config": method.config_dict(),
        "state": method.state_dict(),
        "dataset": dataset_info(dataset) if dataset is not None else None,
        "pipeline": pipeline_of(dataset) if dataset is not None else None,
    }
    return atomic_torch_save(payload, path)


def read_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw dict of a model file, checked for format and version (no method is built)."""
    path = Path(path)
    payload = read_torch_file(
        path,
        missing=f"model file '{path}' not found; write one with `cmh run ... --save-model {path}`",
        unreadable=f"cannot read '{path}' as a cmh model ({{error}}); write it with --save-model",
    )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CMHError(f"'{path}' is not a cmh model file (format {FORMAT}); write one with --save-model")
    if int(payload.get("version", 0)) > VERSION:
        raise CMHError(
            f"'{path}' is a version {payload.get('version')} model file; this cmh reads up to version "
            f"{VERSION}: upgrade cmh"
        )
    return payload


def load_model(path: str | os.PathLike[str], device: str = "cpu") -> SavedModel:
    """Rebuild the method saved in ``path`` on ``device`` and restore its fitted state."""
    from cmh.registry import create_method, get_method_class

    payload = read_model_file(path)
    cls = get_method_class(payload["method"])
    known = {f.name for f in dataclasses.fields(cls.Config)}
    config = {k: v for k, v in (payload.get("config") or {}).items() if k in known}
    method = create_method(
        payload["method"], bits=int(payload["bits"]), seed=int(payload["seed"]), device=device, **config
    )
    method.load_state_dict(payload["state"])
    return SavedModel(
        method=method,
        dataset=dict(payload.get("dataset") or {}),
        pipeline=payload.get("pipeline"),
        path=Path(path),
    )


def model_path(template: str | os.PathLike[str], bits: int, seed: int, n_runs: int) -> Path:
    """Where ``cmh run --save-model M.pt`` writes one run's model: ``M.pt`` for a single run, else
    ``M-<bits>bits-seed<seed>.pt``."""
    p = Path(template)
    if n_runs == 1:
        return p
    return p.with_name(f"{p.stem}-{bits}bits-seed{seed}{p.suffix or '.pt'}")
