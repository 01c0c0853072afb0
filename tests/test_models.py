"""Saved models (cmh/models.py): every registered method round-trips through save_model/load_model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cmh.errors import CMHError
from cmh.models import load_model, model_path, pack_state, save_model, unpack_state
from cmh.registry import create_method, list_methods

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEEP_FAST = {"epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def tiny():
    from cmh.data import make_synthetic

    return make_synthetic(n=260, image_dim=24, text_dim=20, classes=6, n_query=40, n_train=160)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_saves_and_loads_to_identical_codes(name, tiny, tmp_path):
    cls_kind = create_method(name, bits=16).kind
    method = create_method(name, bits=16, seed=3, **(DEEP_FAST if cls_kind == "deep" else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few-bit warnings of some baselines on tiny data
        method.fit(tiny.part("train"))
    path = save_model(method, tmp_path / "m.pt", tiny)
    loaded = load_model(path)
    q = tiny.part("query")
    assert loaded.method.name == name and loaded.method.bits == 16 and loaded.method.seed == 3
    np.testing.assert_array_equal(loaded.method.encode_image(q.image), method.encode_image(q.image))
    np.testing.assert_array_equal(loaded.method.encode_text(q.text), method.encode_text(q.text))
    assert loaded.dataset["content_hash"] == tiny.content_hash()
    assert loaded.pipeline is None  # synthetic features have no extraction pipeline


def test_pack_state_round_trips_numpy_types():
    value = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "u": np.array([1, 2**40], dtype=np.uint64),
        "b": np.array([True, False]),
        "s": np.float64(2.5),
        "t": (1, "x", [np.int16(3)]),
        "m": sp.random(5, 4, density=0.5, format="csr", random_state=0, dtype=np.float32),
        "tensor": torch.ones(2),
    }
    out = unpack_state(pack_state(value))
    np.testing.assert_array_equal(out["a"], value["a"])
    assert out["a"].dtype == np.float32 and out["u"].dtype == np.uint64 and out["u"][1] == 2**40
    assert out["b"].dtype == bool and isinstance(out["s"], np.float64) and out["s"] == 2.5
    assert out["t"][0] == 1 and isinstance(out["t"], tuple) and out["t"][2][0].dtype == np.int16
    assert (out["m"] != value["m"]).nnz == 0
    assert torch.equal(out["tensor"], value["tensor"])


def test_pack_state_refuses_objects():
    with pytest.raises(CMHError, match="cannot save m.f of type function"):
        pack_state({"f": lambda: 0}, "m")
    with pytest.raises(CMHError, match="dtype object"):
        pack_state(np.array(["a", None], dtype=object))


def test_bad_model_files(tmp_path):
    with pytest.raises(CMHError, match="not found"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CMHError, match="cannot read"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CMHError, match="not a cmh model"):
        load_model(tmp_path / "other.pt")
    torch.save({"format": "cmh-model", "version": 99}, tmp_path / "new.pt")
    with pytest.raises(CMHError, match="upgrade cmh"):
        load_model(tmp_path / "new.pt")


def test_unfitted_method_is_refused(tmp_path):
    with pytest.raises(CMHError, match="call fit"):
        save_model(create_method("cvh", bits=16), tmp_path / "m.pt")


def test_model_path_names_runs():
    assert model_path("out/m.pt", 32, 0, 1).as_posix() == "out/m.pt"
    assert model_path("out/m.pt", 32, 1, 4).as_posix() == "out/m-32bits-seed1.pt"


def test_cli_run_save_model(tmp_path):
    from cmh.cli import main

    code = main(
        [
            "run",
            "cvh",
            "--bits",
            "16",
            "--no-save",
            "--save-model",
            str(tmp_path / "cvh.pt"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    loaded = load_model(tmp_path / "cvh.pt")
    assert loaded.method.name == "cvh" and loaded.dataset["name"] == "synthetic"
