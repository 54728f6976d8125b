"""Reading Jacobians and contributions back, from layers or recomputed from the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._docs import doc_batch_device, doc_key, doc_params
from .._input import check_adata
from .._model import StoredModel
from ._batches import iter_model_batches


def _over_model_genes(adata, model, key, *, contributions: bool, device, batch_size) -> np.ndarray:
    """``(n_obs, d, n_model_genes)`` Jacobians or contributions, batch by batch."""
    X = model.input_matrix(adata)
    out = np.empty((adata.n_obs, model.n_components, len(model.genes)), dtype=np.float32)
    for b in iter_model_batches(adata, model, key, X, device=device, batch_size=batch_size):
        out[b.start : b.stop] = (b.contributions() if contributions else b.jacobian).cpu().numpy()
    return out


def _scatter_genes(values: np.ndarray, model: StoredModel, adata: AnnData) -> np.ndarray:
    """Place ``(n, d, n_model_genes)`` values on the source matrix's full gene axis."""
    var_names = model.source_var_names(adata)
    out = np.zeros((values.shape[0], values.shape[1], len(var_names)), dtype=np.float32)
    out[:, :, pd.Index(var_names).get_indexer(model.genes)] = values
    return out


@doc_params(doc_key=doc_key, doc_batch_device=doc_batch_device)
def jacobian(adata: AnnData, *, key: str = _keys.DEFAULT_KEY, device: str = "auto", batch_size: int = 4096) -> np.ndarray:
    """Each cell's equivalent linear mapping: the exact Jacobian of the embedding.

    Parameters
    ----------
    adata
        AnnData with a fitted model (or a query passed through :func:`scelm.tl.transform`).
    {doc_key}
    {doc_batch_device}

    Returns
    -------
    float32 array ``(n_obs, n_components, n_genes)`` over the genes of the matrix the model
    reads (``var_names``, or ``raw.var_names`` with ``use_raw``); zero for genes it does not
    read. Read from the Jacobian layers when stored, else recomputed exactly in batches.
    """
    check_adata(adata)
    model = StoredModel.from_adata(adata, key)
    J = _over_model_genes(adata, model, key, contributions=False, device=device, batch_size=batch_size)
    return _scatter_genes(J, model, adata)


@doc_params(doc_key=doc_key, doc_batch_device=doc_batch_device)
def contributions(adata: AnnData, *, key: str = _keys.DEFAULT_KEY, device: str = "auto", batch_size: int = 4096) -> np.ndarray:
    """Per-gene contributions ``J(x) * (x - x_ref)`` to each embedding coordinate.

    They sum over genes to the embedding exactly:
    ``contributions(adata).sum(-1) == adata.obsm['X_elm']`` up to float32 rounding. With the
    default front end ``x_ref = 0``, so a gene a cell does not express contributes zero.
    For bias-free ReLU encoders this equals Integrated Gradients from a zero baseline and
    DeepLIFT (rescale rule), computed exactly in one pass.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    {doc_key}
    {doc_batch_device}

    Returns
    -------
    float32 array ``(n_obs, n_components, n_genes)`` on the same gene axis as
    :func:`scelm.get.jacobian`.
    """
    check_adata(adata)
    model = StoredModel.from_adata(adata, key)
    C = _over_model_genes(adata, model, key, contributions=True, device=device, batch_size=batch_size)
    return _scatter_genes(C, model, adata)
