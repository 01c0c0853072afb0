"""Data-parallel training (cmh.methods._dist): two gloo ranks on CPU train like one process.

The workers are spawned processes joined by a ``file://`` rendezvous; each test spawns its ranks once.
Tolerances: per-epoch losses within 1e-5 relative (the ranks sum gradients in another order than one
process does; a missing or doubled gradient average moves them by far more), codes equal on at least
99 % of the bits (observed: all), mAP within 0.005.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cmh.errors import CMHError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # one-process runs: 1 thread, as each rank
SEED, BITS, EPOCHS = 3, 16, 2
#: batch 63 on 250 training pairs: slices of 32 and 31 rows, and a last batch of 61
OPTIONS = {"epochs": EPOCHS, "batch_size": 63, "verbose": False}
METHODS = {
    "dcmh": {"txt_hidden": 64},
    "ssah": {"feature_dim": 32, "lab_hidden": 64, "txt_hidden": 64, "disc_hidden": (32, 16)},
}


def _data() -> Any:
    from cmh.data import make_synthetic

    return make_synthetic(n=600, image_dim=32, text_dim=24, n_query=100, n_train=250)


def _train(name: str, on_epoch_end: Any = None, **extra: Any) -> dict[str, Any]:
    """Fit ``name`` on the small data; its losses per epoch and query codes."""
    from cmh.metrics import evaluate
    from cmh.registry import create_method

    data = _data()
    method = create_method(name, bits=BITS, seed=SEED, **OPTIONS, **METHODS[name], **extra)
    method.on_epoch_end = on_epoch_end
    method.fit(data.part("train"))
    q, db = data.part("query"), data.part("database")
    codes = {"image": method.encode_image(q.image), "text": method.encode_text(q.text)}
    db_text = method.encode_text(db.text)
    return {
        "losses": [{k: v for k, v in r.items() if k != "seconds"} for r in method.history],
        "codes": codes,
        "i2t": evaluate(codes["image"], db_text, q.labels, db.labels)["map"],
    }


def _rank_main(rank: int, size: int, init: str, out: str, job: str, extra: dict[str, Any]) -> None:
    """One rank: join the group, run ``job``, write rank 0's result (or error) to ``out``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    result: dict[str, Any] = {}
    if job == "match":
        result = {name: _train(name) for name in METHODS}
        from cmh.data import make_synthetic
        from cmh.registry import create_method

        other = make_synthetic(n=300, image_dim=32, text_dim=24, n_query=50, n_train=100 + rank)
        try:  # ranks that load different training sets
            create_method("dcmh", bits=BITS, **OPTIONS, **METHODS["dcmh"]).fit(other.part("train"))
        except CMHError as exc:
            result["mismatch"] = str(exc)
    elif job == "die":

        def die_after_first_epoch(method: Any, record: dict[str, Any]) -> None:
            if rank == 1 and record["epoch"] == 1:
                os._exit(3)  # a rank that crashes without a word

        try:
            _train("dcmh", on_epoch_end=die_after_first_epoch, **extra)
        except CMHError as exc:
            result = {"error": str(exc)}
    else:  # resume
        result = {"dcmh": _train("dcmh", **extra)}
    if rank == 0:
        torch.save(result, out)
    os._exit(0)  # no teardown handshake: the peer may be gone


