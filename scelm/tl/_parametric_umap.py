"""``scelm.tl.parametric_umap``: fit an interpretable UMAP encoder on AnnData."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData
from scanpy import logging as logg
from scanpy import settings

from .. import _keys
from .._core.blocks import BLOCK_ROWS
from .._core.model import ELMModel
from .._core.options import Activation, Init, KnnMethod, Precision
from .._docs import doc_batch_device, doc_copy, doc_input, doc_params
from .._input import check_adata, model_input
from .._model import StoredModel
from ._fit_params import DEFAULT_HIDDEN, FitParams
from ._graph import graph_edges
from ._write import compute_outputs, jacobian_storage, log_written, write_outputs

# Cells whose maps the members' alignment is fitted on (a fixed random subset above).
ALIGN_CELLS = 50_000


def _start_layout(adata: AnnData, init: str, z: np.ndarray, edges, n_components: int, seed: int) -> np.ndarray | None:
    """The layout the encoder is regressed onto first, or None for ``'random'``."""
    from .._core.layout import pca_layout, scaled, spectral_layout

    if init == "random":
        return None
    if init == "pca":
        return pca_layout(z, n_components)
    if init == "spectral":
        return spectral_layout(z, edges.to_csr(), n_components, seed)
    given = np.asarray(adata.obsm[init])[:, :n_components]
    if not np.all(np.isfinite(given)):
        raise ValueError(f"adata.obsm[{init!r}] contains NaN or inf.")
    return scaled(given)


@doc_params(doc_input=doc_input, doc_batch_device=doc_batch_device, doc_copy=doc_copy)
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
    learning_rate: float = 1e-2,
    negative_sample_rate: int = 5,
    repulsion_strength: float = 1.0,
    init: Init | str = "pca",
    weight_decay: float = 1e-3,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    activation: Activation = "relu",
    n_pcs: int | None = 50,
    use_rep: str | None = None,
    center: bool = False,
    layer: str | None = None,
    use_raw: bool | None = None,
    mask_var: str | np.ndarray | None = None,
    store_jacobian: bool | Literal["auto", "float32", "float16"] = "auto",
    jacobian_genes: Sequence[str] | None = None,
    n_models: int | None = None,
    precision: Precision = "float32",
    random_state: int | None = 0,
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
        [300, 400] from a starting layout and 600 from ``init='random'``; above, 200 (about
        20 steps per epoch). umap-learn uses 500 / 200.
    train_batch_size
        Cells per training step. ``None``: full batch up to 4,096 cells, else about 20
        blocks per epoch of at least 1,024 cells. Each step encodes one block and uses the
        latest embedding of the other cells; more blocks mean more optimizer steps per
        epoch at about the same cost, and activations held for one block only (see
        ``docs/scale.md``). A value ``>= n_obs`` trains full batch. It changes no other
        default.
    learning_rate
        Adam's learning rate, linearly decayed to zero.
    negative_sample_rate
        Uniform negative samples per cell and step, weighted by the cell's degree.
    repulsion_strength
        Weight of the repulsive term (umap-learn's ``gamma``).
    init
        Starting layout the encoder is regressed onto before UMAP's loss takes over:
        ``'pca'`` (default; the top principal components of the encoder input),
        ``'spectral'`` (umap-learn's spectral embedding of the graph, its default), the
        name of an ``obsm`` key such as ``'X_umap'`` (start from a map you already have),
        or ``'random'`` (no regression: the map's global arrangement is left to the random
        initial weights). A fixed starting layout makes the map, and so the gene rankings
        explaining it, agree across ``random_state`` (see ``docs/trust.md``).
    weight_decay
        AdamW's decoupled weight decay during the UMAP phase; small values make the
        encoder's Jacobians, hence its rankings, less seed-dependent.
    hidden
        Widths of the hidden layers of each member; ``()`` makes each a linear map.
    activation
        ``'relu'``, ``'leaky_relu'`` or ``'prelu'``.
    n_pcs
        Linear front end: project expression on this many PC loadings (computed here, on
        the selected genes), or ``None`` to feed genes directly. Jacobians are always
        chained back to gene space.
    use_rep
        Use an existing linear representation instead, e.g. ``'X_pca'`` from
        :func:`scanpy.tl.pca`: its loadings (``varm['PCs']``) become the front end, applied
        to the genes they cover in ``.X`` (or ``layer``); ``n_pcs`` is then ignored.
    center
        Apply the front end to centred expression. ``False`` (default) keeps the reference
        ``x_ref = 0``: a gene a cell does not express contributes exactly zero to it. With
        ``True``, contributions are relative to the mean cell.
    {doc_input}
    store_jacobian
        Write ``layers['{{key_added}}_jacobian_{{k}}']`` (cells x genes, zeros for genes the
        model does not read): ``'auto'`` (default) stores float32 layers when they take at
        most ``scelm.settings.jacobian_layers_max_gb`` (1 GB: pbmc68k_reduced or 10,000
        cells x 2,000 genes keep theirs, an atlas does not) and logs how to get them
        otherwise; ``True``/``'float32'`` always; ``'float16'`` halves their memory (for
        plotting with scanpy; scelm's own functions then recompute exact values); ``False``
        stores none. :func:`scelm.get.jacobian` recomputes exactly from the model whenever the
        layers are not the complete float32 Jacobian.
    jacobian_genes
        Store the Jacobian layers of these genes only (named in
        ``uns[key_added]['jacobian_genes']``); ``None``: every gene the model reads.
    n_models
        Members of the ensemble, fitted on the same graph, front end and starting layout;
        they differ by their initial weights and negative samples (independent streams of
        ``random_state``). On a GPU they train as one batched network; on CPU in one
        thread per core. Each member's map is turned onto the common frame by orthogonal
        Procrustes (``uns[key_added]['alignment']``) and the map is their mean, so the
        explanations, exact for that consensus, agree across ``random_state`` far more than
        one model's (``docs/trust.md``); how far the members agree is what
        :func:`scelm.tl.rank_genes_elm` reports as stability. Default ``None``: 10 up to
        4,096 cells, else 4.
    precision
        ``'float32'``, or ``'bfloat16'`` to run the encoder's matrix products during
        training under bfloat16 autocast (faster on recent GPUs; distances and the loss stay
        float32). Weights, the embedding and the Jacobians are float32 either way, so the
        exact decomposition is unaffected.
    random_state
        Seed for initialisation and negative sampling; CPU runs are reproducible on the
        same machine and torch thread count.
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
    from .._core.device import resolve_device

    check_adata(adata)
    p = FitParams.from_call(adata, locals())
    dev = resolve_device(device)
    start = logg.info("computing parametric UMAP (scelm)")
    model, X = _fit(adata, p, dev)
    target = adata.copy() if copy else adata
    Y, J, stored_genes = compute_outputs(
        model, X, target.var_names, store_jacobian=store_jacobian, jacobian_genes=jacobian_genes, device=dev,
        batch_size=p.chunk_size,
    )
    write_outputs(target, key_added, model, Y, J, stored_genes)
    log_written(start, key_added, J)
    return target if copy else None


def _fit(adata: AnnData, p: FitParams, dev) -> tuple[StoredModel, object]:
    """Front end, graph, starting layout and training: the fitted model and its input."""
    from .._core.encoder import StackedEncoder
    from .._core.frontend import fit_front_end
    from .._core.loss import find_ab_params
    from .._core.train import LAYOUT_STEPS, TrainConfig, member_threads, train_members

    X, genes, use_raw, loadings = model_input(adata, layer=p.layer, use_raw=p.use_raw, mask_var=p.mask_var, use_rep=p.use_rep)
    jacobian_storage(genes, p.store_jacobian, p.jacobian_genes)  # a bad value fails now, not after training
    front_end = fit_front_end(X, n_pcs=p.n_pcs, center=p.center, loadings=loadings)
    z = front_end.project(X)
    edges, graph_source, graph_k = graph_edges(adata, z, p, device=dev)
    a, b = find_ab_params(p.spread, p.min_dist)
    config = TrainConfig(
        p.n_epochs, p.learning_rate, p.negative_sample_rate, p.repulsion_strength, a, b, p.train_batch_size,
        weight_decay=p.weight_decay, layout_steps=LAYOUT_STEPS, bfloat16=p.precision == "bfloat16",
    )
    if p.n_models > 1:
        logg.info(f"    training {p.n_models} models; the map is their consensus")
    seeds = p.member_seeds()
    stack = StackedEncoder.random(front_end.n_in, p.hidden, p.n_components, seeds=seeds, activation=p.activation)
    layout = _start_layout(adata, p.init, z, edges, p.n_components, p.random_state)
    stack, history = train_members(
        stack, z, edges, config, layout=layout, device=dev, seed=p.random_state, progress=settings.verbosity >= 1,
        threads=member_threads(dev, p.n_models),
    )
    params = p.stored(
        a=a, b=b, n_neighbors=graph_k, graph=graph_source, use_raw=use_raw, device=str(dev), member_seeds=np.asarray(seeds),
        n_pcs=-1 if p.n_pcs is None and p.use_rep is None else front_end.n_in,
    )
    align_on = z[np.random.default_rng(p.random_state).permutation(len(z))[:ALIGN_CELLS]]
    model = ELMModel.from_members(front_end, stack, align_on=align_on)
    return StoredModel(genes, model, params, history), X
