"""Every kind of bad input, as a user meets it on the command line: exit code 2, ONE line on stderr that
names the file or option and the fix, no traceback, nothing left behind (no record, no ``*.tmp``), and no
training started.

Each case builds its own tiny inputs in ``tmp_path`` (a 120-row dataset, 8 × 20 codes) and runs the real CLI
in-process (``cmh.cli.main``); the cases marked ``SUBPROCESS`` run ``python -m cmh`` as a user would.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as sio
import yaml

import cmh.registry as registry
from cmh.cli import main

REPO = Path(__file__).resolve().parents[1]
N, D_IMG, D_TXT, C = 120, 8, 6, 4


def _arrays() -> dict[str, np.ndarray]:
    """A small, valid dataset: image (N, 8), text (N, 6), labels (N, 4) multi-hot with no empty row."""
    rng = np.random.default_rng(0)
    labels = (rng.random((N, C)) < 0.4).astype(np.uint8)
    labels[np.arange(N), rng.integers(0, C, N)] = 1
    return {
        "image": rng.standard_normal((N, D_IMG)).astype(np.float32),
        "text": (rng.random((N, D_TXT)) < 0.5).astype(np.float32),
        "labels": labels,
    }


def _cut(path: Path) -> Path:
    """Truncate ``path`` to half its size (an interrupted copy or download)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@dataclass
class Files:
    """Inputs of one case under ``tmp_path/in``; records go to ``tmp_path/out`` (which must stay empty)."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inp = self.root / "in"
        self.out = self.root / "out"
        self.inp.mkdir()

    def p(self, name: str) -> str:
        return str(self.inp / name)

    # -- datasets ---------------------------------------------------------------------------------
    def npz(self, name: str = "data.npz", drop: tuple[str, ...] = (), **arrays: np.ndarray) -> str:
        """A native cmh dataset ``.npz``; ``arrays`` replace (``drop`` removes) the valid ones."""
        data = {**_arrays(), **arrays}
        for key in drop:
            data.pop(key)
        path = self.inp / name
        np.savez(path, **data)
        return str(path)

    def npy(self, name: str, array: np.ndarray) -> str:
        np.save(self.inp / name, array)
        return str(self.inp / name)

    def mat73(self, name: str, char: str | None = None, **variables: np.ndarray) -> str:
        """A MATLAB v7.3 file as MATLAB writes it (512-byte header, axes reversed, MATLAB_class attributes);
        ``char`` names a variable stored as a MATLAB char matrix."""
        path = self.inp / name
        with h5py.File(path, "w", userblock_size=512) as f:
            for key, value in variables.items():
                value = np.asarray(value)
                if key == char:
                    codes = np.array([[ord(c) for c in s] for s in value], dtype=np.uint16)
                    f[key] = codes.T
                    f[key].attrs["MATLAB_class"] = np.bytes_(b"char")
                else:
                    f[key] = np.ascontiguousarray(value.T).astype(np.float64)
                    f[key].attrs["MATLAB_class"] = np.bytes_(b"double")
        with open(path, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
        return str(path)

    def dcmh(self, folder: str = "dcmh", **variables: np.ndarray) -> str:
        """A DCMH ``.mat`` (v5) holding ``LAll``/``YAll``/``IAll`` (``variables`` replace or add)."""
        a = _arrays()
        data = {"LAll": a["labels"].astype(float), "YAll": a["text"], "IAll": a["image"], **variables}
        (self.inp / folder).mkdir()
        path = self.inp / folder / "set.mat"
        sio.savemat(path, {k: v for k, v in data.items() if v is not None})
        return str(path)

    def spec(self, text: str, name: str = "spec.yaml") -> str:
        a = _arrays()
        for key in ("image", "text", "labels"):
            np.save(self.inp / f"{key}.npy", a[key])
        (self.inp / name).write_text(textwrap.dedent(text))
        return str(self.inp / name)

    # -- codes for `cmh eval` ---------------------------------------------------------------------
    def codes(self, name: str = "codes.npz", **override: np.ndarray) -> str:
        rng = np.random.default_rng(1)
        data = {
            "query_labels": rng.integers(0, C, 8),
            "database_labels": rng.integers(0, C, 20),
            **{
                k: np.where(rng.random((n, 16)) < 0.5, -1, 1).astype(np.int8)
                for k, n in (
                    ("query_image", 8),
                    ("query_text", 8),
                    ("database_image", 20),
                    ("database_text", 20),
                )
            },
        }
        data.update(override)
        np.savez(self.inp / name, **{k: v for k, v in data.items() if v is not None})
        return str(self.inp / name)

    def codes_rng(self) -> np.random.Generator:
        return np.random.default_rng(2)

    # -- saved models and code shards (cmh search / cmh encode / cmh eval --codes-dir) -----------------
    def model(self, name: str = "m.pt") -> str:
        """A CVH model fitted on the small dataset and saved as ``cmh run --save-model`` saves it."""
        import warnings

        from cmh.data.catalog import load_dataset
        from cmh.models import save_model
        from cmh.registry import create_method

        ds = load_dataset(None, self.npz("model-data.npz"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (more bits than the 6-d text has directions: warned, fine)
            method = create_method("cvh", bits=16).fit(ds.part("train"))
        save_model(method, self.inp / name, ds)
        return str(self.inp / name)

    def shards(self, name: str = "shards") -> str:
        """A ``cmh encode`` shard directory of the small dataset's image codes, with its labels."""
        from cmh.data.shards import FeatureRows, write_shards
        from cmh.models import load_model

        a = _arrays()
        method = load_model(self.model()).method
        rows = FeatureRows(self.npy("shard-feat.npy", a["image"]))
        path = self.inp / name
        write_shards(path, method.encode_image, rows, 16, "image", labels=a["labels"], progress=False)
        return str(path)

    def file(self, name: str = "a-file.txt") -> str:
        (self.inp / name).write_text("not a folder\n")
        return str(self.inp / name)

    def mat_v5(self, name: str, **variables: np.ndarray) -> str:
        sio.savemat(self.inp / name, variables)
        return str(self.inp / name)