def _spawn(tmp_path: Path, job: str, **extra: Any) -> tuple[dict[str, Any], list[int | None]]:
    ctx = multiprocessing.get_context("spawn")
    init = f"file://{tmp_path / f'rdzv-{job}'}"
    out = tmp_path / f"{job}.pt"
    env = {"CMH_DIST_TIMEOUT": "60"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        procs = [ctx.Process(target=_rank_main, args=(r, 2, init, str(out), job, extra)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=240)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    for p in procs:
        if p.is_alive():
            p.kill()
    codes = [p.exitcode for p in procs]
    assert out.is_file(), f"rank 0 wrote no result (exit codes {codes})"
    return torch.load(out, weights_only=False), codes


def _assert_same_training(two: dict[str, Any], one: dict[str, Any]) -> None:
    assert len(two["losses"]) == len(one["losses"]) == EPOCHS
    for r2, r1 in zip(two["losses"], one["losses"], strict=True):
        assert r2.keys() == r1.keys()
        for key in r1:
            assert r2[key] == pytest.approx(r1[key], rel=1e-5, abs=1e-7), (key, r2, r1)
    for modality in ("image", "text"):
        assert np.mean(two["codes"][modality] == one["codes"][modality]) >= 0.99
    assert two["i2t"] == pytest.approx(one["i2t"], abs=0.005)


def test_two_gloo_ranks_train_like_one_process(tmp_path: Path) -> None:
    """SSAH and DCMH, 2 epochs, same seed and global batch: the 2-rank run is the 1-process run."""
    two, codes = _spawn(tmp_path, "match")
    assert codes == [0, 0]
    assert "ranks disagree about the training data" in two.pop("mismatch")
    for name in METHODS:
        _assert_same_training(two[name], _train(name))


def test_a_dead_rank_stops_the_others_and_the_relaunch_resumes(tmp_path: Path) -> None:
    """Rank 1 dies after epoch 1: rank 0 stops with a one-line error; relaunched, the job resumes from
    rank 0's checkpoint and ends where an uninterrupted run ends."""
    ckpt = {"checkpoint_dir": str(tmp_path / "ckpt"), "resume": True}
    died, codes = _spawn(tmp_path, "die", **ckpt)
    assert codes[1] == 3
    msg = died["error"]
    assert "rank 0 of 2" in msg and "relaunch the same command to resume" in msg and "\n" not in msg
    saved = list((tmp_path / "ckpt").glob("dcmh-*.pt"))
    assert len(saved) == 1 and torch.load(saved[0], weights_only=False)["train"]["epoch"] == 1
    resumed, codes = _spawn(tmp_path, "resume", **ckpt)
    assert codes == [0, 0]
    _assert_same_training(resumed["dcmh"], _train("dcmh"))


def test_one_process_needs_no_process_group() -> None:
    from cmh.methods import _dist

    assert _dist.world() == (0, 1) and _dist.is_writer()
    assert _dist.rank0_value("x") == "x"
    assert _dist.init_from_env("cpu") == "cpu"  # no torchrun environment: nothing to join


def test_bad_timeout_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmh.methods import _dist

    monkeypatch.setenv(_dist.TIMEOUT_ENV, "soon")
    with pytest.raises(CMHError, match="CMH_DIST_TIMEOUT='soon' is not a positive number"):
        _dist.timeout_s()


def test_torchrun_cmh_run_writes_one_record_like_one_process(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m cmh run dcmh --device cpu`: rank 0 writes the record (with
    ``ranks: 2``), and its metrics are those of `cmh run` in one process."""
    import json
    import subprocess
    import sys

    from cmh.cli import main
    from cmh.data.loaders import save_npz

    data = save_npz(_data(), tmp_path / "small.npz")
    args = ["run", "dcmh", "--data", str(data), "--bits", "16", "--device", "cpu"]
    args += ["--set", "epochs=2", "--set", "txt_hidden=64", "--set", "batch_size=63"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CMH_DIST_TIMEOUT": "60"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*launch, "-m", "cmh", *args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("training ...") == 1  # rank 1 prints nothing
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    (two,), (one,) = (list((tmp_path / d).rglob("*.json")) for d in ("two", "one"))
    two, one = json.loads(two.read_text()), json.loads(one.read_text())
    assert two["ranks"] == 2 and "ranks" not in one
    for task in ("i2t", "t2i"):
        assert two["tasks"][task]["map"] == pytest.approx(one["tasks"][task]["map"], abs=0.005)
