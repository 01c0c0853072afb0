"""Parameter grids in YAML (ann-benchmarks style): the runs behind ``results/`` and ``leaderboards/``.

A grid file::

    out: results                      # where records go (relative to the current folder)
    datasets:                         # name -> how to load it (``data`` may use $CMH_DATA)
      synthetic: {}
      wikipedia: {data: $CMH_DATA/wikipedia}
    runs:
      - methods: [cvh, scm-seq]
        datasets: [synthetic, wikipedia]
        bits: [16, 32, 64, 128]
        seeds: [0, 1, 2]
        set: {}                       # optional method overrides for this block
        database: per-view            # optional: unified = database codes from both views (encode_pair)
        resources: {cpus: 4, gpus: 1} # optional, per run of this block (overrides the grid's)
    resources: {cpus: 1, gpus: 0}     # optional: what one run takes (default 1 CPU, no GPU)

``cmh sweep GRID`` runs every (dataset, method, bits, seed) whose record is missing. ``$CMH_DATA``
defaults to ``../shared/data`` beside the repository when unset. ``resources`` are what the Ray backend
(``--backend ray``) reserves per run on the cluster (fractional GPUs share a GPU); the run uses that many
CPU threads and, with ``gpus > 0``, trains on the GPU Ray assigns.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cmh.errors import CMHError

REPO_ROOT = Path(__file__).resolve().parents[1]
GRID_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class PlannedRun:
    dataset: str
    method: str
    bits: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    database: str = "per-view"
    cpus: float = 1.0
    gpus: float = 0.0


def default_data_root() -> str:
    return os.environ.get("CMH_DATA", str(REPO_ROOT.parent / "shared" / "data"))


def resolve_grid_path(name_or_path: str) -> Path:
    """A grid file path, or the name of a grid shipped in ``cmh/configs`` (e.g. ``leaderboard``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = GRID_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(q.stem for q in GRID_DIR.glob("*.yaml"))
    raise CMHError(f"grid '{name_or_path}' not found; pass a YAML file or one of: {', '.join(names)}")


def load_grid(path: str | Path) -> dict[str, Any]:
    path = resolve_grid_path(str(path))
    try:
        grid = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CMHError(
            f"grid '{path}' is not valid YAML ({exc.__class__.__name__}); fix its syntax"
        ) from None
    if not isinstance(grid.get("runs"), list):
        raise CMHError(f"grid '{path}' needs a 'runs' list (see cmh/sweep.py for the format)")
    return grid


def dataset_args(grid: dict[str, Any], name: str) -> dict[str, Any]:
    """``load_dataset`` keyword arguments for dataset ``name`` of the grid, with $CMH_DATA expanded."""
    spec = dict((grid.get("datasets") or {}).get(name) or {})
    spec.pop("prepare", None)
    if "data" in spec:
        env = {**os.environ, "CMH_DATA": default_data_root()}
        spec["path"] = os.path.expandvars(spec.pop("data").replace("$CMH_DATA", env["CMH_DATA"]))
    return spec


def load_grid_dataset(grid: dict[str, Any], name: str) -> Any:
    """Load dataset ``name`` of the grid; a missing file names the grid's ``prepare`` command when it has one."""
    from cmh.data.catalog import load_dataset
    from cmh.errors import DataError

    try:
        return load_dataset(name, **dataset_args(grid, name))
    except DataError as exc:
        prepare = ((grid.get("datasets") or {}).get(name) or {}).get("prepare")
        if prepare:
            raise DataError(
                f"{exc}; build it first with `{prepare}` (or leave it out: --datasets ...)"
            ) from None
        raise


def run_resources(grid: dict[str, Any], block: dict[str, Any]) -> tuple[float, float]:
    """``(cpus, gpus)`` one run of ``block`` takes: the block's ``resources``, else the grid's, else (1, 0)."""
    spec = {**(grid.get("resources") or {}), **(block.get("resources") or {})}
    unknown = sorted(set(spec) - {"cpus", "gpus"})
    if unknown:
        raise CMHError(
            f"grid resources: unknown key '{unknown[0]}'; use cpus and gpus (e.g. {{cpus: 2, gpus: 1}})"
        )
    try:
        cpus, gpus = float(spec.get("cpus", 1)), float(spec.get("gpus", 0))
    except (TypeError, ValueError):
        raise CMHError(f"grid resources {spec} must be numbers, e.g. {{cpus: 2, gpus: 0.5}}") from None
    if not (cpus > 0 and gpus >= 0):
        raise CMHError(f"grid resources {spec}: cpus must be > 0 and gpus >= 0")
    return cpus, gpus


def plan(
    grid: dict[str, Any], methods: list[str] | None = None, datasets: list[str] | None = None
) -> Iterator[PlannedRun]:
    """Every run of the grid, optionally restricted to some methods/datasets."""
    from cmh.base import check_bits
    from cmh.config import check_seed
    from cmh.results import DATABASE_CODES

    for block in grid["runs"]:
        cpus, gpus = run_resources(grid, block)
        database = str(block.get("database", "per-view"))
        if database not in DATABASE_CODES:
            raise CMHError(
                f"grid block {block.get('methods')}: unknown database '{database}'; "
                f"use one of: {', '.join(DATABASE_CODES)}"
            )
        for ds, m, bits, seed in itertools.product(
            block["datasets"], block["methods"], block["bits"], block.get("seeds", [0])
        ):
            if (methods and m not in methods) or (datasets and ds not in datasets):
                continue
            yield PlannedRun(
                ds, m, check_bits(bits), check_seed(seed), dict(block.get("set") or {}), database, cpus, gpus
            )