def _run_tiny(*extra: str) -> Callable[[Files], list[str]]:
    """``cmh run cvh`` on the small valid dataset with ``extra`` arguments."""
    return lambda f: ["run", "cvh", "--data", f.npz(), "--bits", "16", "--out", str(f.out), *extra]


def _run_set(method: str, setting: str) -> Callable[[Files], list[str]]:
    """``cmh run METHOD --set SETTING`` on the small valid dataset."""
    return lambda f: ["run", method, "--data", f.npz(), "--set", setting, "--out", str(f.out)]


def _image_npy(f: Files) -> str:
    """The small dataset's image features as ``feat.npy``."""
    return f.npy("feat.npy", _arrays()["image"])


def _encode(
    *extra: str,
    model: Callable[[Files], str] = Files.model,
    features: Callable[[Files], str] = _image_npy,
    out: Callable[[Files], str] = lambda f: str(f.out),
) -> Callable[[Files], list[str]]:
    """``cmh encode`` of the image features with a saved model into ``--out``, each part replaceable."""
    return lambda f: ["encode", "--model", model(f), "--features", features(f), "--out", out(f), *extra]


def _spec_with_mat_labels(f: Files) -> str:
    """A YAML spec whose labels entry names a variable the .mat file does not hold."""
    f.mat_v5("lab.mat", foo=np.ones((2, 2)))
    return f.spec("image: image.npy\ntext: text.npy\nlabels: {path: lab.mat, key: LAll}\n")


def _grid(f: Files, **run: list[int]) -> str:
    """A sweep grid YAML with one block of cvh runs on synthetic data (``run`` overrides bits/seeds)."""
    block = {"methods": ["cvh"], "datasets": ["synthetic"], "bits": [16], "seeds": [0], **run}
    path = f.inp / "grid.yaml"
    path.write_text(yaml.safe_dump({"runs": [block]}))
    return str(path)


