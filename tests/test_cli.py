"""The command line as a user meets it: the run line, records, external codes, and bad input (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cmh.registry as registry
from cmh import HashMethod, sign_codes
from cmh.cli import main
from cmh.data import to_dense


class _Projection(HashMethod):
    """Test-only method: seeded random projections of centred features (no learning, chance-level-ish)."""

    supervised = False

    def fit(self, train):
        rng = self.rng()
        self.mi, self.mt = train.image.mean(0), to_dense(train.text).mean(0)
        self.wi = rng.standard_normal((train.image.shape[1], self.bits))
        self.wt = rng.standard_normal((train.text.shape[1], self.bits))
        return self

    def encode_image(self, image):
        return sign_codes((image - self.mi) @ self.wi)

    def encode_text(self, text):
        return sign_codes((to_dense(text) - self.mt) @ self.wt)


class _Unified(_Projection):
    """Test-only method with unified codes: the sign of the sum of both views' projections."""

    def encode_pair(self, image, text):
        return sign_codes((image - self.mi) @ self.wi + (to_dense(text) - self.mt) @ self.wt)


class _Broken(_Projection):
    """Test-only method returning 0/1 codes (a plugin bug the harness must catch)."""

    def encode_text(self, text):
        return (super().encode_text(text) > 0).astype(np.int8)


@pytest.fixture(autouse=True)
def test_methods():
    registry.METHODS.register("test-proj", _Projection, force=True)
    registry.METHODS.register("test-broken", _Broken, force=True)
    registry.METHODS.register("test-unified", _Unified, force=True)
    yield
    registry.METHODS._items.pop("test-unified", None)
    registry.METHODS._items.pop("test-proj", None)
    registry.METHODS._items.pop("test-broken", None)


def test_run_writes_one_record_per_bits_and_seed(tmp_path, capsys):
    import math
    import time

    out = tmp_path / "results"
    t0 = time.perf_counter()
    assert main(["run", "test-proj", "--bits", "8,16", "--seeds", "0,1", "--out", str(out)]) == 0
    wall = time.perf_counter() - t0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == [f"synthetic/test-proj/{b}/seed{s}.json" for b in (16, 8) for s in (0, 1)]
    rec = json.loads((out / "synthetic/test-proj/16/seed1.json").read_text())
    assert rec["bits"] == 16 and rec["seed"] == 1 and rec["dataset"]["protocol"] == "random"
    for task in ("i2t", "t2i"):
        ap = rec["tasks"][task]["ap_per_query"]
        assert len(ap) == rec["dataset"]["sizes"]["query"]
        assert rec["tasks"][task]["map"] == pytest.approx(sum(ap) / len(ap), abs=1e-12)  # mAP = mean AP
    timings = rec["timings"]
    assert {"fit_s", "encode_s", "evaluate_s"} <= set(timings) and rec["versions"]["torch"]
    assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in timings.values()), timings
    assert sum(timings.values()) <= wall  # the parts of one run fit in the whole command's time
    printed = capsys.readouterr().out
    assert "I→T mAP" in printed and "mean of 2" in printed


