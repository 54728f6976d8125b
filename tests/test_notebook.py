"""The tutorial runs from a fresh kernel without errors."""

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_tutorial_executes():
    path = Path(__file__).parents[1] / "notebooks" / "execute.py"
    spec = importlib.util.spec_from_file_location("execute_notebook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.execute(save=False)