def _corrupt_member(f: Files) -> str:
    """An uncompressed .npz whose zip directory is intact but whose 'image' bytes are damaged (bad CRC)."""
    path = Path(f.npz("crc.npz"))
    raw = bytearray(path.read_bytes())
    start = raw.index(b"image.npy") + 200  # inside the image member's data
    raw[start : start + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    return str(path)


def _queries(f: Files) -> str:
    """A codes file with the queries only (the database comes from --codes-dir)."""
    return f.codes("queries.npz", database_image=None, database_text=None, database_labels=None)


def _garble(path: Path) -> str:
    """Overwrite a shard manifest with text that is not JSON; returns its folder."""
    path.write_text("{not json")
    return str(path.parent)


def _cut_first_shard(folder: str) -> str:
    """Truncate the first shard of a shard directory (an interrupted copy); returns the folder."""
    _cut(Path(folder) / "shard-00000.npy")
    return folder


LINUX_PROC = sys.platform.startswith("linux") and Path("/proc/self").exists()
SUBPROCESS = {"trunc-npz-dataset", "device-foo", "seeds-negative", "lr-nan"}

#: (case id, argv builder, substrings the one-line error must contain: what is wrong, where, and the fix)
CASES: list[tuple[str, Callable[[Files], list[str]], tuple[str, ...]]] = [
    # -- truncated / corrupt files ------------------------------------------------------------------
    (
        "trunc-npz-dataset",
        lambda f: ["run", "cvh", "--data", str(_cut(Path(f.npz()))), "--out", str(f.out)],
        ("data.npz", "truncated or corrupt", "cmh data convert"),
    ),
    (
        "corrupt-npz-member",
        lambda f: ["run", "cvh", "--data", _corrupt_member(f), "--out", str(f.out)],
        ("crc.npz", "truncated or corrupt", "array 'image'", "copy it again"),
    ),
    (
        "trunc-npy-image-features",
        lambda f: _run_tiny("--image-features", str(_cut(Path(f.npy("feat.npy", _arrays()["image"])))))(f),
        ("feat.npy", "truncated or corrupt", "copy it again"),
    ),
    (
        "trunc-npz-image-features",
        lambda f: _run_tiny("--image-features", str(_cut(Path(f.npz("feat.npz", drop=("text", "labels"))))))(
            f
        ),
        ("feat.npz", "truncated or corrupt", "copy it again"),
    ),
    (
        "trunc-mat73-dataset",
        lambda f: [
            "run",
            "cvh",
            "--data",
            str(_cut(Path(f.mat73("flickr.mat", LAll=_arrays()["labels"], YAll=_arrays()["text"])))),
            "--out",
            str(f.out),
        ],
        ("flickr.mat", "truncated or corrupt", "save FILE -v7.3"),
    ),
    (
        "trunc-mat73-image-features",
        lambda f: _run_tiny(
            "--image-features", str(_cut(Path(f.mat73("feat.mat", IAll=_arrays()["image"]))))
        )(f),
        ("feat.mat", "truncated or corrupt", "save FILE -v7.3"),
    ),
    (
        "trunc-mat-v5-dataset",
        lambda f: ["run", "cvh", "--data", str(_cut(Path(f.dcmh()))), "--out", str(f.out)],
        ("set.mat", "truncated or corrupt"),
    ),
    (
        "trunc-codes-eval",
        lambda f: ["eval", "--codes", str(_cut(Path(f.codes())))],
        ("codes.npz", "truncated or corrupt", "numpy.savez"),
    ),
    (
        "trunc-npz-data-convert",
        lambda f: ["data", "convert", str(_cut(Path(f.npz()))), "--out", str(f.out / "x.npz")],
        ("data.npz", "truncated or corrupt", "cmh data convert"),
    ),
    (
        "trunc-image-features-data-convert",
        lambda f: [
            "data",
            "convert",
            f.npz(drop=("image",), image_paths=np.array([f"{i}.jpg" for i in range(N)])),
            "--image-features",
            str(_cut(Path(f.npy("feat.npy", _arrays()["image"])))),
            "--out",
            str(f.out / "x.npz"),
        ],
        ("feat.npy", "truncated or corrupt"),
    ),
    (
        "trunc-npz-data-info",
        lambda f: ["data", "info", str(_cut(Path(f.npz())))],
        ("data.npz", "truncated or corrupt"),
    ),
    # -- text where numbers belong, empty features --------------------------------------------------
    (
        "mat-v5-char-labels",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.dcmh(LAll=np.array(["ab", "cd"] * (N // 2))),
            "--out",
            str(f.out),
        ],
        ("labels from 'set.mat'", "hold text", "0/1 matrix"),
    ),
    (
        "mat73-char-text",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.mat73(
                "flickr.mat",
                char="YAll",
                LAll=_arrays()["labels"],
                YAll=np.array(["dog", "cat"] * (N // 2)),
                IAll=_arrays()["image"],
            ),
            "--out",
            str(f.out),
        ],
        ("text features from 'flickr.mat'", "hold text", "numeric matrix"),
    ),
    (
        "zero-column-image-ssah",
        lambda f: [
            "run",
            "ssah",
            "--data",
            f.npz(image=np.zeros((N, 0), np.float32)),
            "--set",
            "epochs=1",
            "--out",
            str(f.out),
        ],
        ("image features from 'data.npz'", "0 columns", "at least one feature"),
    ),
    (
        "zero-column-text",
        lambda f: ["run", "cvh", "--data", f.npz(text=np.zeros((N, 0), np.float32)), "--out", str(f.out)],
        ("text features from 'data.npz'", "0 columns"),
    ),
    (
        "zero-column-image-features-file",
        lambda f: _run_tiny("--image-features", f.npy("empty.npy", np.zeros((N, 0), np.float32)))(f),
        ("'empty.npy'", "0 columns"),
    ),
    # -- seeds, lists, devices ----------------------------------------------------------------------
    ("seeds-negative", _run_tiny("--seeds", "-1"), ("--seeds", "from 0 to 4294967295", "got -1")),
    ("seeds-overflow", _run_tiny("--seeds", "4294967296"), ("--seeds", "from 0 to 4294967295")),
    ("seeds-huge", _run_tiny("--seeds", str(10**30)), ("--seeds", "from 0 to 4294967295")),
    ("split-seed-negative", _run_tiny("--split-seed", "-3"), ("--split-seed", "from 0 to 4294967295")),
    ("split-seed-overflow", _run_tiny("--split-seed", str(2**32)), ("--split-seed", "from 0 to 4294967295")),
    ("seeds-duplicate", _run_tiny("--seeds", "0,0"), ("--seeds", "repeats 0", "give each value once")),
    ("bits-empty-item", _run_tiny("--bits", "16,,32"), ("--bits", "empty item", "e.g. 16,32,64")),
    ("bits-duplicate", _run_tiny("--bits", "16,32,16"), ("--bits", "repeats 16")),
    ("bits-not-a-number", _run_tiny("--bits", "16,x"), ("--bits", "comma-separated integers")),
    ("device-foo", _run_tiny("--device", "foo"), ("--device", "unknown device 'foo'", "cpu")),
    ("device-cuda-99", _run_tiny("--device", "cuda:99"), ("--device", "cuda")),
    ("sweep-seeds-negative", lambda f: ["sweep", "leaderboard", "--seeds", "-2"], ("--seeds", "got -2")),
    (
        "sweep-grid-seed-negative",
        lambda f: ["sweep", _grid(f, seeds=[0, -1]), "--out", str(f.out)],
        ("seed must be a whole number from 0 to 4294967295", "got -1"),
    ),
    (
        "sweep-grid-bits-out-of-range",
        lambda f: ["sweep", _grid(f, bits=[16, 512]), "--out", str(f.out)],
        ("bits must be an integer from 8 to 256", "got 512"),
    ),
    (
        "extract-image-device-foo",
        lambda f: [
            "extract",
            "image",
            "--images",
            f.p(""),
            "--out",
            str(f.out / "f.npz"),
            "--device",
            "gpu0",
        ],
        ("--device", "unknown device 'gpu0'"),
    ),
    (
        "coco-mini-split-seed-negative",
        lambda f: ["extract", "coco-mini", "--out", str(f.out / "c.npz"), "--split-seed", "-1"],
        ("--split-seed", "got -1"),
    ),
    ("eval-device-foo", lambda f: ["eval", "--codes", f.codes(), "--device", "tpu"], ("--device", "'tpu'")),
    # -- out-of-range method options (typed configs) ------------------------------------------------
    ("reg-negative", _run_tiny("--set", "reg=-5"), ("'reg'", ">= 0", "--set reg=0.0001")),
    ("ssah-lr-negative", _run_set("ssah", "lr=-5"), ("'lr'", "> 0")),
    ("lr-nan", _run_set("dcmh", "lr=nan"), ("'lr'", "finite number", "--set lr=")),
    ("lr-inf", _run_set("ssah", "lr_txt=inf"), ("'lr_txt'", "finite number")),
    ("batch-size-zero", _run_set("ssah", "batch_size=0"), ("'batch_size'", ">= 1", "--set batch_size=128")),
    ("epochs-overflow", _run_set("ssah", "epochs=1e400"), ("'epochs'", "expected int")),
    (
        "fraction-above-one",
        _run_set("cmssh", "positive_fraction=1.5"),
        ("'positive_fraction'", "from 0 to 1"),
    ),
    ("iters-zero", _run_set("seph-rnd", "kl_iters=0"), ("'kl_iters'", ">= 1")),
    # -- `cmh eval` codes ---------------------------------------------------------------------------
    (
        "eval-codes-nan",
        lambda f: ["eval", "--codes", f.codes(query_image=np.full((8, 16), np.nan))],
        ("codes.npz", "query_image", "NaN", "numpy.sign"),
    ),
    (
        "eval-codes-half",
        lambda f: ["eval", "--codes", f.codes(database_text=np.full((20, 16), 0.5))],
        ("database_text", "other than -1/+1", "0.5", "never rounds"),
    ),
    (
        "eval-codes-minus-half",
        lambda f: ["eval", "--codes", f.codes(query_text=np.full((8, 16), -0.5))],
        ("query_text", "other than -1/+1", "-0.5"),
    ),
    (
        "eval-codes-zero-bits",
        lambda f: [
            "eval",
            "--codes",
            f.codes(**{k: np.zeros((n, 0), np.int8) for k, n in (("query_image", 8), ("database_text", 20))}),
        ],
        ("query_image", "0 bits", "at least one bit"),
    ),
    (
        "eval-zero-one-without-flag",
        lambda f: ["eval", "--codes", f.codes(database_text=(f.codes_rng().random((20, 16)) < 0.5) * 1)],
        ("database_text", "holds 0/1 codes", "pass --zero-one"),
    ),
    (
        "eval-zero-one-flag-on-pm1",
        lambda f: ["eval", "--codes", f.codes(), "--zero-one"],
        ("other than 0/1", "--zero-one"),
    ),
    (
        "eval-codes-strings",
        lambda f: ["eval", "--codes", f.codes(query_image=np.full((8, 16), "1"))],
        ("query_image", "dtype", "as numbers"),
    ),
    (
        "eval-codes-pickled-objects",
        lambda f: ["eval", "--codes", f.codes(query_image=np.full((8, 16), None, dtype=object))],
        ("codes.npz", "pickled Python objects in 'query_image'", "numpy.savez"),
    ),
    (
        "eval-labels-missing",
        lambda f: ["eval", "--codes", f.codes(query_labels=None)],
        ("no 'query_labels'", "it has"),
    ),
    (
        "eval-labels-nan",
        lambda f: ["eval", "--codes", f.codes(query_labels=np.full(8, np.nan))],
        ("query_labels", "NaN"),
    ),
    (
        "eval-without-codes",
        lambda f: ["eval"],
        ("the following arguments are required: --codes", "cmh eval --help"),
    ),
    ("eval-codes-missing", lambda f: ["eval", "--codes", f.p("nope.npz")], ("nope.npz", "not found")),
    (
        "eval-out-under-a-file",
        lambda f: ["eval", "--codes", f.codes(), "--out", str(Path(f.file()) / "eval.json")],
        ("--out", "a-file.txt/eval.json", "not a folder"),
    ),
    (
        "eval-out-is-a-folder",
        lambda f: ["eval", "--codes", f.codes(), "--out", f.p("")],
        ("--out", "is a folder", "name a file"),
    ),
    # -- unwritable outputs, checked before training --------------------------------------------------
    (
        "run-out-under-a-file",
        lambda f: ["run", "cvh", "--data", f.npz(), "--out", str(Path(f.file()) / "results")],
        ("--out", "a-file.txt", "not a folder", "choose another path"),
    ),
    (
        "run-out-is-a-file",
        lambda f: ["run", "cvh", "--data", f.npz(), "--out", f.file()],
        ("--out", "is a file, not a folder"),
    ),
    (
        "sweep-out-under-a-file",
        lambda f: ["sweep", "leaderboard", "--datasets", "synthetic", "--out", str(Path(f.file()) / "r")],
        ("--out", "a-file.txt", "not a folder"),
    ),
    (
        "convert-out-under-a-file",
        lambda f: ["data", "convert", f.npz(), "--out", str(Path(f.file()) / "x.npz")],
        ("--out", "a-file.txt/x.npz", "not a folder"),
    ),
    (
        "extract-text-out-under-a-file",
        lambda f: ["extract", "text", "--input", f.p("caps.jsonl"), "--out", str(Path(f.file()) / "t.npz")],
        ("--out", "a-file.txt/t.npz", "not a folder"),
    ),
    (
        "compare-output-under-a-file",
        lambda f: ["compare", "--results", str(REPO / "results"), "--output", str(Path(f.file()) / "t.md")],
        ("--output", "a-file.txt/t.md", "not a folder"),
    ),
    (
        "leaderboard-out-under-a-file",
        lambda f: ["leaderboard", "--results", str(REPO / "results"), "--out", str(Path(f.file()) / "lb")],
        ("--out", "a-file.txt/lb", "not a folder"),
    ),
    # -- what README.md and docs/*.md already promise -------------------------------------------------
    (
        "unknown-method",
        lambda f: ["run", "cvhh", "--out", str(f.out)],
        ("unknown method 'cvhh'", "did you mean 'cvh'"),
    ),
    ("unknown-option", _run_tiny("--set", "epochs=3"), ("unknown option 'epochs'", "valid options")),
    ("set-without-equals", _run_tiny("--set", "reg"), ("--set expects key=value",)),
    ("bits-too-small", _run_tiny("--bits", "4"), ("bits must be an integer from 8 to 256", "--bits 32")),
    ("bits-too-large", _run_tiny("--bits", "300"), ("bits must be an integer from 8 to 256",)),
    (
        "unknown-dataset",
        lambda f: ["run", "cvh", "--dataset", "synthtic", "--out", str(f.out)],
        ("did you mean 'synthetic'",),
    ),
    (
        "dataset-without-data",
        lambda f: (
            f.env.update(CMH_DATA=str(f.inp)),
            ["run", "cvh", "--dataset", "nus-wide", "--out", str(f.out)],
        )[1],
        ("nus-wide", "--data PATH"),
    ),
    (
        "missing-data-file",
        lambda f: ["run", "cvh", "--data", f.p("nope.npz"), "--out", str(f.out)],
        ("nope.npz", "does not exist", "check --data"),
    ),
    (
        "missing-config-file",
        _run_tiny("--config", "/nonexistent/cfg.yaml"),
        ("cfg.yaml", "not found", "--config"),
    ),
    ("unknown-cli-flag", _run_tiny("--epochs", "3"), ("unrecognized arguments: --epochs", "--help")),
    ("bad-database-choice", _run_tiny("--database", "both"), ("--database", "invalid choice", "--help")),
    ("no-unified-codes", _run_tiny("--database", "unified"), ("cvh has no unified database codes",)),
    (
        "row-counts-differ",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.npz(text=np.ones((N - 1, D_TXT), np.float32)),
            "--out",
            str(f.out),
        ],
        ("data.npz", "row counts differ", "aligned"),
    ),
    (
        "nan-features",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.npz(image=np.full((N, D_IMG), np.nan, np.float32)),
            "--out",
            str(f.out),
        ],
        ("image features from 'data.npz'", "NaN/inf", "clean or impute"),
    ),
    (
        "labels-not-01",
        lambda f: ["run", "cvh", "--data", f.npz(labels=np.full((N, C), 2)), "--out", str(f.out)],
        ("labels from 'data.npz'", "expected 0/1 multi-hot"),
    ),
    (
        "rows-without-label",
        lambda f: ["run", "cvh", "--data", f.npz(labels=np.zeros((N, C), np.uint8)), "--out", str(f.out)],
        ("data.npz", "have no label", "drop those rows"),
    ),
    (
        "split-index-out-of-range",
        lambda f: ["run", "cvh", "--data", f.npz(query=np.array([0, 1, N + 5])), "--out", str(f.out)],
        ("query",),
    ),
    (
        "mat-without-lall-yall",
        lambda f: ["run", "cvh", "--data", f.mat_v5("other.mat", foo=np.ones((3, 3))), "--out", str(f.out)],
        ("other.mat", "foo", "YAML spec"),
    ),
    (
        "dcmh-raw-pixels",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.dcmh(IAll=np.zeros((N, 4, 4, 3), np.uint8)),
            "--out",
            str(f.out),
        ],
        ("raw pixels", "--image-features"),
    ),
    (
        "spec-missing-variable",
        lambda f: [
            "run",
            "cvh",
            "--data",
            _spec_with_mat_labels(f),
            "--out",
            str(f.out),
        ],
        ("lab.mat", "lacks variable(s) LAll", "it has: foo"),
    ),
    (
        "spec-unknown-field",
        lambda f: [
            "run",
            "cvh",
            "--data",
            f.spec("image: image.npy\ntext: text.npy\nlables: labels.npy\n"),
            "--out",
            str(f.out),
        ],
        ("spec.yaml", "unknown field 'lables'", "did you mean 'labels'"),
    ),
    (
        "spec-bad-yaml",
        lambda f: ["run", "cvh", "--data", f.spec("image: [image.npy\n"), "--out", str(f.out)],
        ("spec.yaml", "not valid YAML", "fix its syntax"),
    ),
    (
        "recipe-not-found",
        lambda f: ["reproduce", "no-such-recipe", "--out", str(f.out)],
        ("no-such-recipe", "not found"),
    ),
    (
        "recipe-without-data",
        lambda f: ["reproduce", "ssah-cvpr18", "--out", str(f.out)],
        ("--data NAME=PATH",),
    ),
    # -- saved models, shards and the commands that read them -------------------------------------------
    (
        "run-save-model-under-a-file",
        lambda f: _run_tiny("--save-model", f.file() + "/m.pt")(f),
        ("--save-model", "is a file, not a folder"),
    ),
    (
        "search-model-truncated",
        lambda f: ["search", "--model", str(_cut(Path(f.model()))), "--text", "a dog"],
        ("m.pt", "cannot read", "--save-model"),
    ),
    (
        "search-model-not-a-model",
        lambda f: ["search", "--model", f.file(), "--text", "a dog"],
        ("a-file.txt", "cannot read", "--save-model"),
    ),
    (
        "search-top-zero",
        lambda f: ["search", "--model", f.model(), "--text", "a dog", "--top", "0"],
        ("--top", "positive"),
    ),
    (
        "search-device-foo",
        lambda f: ["search", "--model", f.model(), "--text", "a dog", "--device", "tpu"],
        ("--device", "'tpu'"),
    ),
    (
        "search-show-under-a-file",
        lambda f: ["search", "--model", f.model(), "--text", "a dog", "--show", f.file() + "/q.png"],
        ("--show", "is a file, not a folder"),
    ),
    (
        "encode-features-truncated",
        _encode(features=lambda f: str(_cut(Path(_image_npy(f))))),
        ("feat.npy", "truncated or corrupt"),
    ),
    (
        "encode-model-truncated",
        _encode(model=lambda f: str(_cut(Path(f.model())))),
        ("m.pt", "cannot read", "--save-model"),
    ),
    ("encode-shard-size-zero", _encode("--shard-size", "0"), ("--shard-size", "positive")),
    (
        "encode-out-under-a-file",
        _encode(out=lambda f: f.file() + "/shards"),
        ("--out", "is a file, not a folder"),
    ),
    (
        "eval-codes-dir-without-manifest",
        lambda f: ["eval", "--codes", _queries(f), "--codes-dir", f.p("no-shards")],
        ("no-shards", "manifest.json", "cmh encode"),
    ),
    (
        "eval-codes-dir-garbled-manifest",
        lambda f: [
            "eval",
            "--codes",
            _queries(f),
            "--codes-dir",
            _garble(Path(f.shards()) / "manifest.json"),
        ],
        ("manifest.json", "not valid JSON", "cmh encode"),
    ),
    (
        "eval-codes-dir-truncated-shard",
        lambda f: ["eval", "--codes", _queries(f), "--codes-dir", _cut_first_shard(f.shards())],
        ("shard-00000.npy", "checksum", "cmh encode"),
    ),
    (
        "eval-topk-backend-unknown",
        lambda f: ["eval", "--codes", f.codes(), "--topk-backend", "annoy"],
        ("--topk-backend", "invalid choice"),
    ),
    (
        "records-migrate-missing-folder",
        lambda f: ["records", "migrate", "--results", f.p("no-results")],
        ("no-results", "not found", "--results"),
    ),
    (
        "sweep-ray-with-jobs",
        lambda f: ["sweep", _grid(f), "--backend", "ray", "--jobs", "2", "--out", str(f.out)],
        ("--jobs", "--backend ray"),
    ),
    (
        "sweep-cpus-per-run-zero",
        lambda f: ["sweep", _grid(f), "--cpus-per-run", "0", "--out", str(f.out)],
        ("cpus must be > 0",),
    ),
    (
        "convert-out-not-npz",
        lambda f: ["data", "convert", f.npz(), "--out", str(f.out / "x.txt")],
        ("--out", "must end in .npz"),
    ),
    (
        "bench-eval-stages-on-cuda",
        lambda f: [
            "bench",
            "eval",
            "--stages",
            "--sizes",
            "tiny",
            "--device",
            "cuda",
            "--json",
            str(f.out / "b.json"),
        ],
        ("--stages times the compiled CPU kernel", "drop --device cuda"),
    ),
]
if LINUX_PROC:  # a folder nobody may write to, even root: /proc
    CASES += [
        (
            "run-out-unwritable",
            lambda f: ["run", "cvh", "--data", f.npz(), "--out", "/proc/cmh-results"],
            ("--out", "/proc/cmh-results", "not writable"),
        ),
        (
            "eval-out-unwritable",
            lambda f: ["eval", "--codes", f.codes(), "--out", "/proc/cmh-eval.json"],
            ("--out", "'/proc/cmh-eval.json'", "not writable"),
        ),
    ]


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture, subprocess_run: bool) -> tuple[int, str, str]:
    if not subprocess_run:
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "cmh", *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("case, build, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, build, needles, tmp_path, capsys, monkeypatch):
    files = Files(tmp_path)
    argv = build(files)
    for key, value in files.env.items():
        monkeypatch.setenv(key, value)
    code, out, err = _run_cli(argv, capsys, case in SUBPROCESS)
    lines = err.strip().splitlines()
    assert code == 2, (argv, out, err)
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err + out, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "training ..." not in out  # every case is caught before any training starts
    assert not files.out.exists() or not list(files.out.rglob("*")), list(files.out.rglob("*"))
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))


