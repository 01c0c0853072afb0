"""The shared deep training loop: resume == uninterrupted, checkpoints, state, NaN guard, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_methods_ssah import SMALL

import cmh.methods.ssah as ssah_module
from cmh.errors import CMHError
from cmh.registry import create_method, get_method_class, list_methods
from cmh.runner import supports_checkpoints

DCMH_SMALL = {"txt_hidden": 256, "verbose": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _codes(m, data):
    q = data.part("query")
    return m.encode_image(q.image), m.encode_text(q.text)


#: every registered method with checkpoints (the deep ones, plugins included), at its unit-test settings
CHECKPOINTED = [n for n in list_methods() if supports_checkpoints(n)]


@pytest.mark.parametrize("name", CHECKPOINTED)
def test_killed_run_resumes_to_the_same_codes(synthetic_small, tmp_path, monkeypatch, name):
    train = synthetic_small.part("train")
    cfg = {**get_method_class(name).test_config, "verbose": False, "epochs": 3}
    full = create_method(name, bits=16, seed=0, **cfg).fit(train)

    # a run with checkpoints that is "killed" during its second epoch
    killed = create_method(name, bits=16, seed=0, checkpoint_dir=str(tmp_path), **cfg)
    original = type(killed)._train_epoch

    def dies_in_epoch_2(self, epoch, ctx):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, ctx)

    monkeypatch.setattr(type(killed), "_train_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(train)
    monkeypatch.setattr(type(killed), "_train_epoch", original)
    assert len(list(tmp_path.glob(f"{name}-16bits-seed0-*.pt"))) == 1

    resumed = create_method(name, bits=16, seed=0, checkpoint_dir=str(tmp_path), resume=True, **cfg)
    resumed.fit(train)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(_codes(full, synthetic_small), _codes(resumed, synthetic_small), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_can_extend_epochs(synthetic_small, tmp_path):
    train = synthetic_small.part("train")
    cfg = {**SMALL, "variant": "official", "checkpoint_dir": str(tmp_path)}
    create_method("ssah", bits=16, epochs=1, **cfg).fit(train)
    longer = create_method("ssah", bits=16, epochs=2, resume=True, **cfg).fit(train)
    straight = create_method("ssah", bits=16, epochs=2, **{**SMALL, "variant": "official"}).fit(train)
    np.testing.assert_array_equal(_codes(longer, synthetic_small)[0], _codes(straight, synthetic_small)[0])


def test_resume_refuses_changed_options(synthetic_small, tmp_path):
    train = synthetic_small.part("train")
    create_method("ssah", bits=16, epochs=1, checkpoint_dir=str(tmp_path), **SMALL).fit(train)
    other = create_method(
        "ssah", bits=16, epochs=1, checkpoint_dir=str(tmp_path), resume=True, **{**SMALL, "delta": 0.5}
    )
    with pytest.raises(CMHError, match="delta"):
        other.fit(train)


def test_state_dict_round_trip_and_mismatch(synthetic_small, tmp_path):
    train = synthetic_small.part("train")
    m = create_method("ssah", bits=16, epochs=1, **SMALL).fit(train)
    path = tmp_path / "model.pt"
    m.save(path)
    again = create_method("ssah", bits=16, **SMALL).load(path)
    for a, b in zip(_codes(m, synthetic_small), _codes(again, synthetic_small), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CMHError, match="with 16 bits, not ssah with 32 bits"):
        create_method("ssah", bits=32, **SMALL).load(path)
    with pytest.raises(CMHError, match="holds a ssah model"):
        create_method("dcmh", bits=16).load_state_dict(torch.load(path, weights_only=True))
    with pytest.raises(CMHError, match="not found"):
        create_method("ssah", bits=16).load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CMHError, match="cannot read"):
        create_method("ssah", bits=16).load(tmp_path / "junk.pt")


def test_checkpoint_of_other_data_is_kept_apart(synthetic_small, tmp_path):
    train = synthetic_small.part("train")
    create_method("dcmh", bits=16, epochs=1, checkpoint_dir=str(tmp_path), **DCMH_SMALL).fit(train)
    create_method("dcmh", bits=16, epochs=1, checkpoint_dir=str(tmp_path), **DCMH_SMALL).fit(
        synthetic_small.part("query")
    )
    assert len(list(tmp_path.glob("dcmh-16bits-seed0-*.pt"))) == 2


def test_nan_loss_is_a_clean_error(synthetic_small, monkeypatch):
    monkeypatch.setattr(ssah_module, "pairwise_nll", lambda theta, s: (theta * float("nan")).sum())
    m = create_method("ssah", bits=16, epochs=1, **SMALL)
    with pytest.raises(CMHError, match=r"loss 'lab' became NaN/inf.*lower the learning rate"):
        m.fit(synthetic_small.part("train"))


def test_quiet_when_not_a_terminal(synthetic_small, capsys):
    create_method("dcmh", bits=16, epochs=1, txt_hidden=64, verbose=True).fit(synthetic_small.part("train"))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_bad_options():
    with pytest.raises(CMHError, match="val_fraction"):
        create_method("ssah", bits=16, val_fraction=0.9)
    with pytest.raises(CMHError, match="epochs"):
        create_method("dcmh", bits=16, epochs=0)


def test_validation_early_stopping(synthetic_small, monkeypatch):
    """The loop keeps the best epoch and stops after ``patience`` epochs without gain (scores are faked so
    that the test checks the loop, not the metric)."""
    import sys
    import types

    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1] * 2)  # two calls (I->T, T->I) per epoch
    fake = types.ModuleType("cmh.metrics")
    fake.evaluate = lambda q, d, ql, dl, **kw: {"map": next(scores)}
    monkeypatch.setitem(sys.modules, "cmh.metrics", fake)
    seen = []
    m = create_method("dcmh", bits=16, epochs=6, val_fraction=0.2, patience=2, **DCMH_SMALL)
    m.on_epoch_end = lambda method, record: seen.append(
        method.encode_image(synthetic_small.part("query").image)
    )
    m.fit(synthetic_small.part("train"))
    assert [h["epoch"] for h in m.history] == [1, 2, 3]  # best at 1, then 2 epochs without gain
    assert m.best_epoch == 1 and all("val_map" in h for h in m.history)
    np.testing.assert_array_equal(m.encode_image(synthetic_small.part("query").image), seen[0])


def test_bench_deep_smoke(tmp_path, monkeypatch):
    """``cmh bench deep`` runs end to end at a tiny shape (scores faked: this checks the plumbing), and its
    timings add up: every epoch is slowed by 50 ms on purpose, and must show it."""
    import json
    import math
    import sys
    import time
    import types

    from cmh.cli import main
    from cmh.methods.dcmh import DCMH
    from cmh.methods.ssah import SSAH

    fake = types.ModuleType("cmh.metrics")
    fake.evaluate = lambda q, d, ql, dl, **kw: {"map": float((q[:, 0] == 1).mean())}
    monkeypatch.setitem(sys.modules, "cmh.metrics", fake)
    for cls in (SSAH, DCMH):

        def slowed(self, epoch, ctx, _train=cls._train_epoch):
            time.sleep(0.05)
            return _train(self, epoch, ctx)

        monkeypatch.setattr(cls, "_train_epoch", slowed)
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "deep",
        "--n",
        "300",
        "--n-query",
        "50",
        "--image-dim",
        "32",
        "--text-dim",
        "20",
        "--classes",
        "4",
        "--bits",
        "16",
        "--ssah-epochs",
        "2",
        "--dcmh-epochs",
        "1",
        "--threads",
        "1",
        "--ssah-set",
        "disc_hidden=16,8",
        "--ssah-set",
        "lab_hidden=64",
        "--ssah-set",
        "txt_hidden=64",
        "--dcmh-set",
        "txt_hidden=64",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["runs"]) == {"ssah", "dcmh"}
    for name, epochs in (("ssah", 2), ("dcmh", 1)):
        r = data["runs"][name]
        assert r["epochs"] == epochs and [c["epoch"] for c in r["curve"]] == list(range(1, epochs + 1))
        seconds = [c["seconds"] for c in r["curve"]]
        assert all(math.isfinite(x) and x >= 0.05 for x in seconds), seconds  # the 50 ms delay is timed
        assert r["train_s"] == pytest.approx(sum(seconds), abs=0.011)
        assert r["s_per_epoch"] == pytest.approx(r["train_s"] / epochs, abs=0.011)
        assert r["train_s"] <= r["wall_s"] + 0.011  # the wall time also covers set-up and evaluation
        for c in r["curve"]:
            assert c["map"] == pytest.approx((c["i2t"] + c["t2i"]) / 2)
        assert r["final_map"] == r["curve"][-1]["map"]
