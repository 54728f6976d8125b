"""Writing an embedding and its Jacobians into AnnData, all keys at once at the end."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .. import _keys
from .._model import StoredModel


def compute_outputs(model: StoredModel, X, target_var_names: pd.Index, *, store_jacobian: bool, device, batch_size: int):
    """Embedding ``(n, d)`` and, if asked and possible, one ``(n, n_vars)`` Jacobian per axis."""
    from .._core.jacobian import iter_batches

    n, d = X.shape[0], model.n_components
    pos = pd.Index(target_var_names).get_indexer(model.genes)
    if store_jacobian and (pos < 0).any():
        logg.warning(
            f"{int((pos < 0).sum())} model genes are not in adata.var_names (e.g. genes only in .raw); "
            "Jacobian layers are not stored: scelm.get.jacobian recomputes them exactly from the model."
        )
        store_jacobian = False
    Y = np.empty((n, d), dtype=np.float32)
    J = [np.zeros((n, len(target_var_names)), dtype=np.float32) for _ in range(d)] if store_jacobian else None
    for b in iter_batches(model.front_end, model.encoder(), X, device=device, batch_size=batch_size, jacobian=store_jacobian):
        Y[b.start : b.stop] = b.embedding.cpu().numpy()
        if store_jacobian:
            jac = b.jacobian.cpu().numpy()
            for k in range(d):
                J[k][b.start : b.stop, pos] = jac[:, k, :]
    return Y, J


def write_outputs(adata: AnnData, key: str, model: StoredModel, Y: np.ndarray, J) -> None:
    """Replace every key of ``key`` at once: embedding, model, Jacobian layers."""
    stale = re.compile(rf"{re.escape(key)}_jacobian_\d+")
    for name in [lay for lay in adata.layers.keys() if stale.fullmatch(lay)]:
        del adata.layers[name]
    adata.obsm[_keys.embedding_key(key)] = Y
    adata.uns[key] = model.to_uns()
    if J is not None:
        for k, layer in enumerate(_keys.jacobian_layers(key, len(J))):
            adata.layers[layer] = J[k]
