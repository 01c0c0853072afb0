"""Split protocols (sizes, seeds, disjointness) and the ``cmh data info|convert`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmh.cli import main
from cmh.data import PROTOCOLS, protocol_split, random_split
from cmh.data.catalog import load_dataset
from cmh.data.loaders import default_split, load_npz, split_from_indices
from cmh.errors import DataError

PROTOCOL_CASES = [
    ("mirflickr25k", 20015, 2000, 10000),
    ("nus-wide", 190421, 2100, 10500),
    ("coco", 85000, 5000, 10000),
]


@pytest.mark.parametrize("protocol, n, n_query, n_train", PROTOCOL_CASES)
def test_protocol_sizes_disjoint_and_seeded(protocol, n, n_query, n_train):
    assert PROTOCOLS[protocol] == (n_query, n_train)  # SSAH (Jiang et al. CVPR 2018) Table 1
    a = protocol_split(n, protocol, seed=0)
    assert (len(a.query), len(a.train), len(a.database)) == (n_query, n_train, n - n_query)
    assert np.intersect1d(a.query, a.database).size == 0
    assert np.union1d(a.query, a.database).size == n
    assert np.isin(a.train, a.database).all()
    assert len(np.unique(a.train)) == n_train
    b, c = protocol_split(n, protocol, seed=0), protocol_split(n, protocol, seed=1)
    assert all(np.array_equal(getattr(a, p), getattr(b, p)) for p in ("train", "query", "database"))
    assert not np.array_equal(a.query, c.query) and not np.array_equal(a.train, c.train)
    assert a.seed == 0 and c.seed == 1 and a.protocol == protocol


def test_split_seed_reaches_random_protocols(shared_data, tmp_path):
    np.save(
        tmp_path / "f.npy", np.zeros((20015, 2), np.float32) + np.arange(20015, dtype=np.float32)[:, None]
    )
    kw = {"image_features": tmp_path / "f.npy"}
    a = load_dataset("mirflickr25k", shared_data / "mirflickr25k", split_seed=11, **kw)
    b = load_dataset("mirflickr25k", shared_data / "mirflickr25k", split_seed=11, **kw)
    c = load_dataset("mirflickr25k", shared_data / "mirflickr25k", split_seed=12, **kw)
    assert np.array_equal(a.split.query, b.split.query) and not np.array_equal(a.split.query, c.split.query)
    assert a.content_hash() == b.content_hash() != c.content_hash()
    syn = [load_dataset("synthetic", split_seed=s, n=400, n_query=40, n_train=200) for s in (0, 0, 1)]
    assert np.array_equal(syn[0].split.query, syn[1].split.query)
    assert not np.array_equal(syn[0].split.query, syn[2].split.query)
    assert np.array_equal(syn[0].image, syn[2].image)  # the data do not depend on the split seed


def test_default_and_index_splits():
    s = default_split(159, seed=0)
    assert (len(s.query), len(s.train), len(s.database)) == (15, 144, 144)
    with pytest.raises(DataError, match="too small"):
        default_split(2)
    s = split_from_indices(10, [0, 1], train=[2, 3])
    assert s.database.tolist() == list(range(2, 10))
    with pytest.raises(DataError, match="repeats row indices"):
        split_from_indices(10, [0, 0])
    with pytest.raises(DataError, match="outside 0..9"):
        split_from_indices(10, [0, 12])
    with pytest.raises(DataError, match="train size 20000 exceeds"):
        random_split(20015, 2000, 20000)


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_info_real_and_synthetic(shared_data, capsys):
    assert main(["data", "info", str(shared_data / "wikipedia"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 2866 and info["split"]["sizes"] == {"train": 2173, "query": 693, "database": 2173}
    assert info["classes"] == 10 and info["labels_per_item"] == 1.0 and info["format"] == "wikipedia-mat"
    assert len(info["content_hash"]) == 16
    assert main(["data", "info", str(shared_data / "wikipedia" / "wikipedia.npz")]) == 0
    table = capsys.readouterr().out
    assert "2,173 / 693 / 2,173" in table and info["content_hash"] in table
    assert main(["data", "info", "synthetic", "--split-seed", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"]["seed"] == 2


def test_cli_info_errors(shared_data, tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "info", "mirflickr25k"]) == 2  # no path, no CMH_DATA or no images: one line
    err = capsys.readouterr().err
    assert err.startswith("cmh: error:") and err.count("\n") == 1
    assert main(["data", "info", str(shared_data / "mirflickr25k"), "--dataset", "mirflickr25k"]) == 2
    assert "--image-features" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_convert_round_trip(shared_data, tmp_path, capsys):
    feats = tmp_path / "feats.npy"
    np.save(feats, np.random.default_rng(0).random((20015, 8), dtype=np.float32))
    out = tmp_path / "out" / "mf.npz"
    args = [
        "data",
        "convert",
        str(shared_data / "mirflickr25k"),
        "--dataset",
        "mirflickr25k",
        "--image-features",
        str(feats),
        "--split-seed",
        "4",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    capsys.readouterr()
    ref = load_dataset("mirflickr25k", shared_data / "mirflickr25k", split_seed=4, image_features=feats)
    back = load_npz(out)
    assert back.content_hash() == ref.content_hash() and back.name == "mirflickr25k"
    assert back.split.protocol == "mirflickr25k" and back.split.seed == 4
    assert main(args) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["content_hash"] == ref.content_hash()
    assert main(["data", "convert", "wikipedia", "--out", str(tmp_path / "w.txt")]) == 2
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "mf.npz"]  # no temp files left


def test_cli_convert_wikipedia_identical(shared_data, tmp_path):
    out = tmp_path / "wiki.npz"
    assert (
        main(["data", "convert", str(shared_data / "wikipedia" / "raw_features.mat"), "--out", str(out)]) == 0
    )
    ds = load_npz(out)
    ref = load_dataset("wikipedia", shared_data / "wikipedia")
    assert ds.content_hash() == ref.content_hash() and ds.split.protocol == "wikipedia"
    assert ds.meta["class_names"] == ref.meta["class_names"]
