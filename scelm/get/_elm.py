"""Reading Jacobians and contributions back, from layers or recomputed from the model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _checks, _keys
from .._core.blocks import BLOCK_ROWS
from .._docs import doc_batch_device, doc_elm_key, doc_params
from .._input import check_adata
from .._model import StoredModel
from ._lazy import fill, lazy_values

doc_genes = """\
genes
    Genes to return, in this order; ``None`` returns every gene of the matrix the model
    reads (``var_names``, or ``raw.var_names`` when it was fitted on ``.raw``). Without
    ``lazy``, an array larger than ``scelm.settings.dense_max_gb`` (2 GB) is refused with
    a message: pass ``genes=`` or ``lazy=True``."""


def _gene_axis(adata: AnnData, model: StoredModel, genes) -> tuple[pd.Index, np.ndarray]:
    """Output gene names and, for each, its position among the model's genes (-1: not read)."""
    source = model.source_var_names(adata)
    if genes is None:
        names = pd.Index(source)
    else:
        names = pd.Index([genes] if isinstance(genes, str) else list(genes))
        if unknown := [g for g in names if g not in source]:
            raise KeyError(f"genes not found in the model's gene axis (var_names or raw.var_names): {unknown[:10]}.")
    return names, pd.Index(model.genes).get_indexer(names)


def _stream(adata, elm_key, genes, *, contributions: bool, lazy: bool, device, batch_size):
    from .._core.device import resolve_device

    check_adata(adata)
    batch_size = _checks.positive_int("chunk_size", batch_size)
    model = StoredModel.from_adata(adata, elm_key)
    names, pos = _gene_axis(adata, model, genes)
    X = model.input_matrix(adata)
    if lazy:
        return lazy_values(model, X, pos, contributions=contributions, device=resolve_device(device), batch_size=batch_size)
    from .._settings import settings

    size_gb = adata.n_obs * model.n_components * len(names) * 4 / 1e9
    if size_gb > settings.dense_max_gb:
        raise ValueError(
            f"{adata.n_obs} cells x {model.n_components} axes x {len(names)} genes take {size_gb:.1f} GB, more than "
            f"scelm.settings.dense_max_gb = {settings.dense_max_gb}: pass genes=[...] (the model reads {len(model.genes)}), "
            "or lazy=True for a Dask array computed block by block, or raise the setting."
        )
    out = np.zeros((adata.n_obs, model.n_components, len(names)), dtype=np.float32)
    batches = model.iter_batches(adata, elm_key, X, device=device, batch_size=batch_size)
    return fill(out, batches, pos, contributions=contributions)


@doc_params(doc_elm_key=doc_elm_key, doc_batch_device=doc_batch_device, doc_genes=doc_genes)
def jacobian(
    adata: AnnData,
    *,
    elm_key: str = _keys.DEFAULT_KEY,
    genes: str | Sequence[str] | None = None,
    lazy: bool = False,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
):
    """Each cell's equivalent linear mapping: the exact Jacobian of the embedding.

    Parameters
    ----------
    adata
        AnnData with a fitted model (or a query passed through :func:`scelm.tl.transform`).
    {doc_elm_key}
    {doc_genes}
    {doc_batch_device}

    Returns
    -------
    float32 array ``(n_obs, n_components, n_genes)`` (a Dask array if ``lazy``), zero for
    genes the model does not read. Read from the Jacobian layers when stored, else
    recomputed exactly in batches.
    """
    return _stream(adata, elm_key, genes, contributions=False, lazy=lazy, device=device, batch_size=chunk_size)


@doc_params(doc_elm_key=doc_elm_key, doc_batch_device=doc_batch_device, doc_genes=doc_genes)
def contributions(
    adata: AnnData,
    *,
    elm_key: str = _keys.DEFAULT_KEY,
    genes: str | Sequence[str] | None = None,
    lazy: bool = False,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
):
    """Per-gene contributions ``J(x) * (x - x_ref)`` to each embedding coordinate.

    Over all genes they sum to the embedding exactly:
    ``contributions(adata).sum(-1) == adata.obsm['X_elm']`` up to float32 rounding. The
    reference ``x_ref`` is the mean training cell by default (``center=True``): a gene
    contributes what its deviation from its mean moves the cell; with ``center=False``
    ``x_ref = 0`` and a gene a cell does not express contributes zero. For bias-free ReLU
    encoders this equals Integrated Gradients and DeepLIFT (rescale rule) from the
    baseline ``x_ref``, computed exactly in one pass.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    {doc_elm_key}
    {doc_genes}
    {doc_batch_device}

    Returns
    -------
    float32 array ``(n_obs, n_components, n_genes)`` (a Dask array if ``lazy``).
    """
    return _stream(adata, elm_key, genes, contributions=True, lazy=lazy, device=device, batch_size=chunk_size)
