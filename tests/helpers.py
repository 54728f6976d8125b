"""Shared test settings and checks."""

import numpy as np

# Tiny network, few epochs: tests check properties, not embedding quality.
FAST = dict(n_epochs=30, hidden=(32, 32), n_models=1)


def _array(x) -> np.ndarray:
    return np.asarray(x.detach() if hasattr(x, "detach") else x)


def rel_err(a, b) -> float:
    """Max absolute difference relative to the largest magnitude of ``b`` (arrays or tensors)."""
    a, b = _array(a), _array(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def logged_warnings(call) -> str:
    """What ``call`` logs at warning level through scanpy's logger."""
    import io
    import logging

    import scanpy as sc

    stream, verbosity = io.StringIO(), sc.settings.verbosity
    handler = logging.StreamHandler(stream)
    sc.settings._root_logger.addHandler(handler)  # scanpy logs through its own root logger
    sc.settings.verbosity = 1  # the suite runs silent; warnings show from 1 on
    try:
        call()
    finally:
        sc.settings.verbosity = verbosity
        sc.settings._root_logger.removeHandler(handler)
    return stream.getvalue()


def model_reference(adata, var_names, key: str = "elm") -> np.ndarray:
    """The fitted model's reference ``x_ref`` over ``var_names`` (zero for genes it does not read)."""
    from scelm._model import StoredModel

    model = StoredModel.from_adata(adata, key)
    ref = np.zeros(len(var_names))
    ref[var_names.get_indexer(model.genes)] = model.model.front_end.reference
    return ref


def scaled_about_reference(adata, factor: float, key: str = "elm"):
    """``.raw`` expression moved to ``x_ref + factor * (x - x_ref)``: a positively homogeneous
    model embeds it at ``factor`` times the cells' coordinates."""
    import anndata as ad

    X = adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else np.asarray(adata.raw.X)
    ref = model_reference(adata, adata.raw.var_names, key)
    return ad.AnnData(ref + factor * (X - ref), var=adata.raw.var)
