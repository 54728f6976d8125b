"""The code passes the project's ruff rules (pyproject.toml), as pre-commit checks them."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


def test_ruff_is_clean():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    root = Path(__file__).parents[1]
    cmd = [sys.executable, "-m", "ruff", "check", "scelm", "tests", "benchmarks", "notebooks"]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]
