"""Loaders on the real shared files and on files built in tmp: .mat v5/v7.3, DCMH, Wikipedia, npz, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp

from cmh.data import one_hot
from cmh.data.catalog import list_datasets, load_dataset
from cmh.data.loaders import (
    drop_unlabelled,
    load_dcmh,
    load_npz,
    load_wikipedia,
    read_array,
    read_category_list,
    save_npz,
)
from cmh.data.mat import mat_variables, read_mat, read_mat_slice
from cmh.errors import DataError

MATLAB_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Nov 24 12:00:00 2026 HDF5 schema 1.00 ."
)


def write_mat73(path, arrays, header=True):
    """Write ``arrays`` the way MATLAB's ``save -v7.3`` does: HDF5, axes reversed, MATLAB_class attributes,
    sparse matrices as CSC groups, and (optionally) the MATLAB text header in the 512-byte user block."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, x in arrays.items():
            if sp.issparse(x):
                c = x.tocsc()
                g = f.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("double")
                g.attrs["MATLAB_sparse"] = np.uint64(c.shape[0])
                g["data"] = c.data.astype(np.float64)
                g["ir"] = c.indices.astype(np.uint64)
                g["jc"] = c.indptr.astype(np.uint64)
            else:
                x = np.asarray(x)
                d = f.create_dataset(name, data=x.T)  # column-major storage = every axis reversed
                d.attrs["MATLAB_class"] = np.bytes_("uint8" if x.dtype == np.uint8 else "double")
    if header:
        with open(path, "r+b") as fh:
            fh.write(MATLAB_HEADER.ljust(116, b" "))


def _toy(n=60, d_img=12, d_txt=20, c=5, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((n, d_img))
    text = (rng.random((n, d_txt)) < 0.2).astype(np.float64)
    text[np.arange(n), rng.integers(0, d_txt, n)] = 1
    labels = (rng.random((n, c)) < 0.3).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, c, n)] = 1
    return image, text, labels


# ---------------------------------------------------------------------------------------------------- real files


