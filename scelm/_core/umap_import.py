"""Importing umap-learn without its notebook warning."""

from __future__ import annotations

import warnings
from contextlib import contextmanager


@contextmanager
def quiet_umap_import():
    """umap-learn imports ``tqdm.auto``, which warns "IProgress not found" (with a local
    path) in a notebook without ipywidgets; scelm's own bar falls back to text there, so
    the warning says nothing to act on. Wrap the first import of ``umap`` in this."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield
