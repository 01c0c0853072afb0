"""Sharded encoding (cmh encode, cmh/data/shards.py) and cmh eval --codes-dir."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cmh.cli import main
from cmh.data.shards import (
    FeatureRows,
    iter_shards,
    load_codes,
    pack_codes,
    read_manifest,
    unpack_codes,
    write_shards,
)
from cmh.errors import CMHError, DataError
from cmh.models import save_model
from cmh.registry import create_method


@pytest.fixture(scope="module")
def tiny():
    from cmh.data import make_synthetic

    return make_synthetic(n=260, image_dim=24, text_dim=20, classes=6, n_query=40, n_train=160)


@pytest.fixture(scope="module")
def model(tiny, tmp_path_factory):
    m = create_method("cvh", bits=20, seed=0).fit(tiny.part("train"))
    path = save_model(m, tmp_path_factory.mktemp("model") / "cvh.pt", tiny)
    return m, path


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    for bits in (8, 13, 32, 64):
        codes = np.where(rng.random((17, bits)) > 0.5, 1, -1).astype(np.int8)
        packed = pack_codes(codes)
        assert packed.dtype == np.uint8 and packed.shape == (17, -(-bits // 8))
        np.testing.assert_array_equal(packed, np.packbits(codes > 0, axis=1))
        np.testing.assert_array_equal(unpack_codes(packed, bits), codes)


def _write(out, m, feats, **kw):
    return write_shards(
        out, m.encode_image, feats, m.bits, "image", shard_size=37, batch_size=16, progress=False, **kw
    )


def test_shards_equal_the_method_codes(tiny, model, tmp_path):
    m, _ = model
    np.save(tmp_path / "img.npy", tiny.image)
    manifest = _write(tmp_path / "codes", m, FeatureRows(tmp_path / "img.npy"))
    assert manifest["format"] == "cmh-code-shards" and manifest["version"] == 1
    assert manifest["count"] == tiny.n and manifest["bits"] == 20 and manifest["modality"] == "image"
    assert [s["count"] for s in manifest["shards"]] == [37] * 7 + [1]
    assert json.loads((tmp_path / "codes" / "manifest.json").read_text()) == manifest
    parts = list(iter_shards(tmp_path / "codes"))
    assert all(p.dtype == np.uint8 and p.shape[1] == 3 for p in parts)
    np.testing.assert_array_equal(unpack_codes(np.concatenate(parts), 20), m.encode_image(tiny.image))
    assert not (tmp_path / "codes" / "progress.json").exists()


def test_hdf5_and_matlab_v73_features(tiny, model, tmp_path):
    m, _ = model
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["feats"] = tiny.image
        f["other"] = np.zeros(3)
    with h5py.File(tmp_path / "f.mat", "w", userblock_size=512) as f:  # MATLAB stores (n, d) as (d, n)
        f["X"] = tiny.image.T
        f["X"].attrs["MATLAB_class"] = np.bytes_("single")
    with open(tmp_path / "f.mat", "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file")
    want = m.encode_image(tiny.image)
    with pytest.raises(DataError, match="name one with --key"):
        FeatureRows(tmp_path / "f.h5")
    for path, key in ((tmp_path / "f.h5", "feats"), (tmp_path / "f.mat", None)):
        rows = FeatureRows(path, key)
        assert (rows.n, rows.d) == tiny.image.shape
        _write(tmp_path / path.stem, m, rows)
        np.testing.assert_array_equal(load_codes(tmp_path / path.stem)[0], want)


def test_interrupted_run_resumes_and_rechecks_checksums(tiny, model, tmp_path):
    m, _ = model
    np.save(tmp_path / "img.npy", tiny.image)
    feats = FeatureRows(tmp_path / "img.npy")
    out = tmp_path / "codes"

    def stop(k):
        if k == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(out, m, feats, on_shard=stop)
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="unfinished"):
        read_manifest(out)
    done = json.loads((out / "progress.json").read_text())["done"]
    assert sorted(done) == ["shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    # damage shard 1: only it (and the unfinished ones) must be encoded again
    (out / "shard-00001.npy").write_bytes((out / "shard-00001.npy").read_bytes()[:-3] + b"\x00\x00\x00")
    calls = []

    def encode(x):
        calls.append(len(x))
        return m.encode_image(x)

    write_shards(out, encode, feats, m.bits, "image", shard_size=37, batch_size=37, progress=False)
    assert sum(calls) == tiny.n - 2 * 37  # shards 0 and 2 were skipped
    np.testing.assert_array_equal(load_codes(out)[0], m.encode_image(tiny.image))
    # a finished directory is skipped entirely; other settings are refused unless restarted
    calls.clear()
    write_shards(out, encode, feats, m.bits, "image", shard_size=37, progress=False)
    assert calls == []
    with pytest.raises(CMHError, match="other settings.*shard_size"):
        write_shards(out, encode, feats, m.bits, "image", shard_size=50, progress=False)
    write_shards(out, encode, feats, m.bits, "image", shard_size=50, progress=False, restart=True)
    assert [s["count"] for s in read_manifest(out)["shards"]] == [50] * 5 + [10]


def test_reading_detects_damage(tiny, model, tmp_path):
    m, _ = model
    np.save(tmp_path / "img.npy", tiny.image)
    out = tmp_path / "codes"
    _write(out, m, FeatureRows(tmp_path / "img.npy"))
    arr = np.load(out / "shard-00003.npy")
    arr[0, 0] ^= 1
    np.save(out / "shard-00003.npy", arr)
    with pytest.raises(DataError, match="shard-00003.npy' does not match its checksum"):
        load_codes(out)
    (out / "shard-00004.npy").unlink()
    with pytest.raises(DataError, match="missing"):
        list(iter_shards(out))


def test_nan_features_are_refused(tiny, model, tmp_path):
    m, _ = model
    x = tiny.image.copy()
    x[50, 3] = np.nan
    np.save(tmp_path / "img.npy", x)
    with pytest.raises(DataError, match="row 50 has NaN"):
        _write(tmp_path / "codes", m, FeatureRows(tmp_path / "img.npy"))
    assert not (tmp_path / "codes" / "manifest.json").exists()


def test_cli_encode_and_eval_codes_dir_equal_in_memory(tiny, model, tmp_path, capsys):
    m, path = model
    db, q = tiny.part("database"), tiny.part("query")
    np.save(tmp_path / "db_img.npy", db.image)
    np.save(tmp_path / "db_txt.npy", db.text)
    np.save(tmp_path / "db_lab.npy", db.labels)
    for mod in ("image", "text"):
        code = main(
            [
                "encode",
                "--model",
                str(path),
                "--features",
                str(tmp_path / {"image": "db_img.npy", "text": "db_txt.npy"}[mod]),
                "--labels",
                str(tmp_path / "db_lab.npy"),
                "--out",
                str(tmp_path / mod),
                "--shard-size",
                "29",
                "--quiet",
            ]
        )
        assert code == 0
        assert read_manifest(tmp_path / mod)["modality"] == mod  # inferred from the feature width
    full = {
        "query_image": m.encode_image(q.image),
        "query_text": m.encode_text(q.text),
        "database_image": m.encode_image(db.image),
        "database_text": m.encode_text(db.text),
        "query_labels": q.labels,
        "database_labels": db.labels,
    }
    np.savez(tmp_path / "full.npz", **full)
    np.savez(tmp_path / "queries.npz", **{k: v for k, v in full.items() if k.startswith("query")})
    assert (
        main(
            [
                "eval",
                "--codes",
                str(tmp_path / "full.npz"),
                "--out",
                str(tmp_path / "a.json"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    args = ["eval", "--codes", str(tmp_path / "queries.npz"), "--codes-dir", str(tmp_path / "image")]
    args += ["--codes-dir", str(tmp_path / "text"), "--out", str(tmp_path / "b.json"), "--device", "cpu"]
    assert main(args) == 0
    a = json.loads((tmp_path / "a.json").read_text())["tasks"]
    b = json.loads((tmp_path / "b.json").read_text())["tasks"]
    assert a == b and set(a) == {"i2t", "t2i"}
    capsys.readouterr()
    # one directory per modality; labels needed somewhere
    twice = args[:5] + ["--codes-dir", str(tmp_path / "image")]
    assert main(twice) == 2
    assert "two --codes-dir hold image codes" in capsys.readouterr().err


def test_cli_encode_errors(tiny, model, tmp_path, capsys):
    _, path = model
    np.save(tmp_path / "bad.npy", np.zeros((5, 7), np.float32))
    code = main(
        [
            "encode",
            "--model",
            str(path),
            "--features",
            str(tmp_path / "bad.npy"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "7-d features are images or texts" in err
    code = main(
        [
            "encode",
            "--model",
            str(path),
            "--features",
            str(tmp_path / "bad.npy"),
            "--modality",
            "text",
            "--out",
            "o",
        ]
    )
    assert code == 2 and "takes 20-d features" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