def test_wikipedia_raw_mat_and_npz_are_identical(shared_data):
    folder = shared_data / "wikipedia"
    raw = load_wikipedia(folder / "raw_features.mat")
    npz = load_wikipedia(folder / "wikipedia.npz")
    assert raw.n == 2866 and raw.image.shape == (2866, 128) and raw.text.shape == (2866, 10)
    assert raw.labels.shape == (2866, 10) and np.all(raw.labels.sum(1) == 1)
    for a, b in ((raw.image, npz.image), (raw.text, npz.text), (raw.labels, npz.labels)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert raw.content_hash() == npz.content_hash()
    # the Wikipedia protocol: query = 693 test pairs, database = train = 2,173 training pairs
    s = raw.split
    assert (len(s.query), len(s.database), len(s.train)) == (693, 2173, 2173)
    assert np.array_equal(s.train, s.database) and np.intersect1d(s.query, s.database).size == 0
    assert s.protocol == "wikipedia"
    # labels follow the list files (category id - 1) and the published class counts
    cats = read_category_list(folder / "testset_txt_img_cat.list")
    assert np.array_equal(raw.labels[2173:].argmax(1), cats - 1)
    assert raw.labels[:2173].sum(0).tolist() == [138, 272, 244, 248, 202, 178, 186, 144, 214, 347]
    assert raw.meta["class_names"][0] == "art"
    # every way of naming it gives the same data
    assert load_dataset("wikipedia", folder).content_hash() == raw.content_hash()
    assert load_dataset(None, folder / "wikipedia.npz").content_hash() == raw.content_hash()
    assert load_dataset(None, folder / "raw_features.mat").content_hash() == raw.content_hash()


def test_wikipedia_default_path_from_cmh_data(shared_data, monkeypatch):
    monkeypatch.setenv("CMH_DATA", str(shared_data))
    assert load_dataset("wikipedia").n == 2866
    monkeypatch.delenv("CMH_DATA")
    with pytest.raises(DataError, match="pass --data PATH or set CMH_DATA"):
        load_dataset("wikipedia")


def test_mirflickr_separate_dcmh_files(shared_data, tmp_path):
    folder = shared_data / "mirflickr25k"
    assert mat_variables(folder / "mirflickr25k-lall.mat") == {"LAll": (20015, 24)}
    feats = np.random.default_rng(0).random((20015, 32), dtype=np.float32)
    np.save(tmp_path / "iall.npy", feats)
    ds = load_dataset("mirflickr25k", folder, split_seed=3, image_features=tmp_path / "iall.npy")
    assert ds.labels.shape == (20015, 24) and ds.text.shape == (20015, 1386) and ds.image.shape == (20015, 32)
    assert isinstance(ds.image, np.memmap)  # float32 .npy stays memory-mapped
    assert np.array_equal(ds.image, feats)
    assert abs(ds.labels.sum(1).mean() - 3.78) < 0.01 and ds.labels.sum(0)[0] == 2647
    assert abs((ds.text > 0).sum(1).mean() - 4.64) < 0.01
    copy = np.load(folder / "mirflickr25k_text_labels.npz")
    assert np.array_equal(ds.labels, copy["labels"]) and np.array_equal(ds.text, copy["text"])
    s = ds.split
    assert (len(s.query), len(s.train), len(s.database)) == (2000, 10000, 18015)
    assert s.protocol == "mirflickr25k" and s.seed == 3
    # the single lall file also works: the other variables are found beside it
    one = load_dcmh(folder / "mirflickr25k-lall.mat", image_features=tmp_path / "iall.npy", split_seed=3)
    assert one.content_hash() == ds.content_hash()
    # and the npz copy with the same features gives the same data under the same protocol and seed
    via_npz = load_dataset(
        "mirflickr25k",
        folder / "mirflickr25k_text_labels.npz",
        split_seed=3,
        image_features=tmp_path / "iall.npy",
    )
    assert via_npz.content_hash() == ds.content_hash()


def test_mirflickr_without_images_explains(shared_data):
    with pytest.raises(DataError, match="text \\+ labels only; pass features with --image-features") as e:
        load_dataset("mirflickr25k", shared_data / "mirflickr25k")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------- .mat v7.3


def test_mat73_is_untransposed(tmp_path):
    image, text, labels = _toy()
    f = tmp_path / "v73.mat"
    write_mat73(f, {"IAll": image, "YAll": sp.csr_matrix(text), "LAll": labels})
    with h5py.File(f, "r") as h:  # what h5py sees: MATLAB's transposed layout
        assert h["IAll"].shape == (12, 60)
    assert mat_variables(f) == {"IAll": (60, 12), "YAll": (60, 20), "LAll": (60, 5)}
    got = read_mat(f, ["IAll", "YAll", "LAll"])
    assert np.array_equal(got["IAll"], image) and np.array_equal(got["LAll"], labels)
    assert sp.issparse(got["YAll"]) and np.array_equal(got["YAll"].toarray(), text)
    # case-insensitive names, optional names, and the same result without the text header (attributes suffice)
    g = tmp_path / "noheader.mat"
    write_mat73(g, {"IAll": image}, header=False)
    assert np.array_equal(read_mat(g, ["iall"], optional=["nothing"])["iall"], image)


def test_plain_hdf5_is_read_as_stored(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        f["feats"] = x
    assert np.array_equal(read_array(tmp_path / "feats.h5", "feats"), x)
    assert np.array_equal(read_array(tmp_path / "feats.h5"), x)  # single dataset: key optional


def test_mat_v5_and_v73_give_the_same_dcmh_dataset(tmp_path):
    image, text, labels = _toy(n=300)
    (tmp_path / "v5").mkdir()
    (tmp_path / "v73").mkdir()
    sio.savemat(tmp_path / "v5" / "x-iall.mat", {"IAll": image})
    sio.savemat(tmp_path / "v5" / "x-yall.mat", {"YAll": text})
    sio.savemat(tmp_path / "v5" / "x-lall.mat", {"LAll": labels})
    for name, key, x in (("x-iall", "IAll", image), ("x-yall", "YAll", text), ("x-lall", "LAll", labels)):
        write_mat73(tmp_path / "v73" / f"{name}.mat", {key: x})
    a = load_dcmh(tmp_path / "v5", name="toy", protocol=None)
    b = load_dcmh(tmp_path / "v73", name="toy", protocol=None)
    assert a.content_hash() == b.content_hash()
    assert np.array_equal(a.image, image.astype(np.float32)) and np.array_equal(a.labels, labels)
    # generic detection of a folder of DCMH files
    assert load_dataset(None, tmp_path / "v73").content_hash() == a.content_hash()


def test_flickr25k_single_file_layout(tmp_path):
    n = 40
    rng = np.random.default_rng(1)
    _, text, labels = _toy(n=n)
    pixels = rng.integers(0, 256, (n, 8, 6, 3), dtype=np.uint8)
    f = tmp_path / "FLICKR-25K.mat"
    write_mat73(f, {"images": pixels, "YAll": text, "LAll": labels})
    assert mat_variables(f)["images"] == (n, 8, 6, 3)
    # raw pixels come back in MATLAB's order, and can be streamed in row slices
    assert np.array_equal(read_mat(f, ["images"])["images"], pixels)
    assert np.array_equal(read_mat_slice(f, "images", 5, 9), pixels[5:9])
    with pytest.raises(DataError, match="holds raw pixels images \\(40, 8, 6, 3\\), not features"):
        load_dcmh(f)
    feats = rng.random((n, 7)).astype(np.float32)
    np.savez(tmp_path / "feats.npz", features=feats, paths=np.arange(n))
    ds = load_dcmh(f, image_features=tmp_path / "feats.npz", image_key="features", protocol=None)
    assert np.array_equal(ds.image, feats)
    # `features` is the default key of a multi-array npz (the layout of `cmh extract image`)
    assert load_dcmh(
        f, image_features=tmp_path / "feats.npz", protocol=None
    ).content_hash() == ds.content_hash() and np.array_equal(ds.text, text.astype(np.float32))
    # the same single-file layout with features in `images`
    g = tmp_path / "feat-layout.mat"
    write_mat73(g, {"images": feats.astype(np.float64), "YAll": text, "LAll": labels})
    ds2 = load_dataset(None, g)
    assert np.array_equal(ds2.image, feats) and np.array_equal(ds2.labels, labels)


# ---------------------------------------------------------------------------------------------------- npz


def test_native_npz_round_trip_dense_and_sparse(tmp_path):
    image, text, labels = _toy(n=100)
    base = load_dataset(None, _write_native(tmp_path / "a.npz", image, text, labels), split_seed=2)
    assert base.split.protocol == "random" and base.split.seed == 2 and len(base.split.query) == 10
    for sparse in (False, True):
        ds = (
            base
            if not sparse
            else base.__class__(
                base.name, base.image, sp.csr_matrix(base.text), base.labels, base.split, meta=base.meta
            )
        )
        out = save_npz(ds, tmp_path / f"out{sparse}.npz", compress=sparse)
        back = load_npz(out)
        assert back.content_hash() == ds.content_hash()
        assert sp.issparse(back.text) == sparse
        assert back.split.seed == 2 and back.split.protocol == "random" and back.name == ds.name
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary files


def _write_native(path, image, text, labels, **extra):
    np.savez(path, image=image, text=text, labels=labels, **extra)
    return path


def test_npz_stored_split_and_image_paths(tmp_path):
    image, text, labels = _toy(n=30)
    paths = np.array([f"img{i}.jpg" for i in range(30)])
    f = _write_native(
        tmp_path / "s.npz",
        image,
        text,
        labels,
        query=np.arange(5),
        train=np.arange(5, 20),
        image_paths=paths,
        name=np.array("mine"),
    )
    ds = load_npz(f)
    assert ds.name == "mine" and ds.image_paths[3] == "img3.jpg"
    assert np.array_equal(ds.split.query, np.arange(5)) and np.array_equal(
        ds.split.database, np.arange(5, 30)
    )
    assert np.array_equal(ds.split.train, np.arange(5, 20))
    # a protocol resplit on request
    assert len(load_npz(f, resplit=True, split_seed=1).split.query) == 3


def test_drop_unlabelled():
    image, text, labels = _toy(n=10)
    labels[2] = 0
    text[7] = 0
    kept, idx = drop_unlabelled({"image": image, "text": sp.csr_matrix(text), "labels": labels, "x": None})
    assert idx.tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    assert kept["image"].shape == (8, 12) and kept["text"].shape == (8, 20) and kept["x"] is None
    _, idx2 = drop_unlabelled({"text": text, "labels": labels}, require_text=False)
    assert 7 in idx2 and 2 not in idx2


# ---------------------------------------------------------------------------------------------------- errors


def _one_line_error(fn, match):
    with pytest.raises(DataError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_error_missing_file(tmp_path):
    _one_line_error(lambda: load_dataset(None, tmp_path / "nope.npz"), "does not exist")
    _one_line_error(lambda: load_wikipedia(tmp_path / "nope.mat"), "does not exist")
    _one_line_error(lambda: read_array(tmp_path / "nope.npy"), "does not exist")


def test_error_unreadable_files(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    _one_line_error(lambda: read_mat(bad, ["x"]), "not a readable MATLAB file")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    _one_line_error(lambda: load_npz(tmp_path / "bad.npz"), "not a readable .npz")
    (tmp_path / "x.parquet").write_bytes(b"")
    _one_line_error(lambda: read_array(tmp_path / "x.parquet"), "unknown extension")


def test_error_mat_without_expected_variables(tmp_path):
    f = tmp_path / "labels.mat"
    sio.savemat(f, {"foo": np.ones((3, 2)), "bar": np.zeros(3)})
    msg = _one_line_error(lambda: read_mat(f, ["LAll"]), "lacks variable\\(s\\) LAll \\(it has: bar, foo\\)")
    assert "labels.mat" in msg
    _one_line_error(lambda: load_dataset(None, f), "expected the Wikipedia layout .* or DCMH")
    g = tmp_path / "v73.mat"
    write_mat73(g, {"XX": np.ones((3, 2))})
    _one_line_error(
        lambda: read_mat(g, ["LAll", "YAll"]), "lacks variable\\(s\\) LAll, YAll \\(it has: XX\\)"
    )
    sio.savemat(tmp_path / "w.mat", {"I_tr": np.ones((3, 2))})
    _one_line_error(lambda: load_wikipedia(tmp_path / "w.mat"), "lacks variable\\(s\\) I_te, T_tr, T_te")


def test_error_row_mismatch(tmp_path):
    image, text, labels = _toy(n=50)
    d = tmp_path / "dcmh"
    d.mkdir()
    sio.savemat(d / "a-yall.mat", {"YAll": text})
    sio.savemat(d / "a-lall.mat", {"LAll": labels})
    np.save(tmp_path / "feats.npy", image[:49])
    _one_line_error(
        lambda: load_dcmh(d, image_features=tmp_path / "feats.npy"),
        "row counts differ \\(image 49, text 50, labels 50\\)",
    )
    _one_line_error(
        lambda: load_npz(_write_native(tmp_path / "m.npz", image, text[:-1], labels)), "row counts differ"
    )


def test_error_nan_and_empty_labels(tmp_path):
    image, text, labels = _toy(n=50)
    bad = image.copy()
    bad[3, 4] = np.nan
    bad[5, 0] = np.inf
    _one_line_error(
        lambda: load_npz(_write_native(tmp_path / "n.npz", bad, text, labels)),
        "image features from 'n.npz' contain 2 NaN/inf values",
    )
    empty = labels.copy()
    empty[[4, 9]] = 0
    _one_line_error(
        lambda: load_npz(_write_native(tmp_path / "e.npz", image, text, empty)), "2 of 50 rows have no label"
    )
    d = tmp_path / "dcmh"
    d.mkdir()
    sio.savemat(d / "a-yall.mat", {"YAll": text})
    sio.savemat(d / "a-lall.mat", {"LAll": empty})
    sio.savemat(d / "a-iall.mat", {"IAll": image})
    _one_line_error(lambda: load_dcmh(d, protocol=None), "2 of 50 rows have no label; pass drop_empty=True")
    ds = load_dcmh(d, protocol=None, drop_empty=True)
    assert ds.n == 48 and ds.meta["dropped_rows"] == 2


def test_error_bad_labels_and_npz_keys(tmp_path):
    image, text, labels = _toy(n=20)
    _one_line_error(
        lambda: load_npz(_write_native(tmp_path / "l.npz", image, text, labels * 3)),
        "hold values 0, 3; expected 0/1",
    )
    np.savez(tmp_path / "other.npz", a=image)
    _one_line_error(
        lambda: load_npz(tmp_path / "other.npz"), "not a cmh dataset .npz: it has a but needs labels"
    )
    np.savez(tmp_path / "tl.npz", text=text, labels=labels)
    _one_line_error(lambda: load_npz(tmp_path / "tl.npz"), "no image features; pass them with image_features")


def test_error_overlapping_stored_split(tmp_path):
    image, text, labels = _toy(n=20)
    f = _write_native(
        tmp_path / "o.npz",
        image,
        text,
        labels,
        query=np.arange(5),
        database=np.arange(3, 20),
        train=np.arange(5, 20),
    )
    _one_line_error(lambda: load_npz(f), "query and database overlap")


def test_catalog_names():
    names = list_datasets()
    assert {"synthetic", "wikipedia", "mirflickr25k", "coco_mini"} <= set(names)
    _one_line_error(lambda: load_dataset("wikipedai"), "did you mean 'wikipedia'")
    _one_line_error(lambda: load_dataset("synthetic", "x.npz"), "takes no --data path")
    small = load_dataset(None, None, split_seed=4, n=300, n_query=30, n_train=100)
    assert small.name == "synthetic" and small.split.seed == 4 and small.n == 300


def test_wikipedia_from_tmp_copy_with_bad_list(tmp_path, shared_data):
    import shutil

    src = shared_data / "wikipedia"
    shutil.copy(src / "raw_features.mat", tmp_path)
    shutil.copy(src / "trainset_txt_img_cat.list", tmp_path)
    _one_line_error(lambda: load_wikipedia(tmp_path), "testset_txt_img_cat.list' is missing beside it")
    lines = (src / "testset_txt_img_cat.list").read_text().splitlines()
    (tmp_path / "testset_txt_img_cat.list").write_text("\n".join(lines[:-1]) + "\n")
    _one_line_error(
        lambda: load_wikipedia(tmp_path), "row counts differ \\(I_te 693, T_te 693, labels 692\\)"
    )


def test_one_hot_ids_via_read_array(tmp_path):
    np.savetxt(tmp_path / "ids.txt", [1, 3, 2])
    ids = read_array(tmp_path / "ids.txt")
    assert one_hot(ids.astype(int) - 1).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_dcmh_folder_with_two_datasets(tmp_path):
    a_img, a_txt, a_lab = _toy(n=30, seed=1)
    b_img, b_txt, b_lab = _toy(n=40, seed=2)
    for prefix, (img, txt, lab) in (
        ("mirflickr25k", (a_img, a_txt, a_lab)),
        ("nus-wide-tc10", (b_img, b_txt, b_lab)),
    ):
        sio.savemat(tmp_path / f"{prefix}-iall.mat", {"IAll": img})
        sio.savemat(tmp_path / f"{prefix}-yall.mat", {"YAll": txt})
        sio.savemat(tmp_path / f"{prefix}-lall.mat", {"LAll": lab})
    _one_line_error(
        lambda: load_dcmh(tmp_path, protocol=None), "several files hold the image .*; point --data at one"
    )
    a = load_dcmh(tmp_path / "mirflickr25k-lall.mat", protocol=None)
    b = load_dcmh(tmp_path / "nus-wide-tc10-yall.mat", protocol=None)
    assert a.n == 30 and np.array_equal(a.labels, a_lab) and np.array_equal(a.image, a_img.astype(np.float32))
    assert b.n == 40 and np.array_equal(b.text, b_txt.astype(np.float32))
