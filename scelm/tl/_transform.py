"""``scelm.tl.transform``: embed and explain new cells with a fitted model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from anndata import AnnData
from scanpy import logging as logg

from .. import _checks, _keys
from .._core.blocks import BLOCK_ROWS
from .._docs import doc_batch_device, doc_copy, doc_params
from .._input import check_adata
from .._model import StoredModel
from ._write import compute_outputs, write_outputs


@doc_params(doc_batch_device=doc_batch_device, doc_copy=doc_copy)
def transform(
    adata: AnnData,
    adata_ref: AnnData,
    *,
    elm_key: str = _keys.DEFAULT_KEY,
    key_added: str | None = None,
    store_jacobian: bool | Literal["auto", "float32", "float16"] = "auto",
    jacobian_genes: Sequence[str] | None = None,
    use_raw: bool | None = None,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
    copy: bool = False,
) -> AnnData | None:
    """Embed new cells with the model fitted on ``adata_ref`` (like :func:`scanpy.tl.ingest`).

    Genes are matched by name, so the query may order its genes differently or carry extra
    ones; they are read from the same source (``.X``, the layer or ``.raw``) the model was
    fitted on. The training cells themselves get the same embedding to float32 precision.

    Parameters
    ----------
    adata
        Query cells.
    adata_ref
        AnnData holding the model in ``uns[elm_key]``, e.g. read back from .h5ad.
    elm_key
        ``key_added`` of the :func:`scelm.tl.parametric_umap` run in ``adata_ref``.
    key_added
        Prefix of the keys written to ``adata``; defaults to ``elm_key``.
    store_jacobian, jacobian_genes
        Jacobian layers for the query cells, as in :func:`scelm.tl.parametric_umap`.
    use_raw
        ``None``: read the source the model was fitted on. A model fitted on ``.raw`` raises
        on a query without ``.raw``; pass ``use_raw=False`` when the query's ``.X`` holds the
        same log-normalised, unscaled expression (e.g. ``adata.raw.to_adata()``). The copy
        of the model written to the query then reads ``.X``.
    {doc_batch_device}
    {doc_copy}

    Returns
    -------
    ``None`` or a copy. Sets ``obsm['X_{{key_added}}']``, ``uns['{{key_added}}']`` (a copy of
    the model, so the query can be explained on its own) and, if asked, the Jacobian layers.
    """
    from .._core.device import resolve_device

    check_adata(adata)
    check_adata(adata_ref)
    key_added = elm_key if key_added is None else key_added
    model = StoredModel.from_adata(adata_ref, elm_key)
    dev = resolve_device(device)
    start = logg.info(f"embedding {adata.n_obs} cells with the model in uns[{elm_key!r}]")
    use_raw = _checks.flag("use_raw", use_raw, none_ok=True)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    X = model.input_matrix(adata, use_raw)
    if use_raw is not None:
        model.params["use_raw"] = use_raw  # the query's copy reads where it was told to
    target = adata.copy() if copy else adata
    Y, J, stored_genes = compute_outputs(
        model, X, target.var_names, store_jacobian=store_jacobian, jacobian_genes=jacobian_genes, device=dev,
        batch_size=chunk_size,
    )
    write_outputs(target, key_added, model, Y, J, stored_genes)
    logg.info("    finished", time=start)
    return target if copy else None
