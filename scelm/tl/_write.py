"""Writing an embedding and its Jacobians into AnnData, all keys at once at the end."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from .. import _keys
from .._model import StoredModel

DTYPES = {True: np.float32, "float32": np.float32, "float16": np.float16}


def resolve_auto(store_jacobian, n_obs: int, n_genes: int, n_components: int):
    """``'auto'``: store float32 layers when the values they hold (``n_genes`` per cell and
    axis) fit ``scelm.settings.jacobian_layers_max_gb``."""
    from .._settings import settings

    if not (isinstance(store_jacobian, str) and store_jacobian == "auto"):
        return store_jacobian
    size_gb = n_obs * n_genes * n_components * 4 / 1e9
    if size_gb <= settings.jacobian_layers_max_gb:
        return True
    logg.info(
        f"    Jacobian layers not stored: they would take {size_gb:.2f} GB, more than "
        f"scelm.settings.jacobian_layers_max_gb = {settings.jacobian_layers_max_gb}. scelm recomputes them "
        "exactly when needed; pass store_jacobian=True, jacobian_genes=[...] or raise the setting to store them."
    )
    return False


def jacobian_storage(genes: np.ndarray, store_jacobian, jacobian_genes) -> tuple[type | None, np.ndarray | None]:
    """``(dtype, model-gene positions to store)``; positions None means every model gene,
    dtype None means no layers (``'auto'`` is taken as float32: the size rule comes later)."""
    if isinstance(store_jacobian, str) and store_jacobian == "auto":
        store_jacobian = True
    if isinstance(store_jacobian, bool) and not store_jacobian:
        if jacobian_genes is not None:
            raise ValueError("jacobian_genes chooses which Jacobian layers to store; it needs store_jacobian.")
        return None, None
    if not isinstance(store_jacobian, (bool, str)) or store_jacobian not in DTYPES:
        raise ValueError(f"store_jacobian must be 'auto', True, False, 'float32' or 'float16', got {store_jacobian!r}.")
    if jacobian_genes is None:
        return DTYPES[store_jacobian], None
    names = pd.Index([jacobian_genes] if isinstance(jacobian_genes, str) else [str(g) for g in jacobian_genes])
    pos = pd.Index(genes).get_indexer(names)
    if (pos < 0).any():
        raise KeyError(f"jacobian_genes names genes the model does not read: {names[pos < 0][:10].tolist()}.")
    return DTYPES[store_jacobian], pos


def compute_outputs(model: StoredModel, X, target_var_names: pd.Index, *, store_jacobian, jacobian_genes, device, batch_size: int):
    """Consensus embedding ``(n, d)``, the Jacobian layers to store (one ``(n, n_vars)``
    matrix per axis, or None) and the stored gene names when only some genes are stored
    (else None). Layers of every model gene are dense; layers of ``jacobian_genes`` are
    sparse (CSC), holding only those columns."""
    from .._core.jacobian import embed, iter_batches

    n_stored = len(model.genes if jacobian_genes is None else np.atleast_1d(jacobian_genes))
    n, d = X.shape[0], model.n_components
    store_jacobian = resolve_auto(store_jacobian, n, n_stored if jacobian_genes is not None else len(target_var_names), d)
    dtype, subset = jacobian_storage(model.genes, store_jacobian, jacobian_genes)
    genes = model.genes if subset is None else model.genes[subset]
    pos = pd.Index(target_var_names).get_indexer(genes)
    if dtype is not None and (pos < 0).any():
        logg.warning(
            f"{int((pos < 0).sum())} model genes are not in adata.var_names (e.g. genes only in .raw); "
            "Jacobian layers are not stored: scelm.get.jacobian recomputes them exactly from the model."
        )
        dtype = None
    if dtype is None:  # the embedding only: Dask tasks when X reads a Dask array
        return embed(model.model, X, device=device, batch_size=batch_size), None, None
    Y = np.empty((n, d), dtype=np.float32)
    J = [np.zeros((n, len(target_var_names) if subset is None else len(genes)), dtype=dtype) for _ in range(d)]
    for b in iter_batches(model.model, X, device=device, batch_size=batch_size):
        Y[b.start : b.stop] = b.embedding.cpu().numpy()
        jac = (b.jacobian if subset is None else b.jacobian[:, :, subset]).cpu().numpy()
        for k in range(d):
            if subset is None:
                J[k][b.start : b.stop, pos] = jac[:, k, :]
            else:
                J[k][b.start : b.stop] = jac[:, k, :]
    if subset is not None:  # only the chosen genes' columns are held
        J = [_columns_as_csc(values, pos, len(target_var_names)) for values in J]
    return Y, J, (genes if subset is not None else None)


def _columns_as_csc(values: np.ndarray, columns: np.ndarray, n_cols: int) -> sparse.csc_matrix:
    """An ``(n, n_cols)`` CSC matrix whose columns ``columns`` are the dense ``values``
    ``(n, len(columns))`` and the rest empty."""
    n = values.shape[0]
    order = np.argsort(columns)
    counts = np.zeros(n_cols + 1, dtype=np.int64)
    counts[columns[order] + 1] = n
    return sparse.csc_matrix(
        (values[:, order].T.ravel(), np.tile(np.arange(n), len(columns)), np.cumsum(counts)), shape=(n, n_cols)
    )


def write_outputs(adata: AnnData, key: str, model: StoredModel, Y: np.ndarray, J, stored_genes=None) -> None:
    """Replace every key of ``key`` at once: embedding, model, Jacobian layers (and, when
    only some genes' Jacobians are stored, their names in ``uns[key]['jacobian_genes']``)."""
    for name in [lay for lay in adata.layers.keys() if _keys.is_jacobian_layer(key, lay)]:
        del adata.layers[name]
    adata.obsm[_keys.embedding_key(key)] = Y
    adata.uns[key] = model.to_uns()
    if stored_genes is not None:
        adata.uns[key][_keys.JACOBIAN_GENES] = np.asarray(stored_genes, dtype=object)
    if J is not None:
        for k, layer in enumerate(_keys.jacobian_layers(key, len(J))):
            adata.layers[layer] = J[k]


def log_written(start, key_added: str, J) -> None:
    """scanpy's closing log line: what was added where."""
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"added\n    {_keys.embedding_key(key_added)!r}, embedding (adata.obsm)\n    {key_added!r}, model (adata.uns)"
            + (f"\n    {_keys.jacobian_layer(key_added, 0)[:-1] + '*'!r}, Jacobians (adata.layers)" if J is not None else "")
        ),
    )
