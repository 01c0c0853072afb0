"""YAML dataset specs: every array source, relative paths, memory maps, splits, the coco_mini layout, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp
import yaml

from cmh.data.catalog import load_dataset
from cmh.data.spec import load_spec
from cmh.errors import DataError


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    image = rng.random((n, 16), dtype=np.float32)
    text = sp.random(n, 50, density=0.1, format="csr", random_state=1, dtype=np.float32)
    text = (
        (text + sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(0, 50, n))), shape=(n, 50)))
        .tocsr()
        .astype(np.float32)
    )
    labels = (rng.random((n, 6)) < 0.3).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, 6, n)] = 1
    d = tmp_path / "data"
    d.mkdir()
    np.save(d / "feats.npy", image)
    sp.save_npz(d / "tags.npz", text)
    sio.savemat(d / "labels.mat", {"LAll": labels})
    return tmp_path, image, text, labels


def write_spec(folder, spec, name="spec.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


BASE = {
    "name": "mine",
    "image": {"path": "data/feats.npy"},
    "text": "data/tags.npz",
    "labels": {"path": "data/labels.mat", "key": "LAll"},
}


def test_spec_relative_paths_mmap_and_protocol(files):
    tmp, image, text, labels = files
    spec = write_spec(tmp, {**BASE, "split": {"query": 20, "train": 100, "seed": 5}})
    ds = load_spec(spec)
    assert ds.name == "mine" and isinstance(ds.image, np.memmap) and np.array_equal(ds.image, image)
    assert sp.issparse(ds.text) and np.array_equal(ds.text.toarray(), text.toarray())
    assert np.array_equal(ds.labels, labels)
    assert ds.split.seed == 5 and (len(ds.split.query), len(ds.split.train)) == (20, 100)
    # a non-zero split_seed overrides the spec's seed; the seed used is recorded
    other = load_spec(spec, split_seed=7)
    assert other.split.seed == 7 and not np.array_equal(other.split.query, ds.split.query)
    assert np.array_equal(load_spec(spec, split_seed=7).split.query, other.split.query)
    # load_dataset detects the spec, and the name can be overridden
    assert load_dataset(None, spec).content_hash() == ds.content_hash()
    assert load_dataset("renamed", spec).name == "renamed"


def test_spec_index_files_and_class_ids(files):
    tmp, image, text, labels = files
    np.save(tmp / "data" / "ids.npy", labels.argmax(1) + 1)
    np.savetxt(tmp / "q.txt", np.arange(10), fmt="%d")
    np.save(tmp / "t.npy", np.arange(10, 60))
    spec = write_spec(
        tmp,
        {
            **BASE,
            "labels": {"path": "data/ids.npy", "base": 1},
            "split": {"query": "q.txt", "train": "t.npy"},
            "class_names": list("abcdef"),
        },
    )
    ds = load_spec(spec)
    assert np.array_equal(ds.labels.argmax(1), labels.argmax(1)) and ds.labels.sum() == 200
    assert np.array_equal(ds.split.query, np.arange(10)) and np.array_equal(
        ds.split.database, np.arange(10, 200)
    )
    assert np.array_equal(ds.split.train, np.arange(10, 60)) and ds.meta["class_names"][5] == "f"


def test_spec_overlapping_split_is_rejected(files):
    tmp, *_ = files
    spec = write_spec(tmp, {**BASE, "split": {"query": [0, 1, 2], "database": [2, 3, 4, 5], "train": [3, 4]}})
    with pytest.raises(DataError, match="query and database overlap"):
        load_spec(spec)


def test_spec_drop_unlabelled(files):
    tmp, image, text, labels = files
    labels = labels.copy()
    labels[[3, 8]] = 0
    sio.savemat(tmp / "data" / "labels.mat", {"LAll": labels})
    spec = write_spec(tmp, BASE)
    with pytest.raises(DataError, match="2 of 200 rows have no label; set 'drop_unlabelled: true'"):
        load_spec(spec)
    ds = load_spec(write_spec(tmp, {**BASE, "drop_unlabelled": True}))
    assert ds.n == 198 and ds.meta["dropped_rows"] == 2
    assert np.array_equal(ds.image, np.delete(image, [3, 8], axis=0))


def test_coco_mini_style_spec(tmp_path):
    """The layout `cmh extract coco-mini` writes: one npz with image/text/labels keys + cmh.yaml + path list."""
    rng = np.random.default_rng(3)
    n = 40
    labels = np.zeros((n, 80), np.uint8)
    labels[np.arange(n), rng.integers(0, 80, n)] = 1
    text = (rng.random((n, 30)) < 0.2).astype(np.float32)
    np.savez(
        tmp_path / "coco_mini.npz",
        name=np.array("coco_mini"),
        image=rng.random((n, 8), dtype=np.float32),
        text=text,
        labels=labels,
    )
    keys = [f"images/{i:012d}.jpg" for i in range(n)]
    (tmp_path / "coco_mini.images.txt").write_text("".join(k + "\n" for k in keys))
    write_spec(
        tmp_path,
        {
            "name": "coco_mini",
            "description": "test",
            "image": {"path": "coco_mini.npz", "key": "image"},
            "text": {"path": "coco_mini.npz", "key": "text"},
            "labels": {"path": "coco_mini.npz", "key": "labels"},
            "split": {"query": 10, "train": 30, "seed": 0},
            "image_paths": {"path": "coco_mini.images.txt", "root": "/data/coco"},
            "class_names": [f"c{i}" for i in range(80)],
        },
        name="cmh.yaml",
    )
    ds = load_dataset("coco_mini", tmp_path, split_seed=1)
    assert ds.name == "coco_mini" and ds.n == n and ds.image_paths[0] == "/data/coco/images/000000000000.jpg"
    assert (len(ds.split.query), len(ds.split.train), len(ds.split.database)) == (10, 30, 30)
    assert ds.split.seed == 1
    with pytest.raises(DataError, match="needs extracted features: run `cmh extract`"):
        load_dataset("coco_mini", tmp_path / "data")  # does not exist -> no spec
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="needs extracted features"):
        load_dataset("coco_mini", empty)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lables": {"path": "x"}}, "unknown field 'lables' \\(did you mean 'labels'\\?\\)"),
        ({"text": None}, "'text' needs a file"),
        (
            {"labels": {"path": "data/labels.mat", "key": "Labels"}},
            "lacks variable\\(s\\) Labels \\(it has: LAll\\)",
        ),
        ({"image": {"path": "data/missing.npy"}}, "image file '.*missing.npy' does not exist"),
        ({"split": {"protocol": "mirflicker"}}, "did you mean 'mirflickr25k'"),
        ({"split": {"query": 500, "train": 10}}, "query size 500 leaves no database rows"),
        ({"text": {"path": "data/tags.npz", "kee": "x"}}, "unknown option 'kee'"),
    ],
)
def test_spec_errors(files, change, message):
    tmp, *_ = files
    spec = {**BASE, **change}
    if change.get("text", 1) is None:
        spec.pop("text")
        spec["text"] = 3
    with pytest.raises(DataError, match=message) as e:
        load_spec(write_spec(tmp, spec))
    assert "\n" not in str(e.value)


def test_spec_invalid_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("image: {path: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML at line"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(DataError, match="must be a mapping"):
        load_spec(tmp_path / "list.yaml")
