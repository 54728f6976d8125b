"""The engine (scelm/_core) stands on its own: no AnnData, no scanpy, nothing of scelm
outside it."""

import ast
from pathlib import Path

CORE = Path(__file__).parents[1] / "scelm" / "_core"
# Third-party packages the engine may use: numerics, and umap-learn's own graph and kernel
# routines (with its pynndescent), plus tqdm for progress bars.
ALLOWED = {"numpy", "scipy", "torch", "umap", "pynndescent", "tqdm", "dask"}
STDLIB = {
    "__future__", "collections", "concurrent", "contextlib", "dataclasses", "functools", "importlib", "itertools", "math", "os", "re",
    "threading", "typing", "warnings",
}


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports; relative imports as '.name'."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or "").split(".")[0])
    return names


def test_core_imports_only_numerics_and_itself():
    siblings = {f".{p.stem}" for p in CORE.glob("*.py")}
    for path in CORE.glob("*.py"):
        outside = _imports(path) - ALLOWED - STDLIB - siblings - {"."}
        assert not outside, f"{path.name} imports {sorted(outside)}"
