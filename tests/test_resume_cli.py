"""`cmh run` resumes a killed deep run by default: kill -9 after a checkpoint, run again, same record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmh.data import make_synthetic
from cmh.data.loaders import save_npz

SETTINGS = ["lab_hidden=256", "txt_hidden=256", "feature_dim=128", "disc_hidden=64,32", "epochs=6"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(make_synthetic(n=700, image_dim=64, text_dim=50, n_query=100, n_train=400), path)
    return path


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    run = ["run", "ssah", "--data", str(data), "--bits", "16", "--out", str(out)]
    return [sys.executable, "-m", "cmh", *run, *sets, *extra]


def _env() -> dict[str, str]:
    # one thread: CPU training is bitwise reproducible for a fixed thread count
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)


def _numbers(path: Path) -> dict:
    rec = json.loads(path.read_text())
    return {k: rec[k] for k in ("tasks", "config", "dataset", "method", "bits", "seed", "warnings")}


def test_kill_9_then_same_command_gives_the_identical_record(tiny, tmp_path):
    straight = tmp_path / "straight"
    done = _run(_command(tiny, straight))
    assert done.returncode == 0, done.stderr
    expected = next(straight.rglob("seed0*.json"))
    assert not list(straight.rglob("*.pt")), "checkpoints are removed once the record is written"

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(tiny, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list(out.rglob(".checkpoints/*/*.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoints = list(out.rglob(".checkpoints/*/*.pt"))
    assert checkpoints, "the run wrote no checkpoint before it was killed"
    assert not list(out.rglob("seed0*.json")), "killed before its record: the test needs a mid-run kill"
    # a checkpoint write killed half-way leaves a temp file; the next run cleans it
    stale = checkpoints[0].parent / f".{checkpoints[0].name}.abc.tmp"
    stale.write_bytes(b"half")

    resumed = _run(_command(tiny, out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    got = next(out.rglob("seed0*.json"))
    assert got.name == expected.name
    assert _numbers(got) == _numbers(expected)
    assert not stale.exists() and not list(out.rglob("*.pt"))


def test_keep_checkpoints_and_fewer_epochs_error(tiny, tmp_path):
    cmd = _command(tiny, tmp_path, "--keep-checkpoints")
    cmd[cmd.index("epochs=6")] = "epochs=2"
    assert _run(cmd).returncode == 0
    kept = list(tmp_path.rglob(".checkpoints/*/*.pt"))
    assert len(kept) == 1

    # the API: a checkpoint of 2 epochs cannot resume a 1-epoch run (its record would say 1 beside 2)
    from cmh.data.catalog import load_dataset
    from cmh.errors import CMHError
    from cmh.registry import create_method

    train = load_dataset(None, tiny).part("train")
    sets = dict(s.split("=", 1) for s in SETTINGS)
    sets.update(epochs="1", checkpoint_dir=str(kept[0].parent), resume="true", verbose="false")
    with pytest.raises(CMHError, match="holds 2 trained epochs, more than epochs=1"):
        create_method("ssah", bits=16, **sets).fit(train)
