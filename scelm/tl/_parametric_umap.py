"""``scelm.tl.parametric_umap``: fit an interpretable UMAP encoder on AnnData."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData

from .. import _keys
from .._core.blocks import BLOCK_ROWS
from .._core.options import Activation, Init, KnnMethod, Precision
from .._docs import doc_batch_device, doc_copy, doc_encoder, doc_input, doc_params, doc_training
from .._input import check_adata
from ._fit import fit_and_write
from ._fit_params import DEFAULT_HIDDEN, UMAPParams
from ._graph import graph_edges


@doc_params(doc_training=doc_training, doc_encoder=doc_encoder, doc_input=doc_input, doc_batch_device=doc_batch_device,
            doc_copy=doc_copy)
def parametric_umap(
    adata: AnnData,
    *,
    n_components: int = 2,
    min_dist: float = 0.5,
    spread: float = 1.0,
    n_neighbors: int | None = None,
    knn: KnnMethod | None = None,
    neighbors_key: str | Literal[False] | None = None,
    n_epochs: int | None = None,
    train_batch_size: int | None = None,
    learning_rate: float | None = None,
    negative_sample_rate: int = 5,
    repulsion_strength: float = 1.0,
    init: Init | str = "pca",
    weight_decay: float = 1e-3,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    activation: Activation = "relu",
    n_pcs: int | None = 50,
    use_rep: str | None = None,
    batch_key: str | None = None,
    center: bool = True,
    layer: str | None = None,
    use_raw: bool | None = None,
    mask_var: str | np.ndarray | None = None,
    store_jacobian: bool | Literal["auto", "float32", "float16"] = "auto",
    jacobian_genes: Sequence[str] | None = None,
    n_models: int | None = None,
    precision: Precision = "float32",
    random_state: int | np.random.RandomState | np.random.Generator | None = 0,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
    key_added: str = _keys.DEFAULT_KEY,
    copy: bool = False,
) -> AnnData | None:
    """Embed cells with an interpretable parametric UMAP.

    An ensemble of encoders made of bias-free linear layers and ReLU-type activations is
    trained on UMAP's cross-entropy over the fuzzy kNN graph; the map is their consensus,
    the mean of the members' maps after each is turned onto a common frame. The consensus
    is positively homogeneous, so each cell's embedding equals its Jacobian (the
    *equivalent linear mapping*) times its expression, exactly: ``Jacobian * (x - x_ref)``
    gives per-gene contributions that sum to the coordinates of the map shown (see
    :func:`scelm.get.contributions`), and every scelm tool explains that map.

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes).
    n_components
        Dimension of the embedding.
    min_dist, spread
        UMAP's kernel parameters, as in :func:`scanpy.tl.umap`; ``a`` and ``b`` are fitted
        from them like umap-learn does.
    n_neighbors
        Neighbours per cell when scelm builds the graph itself (default 15). A stored graph
        is used as it is: an explicit value is then ignored with a warning.
    knn
        How scelm finds those neighbours: ``'exact'`` (chunked matrix products on the
        training device), ``'nndescent'`` (pynndescent, approximate) or ``'auto'``
        (default): exact up to 50,000 cells on CPU and 2,000,000 on a GPU, pynndescent
        beyond. Like ``n_neighbors``, ignored (with a warning) when a stored graph is used.
    neighbors_key
        Where :func:`scanpy.pp.neighbors` stored its graph. ``None`` uses ``'neighbors'``
        when present (the graph :func:`scanpy.tl.umap` would embed), else scelm builds the
        UMAP fuzzy graph on the PCs of the input (exact kNN up to 50,000 cells on CPU and
        2,000,000 on a GPU, pynndescent beyond), which also works where
        ``sc.pp.neighbors`` fails (see ``knn``). ``False`` always builds scelm's own graph.
    n_epochs
        Passes over all cells. Default, from ``n_obs`` alone: up to 4,096 cells (where
        training is full batch by default, one step per epoch) ``n_obs / 10`` clipped to
        [300, 400] from a starting layout and 600 from ``init='random'``; above, 200 up to
        20,480 cells, then fewer, so that training takes about 4,000 steps of 1,024 cells
        (82 epochs at 50,000 cells), but at least 20 (from about 200,000 cells on).
        umap-learn uses 500 / 200.
    {doc_training}
    negative_sample_rate
        Uniform negative samples per cell and step, weighted by the cell's degree.
    repulsion_strength
        Weight of the repulsive term (umap-learn's ``gamma``).
    {doc_encoder}
    {doc_batch_device}
    key_added
        Prefix of every key written.
    {doc_copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``. Sets

    ``adata.obsm['X_{{key_added}}']`` : :class:`numpy.ndarray` (n_obs, n_components)
        The embedding, the ensemble's consensus; ``sc.pl.embedding(adata, basis=key_added)``
        draws it.
    ``adata.uns['{{key_added}}']`` : :class:`dict`
        ``params`` (including ``a``, ``b``), ``loss_history`` (members x epochs),
        ``var_names`` (genes read), ``front_end`` (``loadings``, ``reference``),
        ``encoders`` (the weights of every member) and ``alignment`` (members x d x d):
        enough to embed and explain new cells after ``write_h5ad``/``read_h5ad`` or
        ``write_zarr``/``read_zarr`` (:func:`scelm.tl.transform`).
    ``adata.layers['{{key_added}}_jacobian_{{k}}']`` : :class:`numpy.ndarray` (n_obs, n_vars)
        Row ``k`` of each cell's Jacobian (the consensus's), when ``store_jacobian``; a
        sparse matrix holding only ``jacobian_genes`` when they are given.

    Examples
    --------
    >>> import scanpy as sc, scelm
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scelm.tl.parametric_umap(adata)
    >>> sc.pl.embedding(adata, basis="elm", color="bulk_labels")
    """
    from .._core.loss import UMAPObjective, find_ab_params

    check_adata(adata)
    p = UMAPParams.from_call(adata, locals())
    a, b = find_ab_params(p.spread, p.min_dist)

    def edges_of(space, space_name, dev):
        edges, source, k = graph_edges(adata, space, space_name, p, device=dev)
        return edges, dict(a=a, b=b, n_neighbors=k, graph=source)

    return fit_and_write(adata, p, device=device, key_added=key_added, copy=copy, edges_of=edges_of,
                         objective=UMAPObjective(a, b, p.repulsion_strength), what="parametric UMAP")
