"""Lint and format as part of the suite, so CI fails on them (ruff config in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["cmh", "tests", "benchmarks"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["ruff-check", "ruff-format"])
def test_ruff_clean(command: list[str]):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, *command, *SOURCES], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, f"run `ruff {' '.join(command)} .` to fix:\n" + out.stdout + out.stderr
