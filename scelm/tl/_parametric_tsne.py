"""``scelm.tl.parametric_tsne``: an interpretable t-SNE, the same exact model on t-SNE's loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._core.blocks import BLOCK_ROWS
from .._core.options import Activation, Init, KnnMethod, Precision
from .._docs import doc_batch_device, doc_copy, doc_encoder, doc_input, doc_params, doc_training
from .._input import check_adata
from ._fit import fit_and_write
from ._fit_params import DEFAULT_HIDDEN, TSNEParams

DEFAULT_TSNE_KEY = "elm_tsne"


@doc_params(doc_training=doc_training, doc_encoder=doc_encoder, doc_input=doc_input, doc_batch_device=doc_batch_device,
            doc_copy=doc_copy)
def parametric_tsne(
    adata: AnnData,
    *,
    n_components: int = 2,
    perplexity: float = 30.0,
    exaggeration: float = 1.0,
    dof: float = 1.0,
    knn: KnnMethod | None = None,
    n_epochs: int | None = None,
    train_batch_size: int | None = None,
    learning_rate: float | None = None,
    negative_sample_rate: int = 20,
    init: Init | str = "pca",
    weight_decay: float = 1e-3,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    activation: Activation = "relu",
    n_pcs: int | None = 50,
    use_rep: str | None = None,
    neighbors_key: str | None = None,
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
    key_added: str = DEFAULT_TSNE_KEY,
    copy: bool = False,
) -> AnnData | None:
    """Embed cells with an interpretable parametric t-SNE.

    The same model as :func:`scelm.tl.parametric_umap` (a consensus of bias-free ReLU
    encoders on a linear front end, so every cell's coordinates are exactly its Jacobian
    times its expression), trained on t-SNE's loss: the KL divergence between the
    perplexity-based affinities ``P`` of the cells and the heavy-tailed kernel of the map.
    Everything downstream works by naming its key: ``scelm.get.contributions(adata,
    elm_key='elm_tsne')``, ``rank_genes_elm(..., elm_key='elm_tsne')``, ``transform``,
    ``perturb``, ``deletion_curve`` and the plots.

    By default the affinities are built here, on the encoder input (the 50 PCs of the genes
    read) or on ``use_rep``: t-SNE needs ``3 * perplexity`` neighbours per cell with
    perplexity-calibrated weights, which a stored ``sc.pp.neighbors`` graph (UMAP's fuzzy
    weights on 15 neighbours) does not hold. ``neighbors_key`` trains on a stored graph
    instead, for integrations that give only a graph (BBKNN). The repulsion, normalised over all pairs in t-SNE, is
    estimated from uniform negative samples with the normaliser estimated from all of a
    step's negatives (Damrich et al., ICLR 2023), the same code on CPU and GPU.

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes).
    n_components
        Dimension of the embedding.
    perplexity
        t-SNE's perplexity: the effective number of neighbours each cell's affinities
        spread over; ``3 * perplexity`` must be below ``n_obs``.
    exaggeration
        Factor on the attraction, constant over training: 1 is t-SNE; larger values move
        the map along the attraction-repulsion spectrum towards UMAP (about 4) and
        Laplacian eigenmaps (Böhm, Berens & Kobak, JMLR 2022).
    dof
        Degrees of freedom of the kernel ``(1 + d^2 / dof)^-dof``: 1 is t-SNE's Cauchy
        kernel; below 1, heavier tails separate clusters further (Kobak et al. 2019).
    knn
        How the neighbours are found, as in :func:`scelm.tl.parametric_umap`.
    neighbors_key
        A key of ``adata.uns`` naming a neighbourhood graph (``sc.pp.neighbors``,
        ``bbknn.bbknn``): its connectivities, symmetrised and normalised to sum to 1, are
        t-SNE's affinities, and ``perplexity`` and ``knn`` are unused. ``None`` (default):
        perplexity-based affinities built here.
    n_epochs
        Passes over all cells. Default: twice :func:`scelm.tl.parametric_umap`'s where
        training is full batch (600 to 800 up to 4,096 cells), the same above (200 up to
        20,480 cells, then about 4,000 steps of 1,024 cells in all, but at least 20).
    {doc_training}
    negative_sample_rate
        Uniform negative samples per cell and step that estimate the repulsion.
    {doc_encoder}
    {doc_batch_device}
    key_added
        Prefix of every key written (default ``'elm_tsne'``): ``obsm['X_elm_tsne']``,
        ``uns['elm_tsne']`` and the Jacobian layers, as :func:`scelm.tl.parametric_umap`
        writes them.
    {doc_copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; the keys are those of
    :func:`scelm.tl.parametric_umap` under ``key_added``, with ``params['method'] = 'tsne'``,
    ``perplexity``, ``exaggeration`` and ``dof``.

    Examples
    --------
    >>> scelm.tl.parametric_tsne(adata)
    >>> sc.pl.embedding(adata, basis="elm_tsne", color="bulk_labels")
    >>> scelm.tl.rank_genes_elm(adata, "bulk_labels", elm_key="elm_tsne", key_added="rank_tsne")
    """
    from .._core.loss import TSNEObjective

    check_adata(adata)
    p = TSNEParams.from_call(adata, locals())

    def edges_of(space, space_name, dev):
        from .._core.graph import joint_probabilities, knn_method, perplexity_affinities, upper_edges
        from ._graph import stored_connectivities

        if p.neighbors_key is not None:
            C, key = stored_connectivities(adata, p.neighbors_key)
            logg.info(f"    t-SNE affinities: the graph in adata.uns[{key!r}], normalised (perplexity unused)")
            return upper_edges(joint_probabilities(C)), dict(method="tsne", graph=f"uns:{key}")
        method = knn_method(adata.n_obs, p.knn, dev)
        logg.info(f"    building t-SNE affinities (perplexity {p.perplexity:g}, {method} kNN on {space_name})")
        P = perplexity_affinities(space, p.perplexity, random_state=p.random_state, device=dev, method=method)
        return upper_edges(P), dict(method="tsne", graph=f"scelm:perplexity:{method}")

    return fit_and_write(adata, p, device=device, key_added=key_added, copy=copy, edges_of=edges_of,
                         objective=TSNEObjective(p.exaggeration, p.dof), what="parametric t-SNE")
