"""Dataset names -> loaders: ``load_dataset(name, path, split_seed)`` is what ``cmh run`` calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmh.data.dataset import CrossModalDataset
from cmh.errors import DataError, did_you_mean

DATASETS = ("synthetic",)


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    return sorted(DATASETS)


def load_dataset(
    name: str | None = None, path: str | Path | None = None, split_seed: int = 0, **kwargs: Any
) -> CrossModalDataset:
    """Load dataset ``name`` (from ``path`` where it needs files); ``split_seed`` seeds random splits."""
    name = (name or "synthetic").lower()
    if name == "synthetic":
        return _synthetic(split_seed=split_seed, **kwargs)
    raise DataError(f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; run `cmh list datasets`")


def _synthetic(split_seed: int = 0, **kwargs: Any) -> CrossModalDataset:
    from cmh.data.synthetic import make_synthetic

    return make_synthetic(split_seed=split_seed, **kwargs)