def test_unified_database_codes_get_their_own_record_and_match_encode_pair(tmp_path, capsys):
    from cmh.data import make_synthetic
    from cmh.metrics.reference import reference_map
    from cmh.registry import create_method

    out = tmp_path / "results"
    assert main(["run", "test-unified", "--bits", "16", "--out", str(out)]) == 0
    assert main(["run", "test-unified", "--bits", "16", "--out", str(out), "--database", "unified"]) == 0
    per_view = json.loads((out / "synthetic/test-unified/16/seed0.json").read_text())
    unified = json.loads((out / "synthetic/test-unified/16/seed0.unified.json").read_text())
    assert "database_codes" not in per_view["dataset"] and unified["dataset"]["database_codes"] == "unified"
    # the unified record searches encode_pair codes of the database in both tasks
    ds = make_synthetic()
    m = create_method("test-unified", bits=16, seed=0).fit(ds.part("train"))
    q, db = ds.part("query"), ds.part("database")
    codes = m.encode_pair(db.image, db.text)
    want_t2i = reference_map(m.encode_text(q.text), codes, q.labels, db.labels)
    assert unified["tasks"]["t2i"]["map"] == pytest.approx(want_t2i, abs=1e-9)
    assert unified["tasks"]["t2i"]["map"] != pytest.approx(per_view["tasks"]["t2i"]["map"], abs=1e-6)
    # never averaged together: compare shows per-view by default and names the unified records
    capsys.readouterr()
    assert main(["compare", "--results", str(out), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"]["database_codes"] == "per-view"
    assert all(r["n"] == 1 and r["records"][0].endswith("seed0.json") for r in doc["rows"])
    assert any("--database unified" in n for n in doc["notes"])
    assert main(["compare", "--results", str(out), "--format", "md", "--database", "unified"]) == 0
    assert "unified database codes" in capsys.readouterr().out


def test_existing_record_is_kept_unless_overwrite(tmp_path, capsys):
    args = ["run", "test-proj", "--bits", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    path = next(tmp_path.rglob("*.json"))
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 0, "marker": 1'))
    assert main(args) == 0 and "marker" in path.read_text()
    assert main([*args, "--overwrite"]) == 0 and "marker" not in path.read_text()


def test_eval_scores_external_codes(tmp_path, capsys):
    assert main(["run", "test-proj", "--bits", "16", "--out", str(tmp_path), "--save-codes"]) == 0
    codes = next(tmp_path.rglob("*.codes.npz"))
    rec = json.loads(next(tmp_path.rglob("seed0.json")).read_text())
    out = tmp_path / "eval.json"
    assert main(["eval", "--codes", str(codes), "--out", str(out)]) == 0
    scored = json.loads(out.read_text())["tasks"]
    for task in ("i2t", "t2i"):
        assert scored[task]["map"] == pytest.approx(rec["tasks"][task]["map"], abs=1e-12)
    # 0/1 codes need --zero-one, and then give the same numbers
    data = dict(np.load(codes))
    for key in ("query_image", "query_text", "database_image", "database_text"):
        data[key] = (data[key] > 0).astype(np.uint8)
    zo = tmp_path / "zero_one.npz"
    np.savez(zo, **data)
    assert main(["eval", "--codes", str(zo)]) == 2
    assert "pass --zero-one" in capsys.readouterr().err
    assert main(["eval", "--codes", str(zo), "--zero-one", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tasks"]["i2t"]["map"] == pytest.approx(rec["tasks"]["i2t"]["map"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-method"], "unknown method 'no-such-method'"),
        (["run", "test-proj", "--bits", "4"], "bits must be an integer from 8 to 256"),
        (["run", "test-proj", "--bits", "300"], "bits must be an integer from 8 to 256"),
        (["run", "test-proj", "--set", "epochs=3"], "unknown option 'epochs'"),
        (["run", "test-proj", "--dataset", "synthtic"], "did you mean 'synthetic'"),
        (["run", "test-proj", "--config", "/nonexistent/cfg.yaml"], "not found"),
        (["run", "test-broken", "--bits", "8"], "codes outside {-1, +1}"),
        (["run", "test-proj", "--database", "unified"], "test-proj has no unified database codes"),
        (["eval", "--codes", "/nonexistent/codes.npz"], "not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_record(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_debug_shows_traceback(tmp_path):
    from cmh.errors import CMHError

    with pytest.raises(CMHError):
        main(["--debug", "run", "no-such-method", "--out", str(tmp_path)])


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "cmh", "list", "methods"], capture_output=True, text=True, check=True
    )
    assert "registered methods" in out.stdout


def test_list_methods_names_capabilities():
    from cmh.cli.listing import capabilities
    from cmh.registry import get_method_class

    assert capabilities(get_method_class("ssah")) == ["pixels"]
    assert capabilities(get_method_class("seph-km")) == ["unified"]
    assert capabilities(get_method_class("cvh")) == []