def test_the_table_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


# ------------------------------------------------------------------------------------------------------
# a third-party plugin that fails to import


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    """An installed distribution whose ``cmh.methods`` entry point imports a module that raises."""
    (tmp_path / "cmh_broken_demo.py").write_text("raise ImportError(\"No module named 'torch_geometric'\")\n")
    dist = tmp_path / "cmh_broken_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cmh-broken-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cmh.methods]\nbroken-demo = cmh_broken_demo:Demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "FAILED_PLUGINS", {})
    yield "broken-demo"
    sys.modules.pop("cmh_broken_demo", None)


def test_a_broken_plugin_is_one_warning_and_everything_else_works(broken_plugin, tmp_path, capsys):
    assert main(["list", "methods"]) == 0
    captured = capsys.readouterr()
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("cmh: warning: method plugin 'broken-demo'"), warning
    assert "cmh_broken_demo:Demo" in warning[0] and "torch_geometric" in warning[0]
    assert "uninstall" in warning[0] and "Traceback" not in captured.err
    assert "cvh" in captured.out and "broken-demo" not in captured.out
    # other methods still run and record
    out = tmp_path / "out"
    assert main(["run", "cvh", "--bits", "16", "--out", str(out)]) == 0
    assert len(list(out.rglob("*.json"))) == 1
    # asking for the broken one says why, in one line
    capsys.readouterr()
    assert main(["run", "broken-demo", "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method 'broken-demo' comes from a plugin that failed to load" in err[0]
    assert "torch_geometric" in err[0] and not (tmp_path / "out2").exists()


def test_a_broken_plugin_warns_in_python_too(broken_plugin):
    with pytest.warns(registry.PluginWarning, match="broken-demo"):
        names = registry.list_methods()
    assert "cvh" in names and "broken-demo" not in names


# ------------------------------------------------------------------------------------------------------
# the range rules hold for any method's config (a plugin's too), by option name


@dataclasses.dataclass(frozen=True)
class _PluginConfig:
    lr: float | None = None
    head_lr: float = 0.1
    epochs: int = 3
    batch_size: int = 64
    drop_fraction: float = 0.2
    widths: tuple[int, ...] = (16, 8)
    txt_hidden: int = 0
    temperature: float = 1.0  # no rule: any finite value


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lr", 0, "must be > 0; or leave 'lr' out"),
        ("lr", "-1e-3", "must be > 0"),
        ("head_lr", "nan", "expected a finite number; e.g. --set head_lr=0.1 (the default)"),
        ("epochs", 0, "must be >= 1; e.g. --set epochs=3"),
        ("batch_size", -4, "must be >= 1"),
        ("drop_fraction", 1.01, "from 0 to 1"),
        ("txt_hidden", -1, "must be >= 0"),
        ("temperature", "inf", "finite number"),
        ("epochs", "1e400", "expected int"),
    ],
)
def test_range_rules_apply_to_any_config(key, value, message):
    from cmh.config import build_config
    from cmh.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(_PluginConfig, {key: value})


def test_range_rules_accept_the_edges():
    from cmh.config import build_config

    cfg = build_config(
        _PluginConfig, {"lr": 1e-9, "epochs": 1, "drop_fraction": 1.0, "txt_hidden": 0, "temperature": -2.0}
    )
    assert (cfg.lr, cfg.epochs, cfg.drop_fraction, cfg.temperature) == (1e-9, 1, 1.0, -2.0)
