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


def _code_lines(node, source: list[str]) -> int:
    """Lines of a function that hold code: not blank, not comments, not its docstring."""
    import ast

    body = node.body
    skip = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    lines = range(node.lineno, node.end_lineno + 1)
    return sum(1 for i in lines if i not in skip and source[i - 1].strip() and not source[i - 1].strip().startswith("#"))


def test_no_function_is_longer_than_60_code_lines():
    import ast

    root = Path(__file__).parents[1] / "scelm"
    long = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, text.splitlines())
                if n > 60:
                    long.append(f"{path.relative_to(root)}:{node.name} ({n})")
    assert not long, long


def test_pre_commit_pins_the_ruff_of_the_test_extra():
    import re

    import tomllib

    root = Path(__file__).parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (pin,) = [re.fullmatch(r"ruff==(.+)", d).group(1) for d in extra if d.startswith("ruff")]
    config = (root / ".pre-commit-config.yaml").read_text()
    assert re.search(r"ruff-pre-commit\s+rev: v(\S+)", config).group(1) == pin
