"""Shared fixtures: the real data folder (``CMH_DATA``, default ``../shared/data``) and small datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("CMH_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with the real public data; on CI (CI=true) its absence is a failure, not a skip."""
    path = shared_data_dir()
    if not (path / "wikipedia").is_dir():
        msg = f"real data not found at {path}; set CMH_DATA to the shared data folder"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def wikipedia(shared_data: Path):
    """The real Wikipedia set through cmh's loader (query = 693 test pairs, database = train = 2,173)."""
    from cmh.data.catalog import load_dataset

    return load_dataset("wikipedia", shared_data / "wikipedia")


@pytest.fixture(scope="session")
def synthetic_small():
    """A small synthetic dataset (fast enough for every registered method in unit tests)."""
    from cmh.data import make_synthetic

    return make_synthetic(n=1500, image_dim=128, text_dim=100, n_query=200, n_train=800)


@pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS/OpenMP thread for a test module (threadpoolctl): NumPy/SciPy-heavy tests of many small fits
    stay fast on a busy machine (no thread oversubscription)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    the deep-method tests stay fast on a busy 1-2 core machine (no OpenMP spinning)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def coco_mini_small(shared_data, tmp_path_factory):
    """``(folder with cmh.yaml, raw root, annotation rows)`` of a 28-photo coco_mini (6 queries) built once
    with `cmh extract coco-mini` (real EfficientNet-Lite0 features) from the first 28 annotated photos."""
    import json
    import shutil

    from cmh.extract.coco_mini import build_coco_mini

    src = shared_data / "coco_mini"
    root = tmp_path_factory.mktemp("coco_mini_raw")
    rows = [json.loads(line) for line in (src / "annotations.jsonl").read_text().splitlines() if line.strip()]
    rows = rows[:28]
    (root / "images").mkdir()
    for r in rows:
        (root / r["image"]).symlink_to(src / r["image"])
    (root / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(src / "classes.txt", root / "classes.txt")
    out = tmp_path_factory.mktemp("coco_mini_built")
    build_coco_mini(root, out / "coco_mini.npz", n_query=6, progress=False, workers=0)
    return out, root, rows
