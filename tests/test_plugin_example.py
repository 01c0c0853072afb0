"""The example external package (examples/cmh-example-method) registers a method through the ``cmh.methods``
entry point and runs through ``cmh run`` and ``cmh compare`` like a built-in one.

The package must be installed in the test environment (README's test install line:
``pip install -e examples/cmh-example-method``).
"""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from cmh.cli import main
from cmh.registry import get_method_class, list_methods

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _installed() -> bool:
    eps = importlib.metadata.entry_points(group="cmh.methods")
    return any(ep.name == "example-pairs" for ep in eps)


def test_example_package_is_installed_and_registered():
    assert _installed(), "install the example plugin: pip install -e examples/cmh-example-method"
    cls = get_method_class("example-pairs")
    assert cls.__module__ == "cmh_example_method" and cls.kind == "deep"
    assert "example-pairs" in list_methods()


def test_example_method_runs_and_compares(tmp_path, capsys):
    assert _installed(), "install the example plugin: pip install -e examples/cmh-example-method"
    out = tmp_path / "results"
    args = ["run", "example-pairs", "--bits", "16", "--seeds", "0,1", "--out", str(out), "--set", "epochs=3"]
    assert main(args) == 0
    assert main(["run", "cvh", "--bits", "16", "--seeds", "0", "--out", str(out)]) == 0
    (path,) = (out / "synthetic/example-pairs/16").glob("seed1.*.json")  # epochs=3: a settings-tagged name
    rec = json.loads(path.read_text())
    assert rec["method"] == "example-pairs" and rec["kind"] == "deep" and rec["config"]["epochs"] == 3
    capsys.readouterr()
    assert main(["compare", "--results", str(out), "--format", "md", "--metric", "map@50"]) == 0
    table = capsys.readouterr().out
    assert "| example-pairs | 2 |" in table and "| cvh | 1 |" in table and "mAP@50" in table
    # the example learns: better than CVH (unsupervised) on the synthetic set
    assert main(["compare", "--results", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    cells = {(r["method"], r["task"]): r["mean"] for r in rows if not r.get("reported")}
    assert cells["example-pairs", "i2t"] > cells["cvh", "i2t"]
