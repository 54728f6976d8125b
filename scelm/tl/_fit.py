"""What every embedding fit shares (``parametric_umap``, ``parametric_tsne``): input, front
end, starting layout, training of the members, their alignment, and writing the keys. The
fits differ only by their graph on the encoder input and their objective."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from anndata import AnnData
from scanpy import logging as logg
from scanpy import settings

from .._core.model import ELMModel
from .._input import model_input, representation
from .._model import StoredModel
from ._write import compute_outputs, jacobian_storage, log_written, write_outputs

# Cells whose maps the members' alignment is fitted on (a fixed random subset above).
ALIGN_CELLS = 50_000
# A member whose aligned map fits the consensus with R^2 below this gets a warning.
MEMBER_FIT_MIN = 0.5


def start_layout(
    adata: AnnData, init: str, space: np.ndarray, edges, n_components: int, seed: int, *, graph_only: bool = False
) -> np.ndarray | None:
    """The layout the encoder is regressed onto first, or None for ``'random'``. ``space`` holds
    the cells in the graph's own space (see :func:`graph_space`); ``graph_only``, for a graph no
    single space gives, turns ``'pca'`` into the graph's spectral layout."""
    from .._core.layout import pca_layout, scaled, spectral_layout

    if init == "random":
        return None
    if init == "spectral" or (init == "pca" and graph_only):
        return spectral_layout(space, edges.to_csr(), n_components, seed)
    if init == "pca":
        return pca_layout(space, n_components)
    given = np.asarray(adata.obsm[init])[:, :n_components]
    if not np.all(np.isfinite(given)):
        raise ValueError(f"adata.obsm[{init!r}] contains NaN or inf.")
    return scaled(given)


def graph_space(adata: AnnData, init: str, rep: np.ndarray | None, z: np.ndarray, graph_source: str) -> tuple[np.ndarray, bool]:
    """The cells in the space their graph came from, so that ``init='pca'`` starts from the
    graph's arrangement rather than one the graph undoes: ``obsm[use_rep]`` when given, else the
    integrated representation a stored graph records (``sc.pp.neighbors(use_rep=...)``; like
    ``sc.tl.umap``, the fit needs no ``use_rep`` then), else the encoder input ``z``. The flag
    is True for BBKNN's graph, which joins batches that no single space joins."""
    from ._graph import stored_graph_space

    if rep is not None:
        return rep, False
    built_on, bbknn = stored_graph_space(adata, graph_source)
    if bbknn is not None:
        if init == "pca":
            logg.info("    starting from the spectral layout of BBKNN's graph, which joins batches that no single space joins")
        return z, True
    if built_on is None:
        return z, False
    if init == "pca":
        logg.info(f"    starting from the PCs of adata.obsm[{built_on!r}], the representation the stored graph was built on")
    return representation(adata, built_on), False


def fit_embedding(adata: AnnData, p, dev, *, edges_of: Callable, objective, what: str) -> tuple[StoredModel, object]:
    """Front end, graph (``edges_of(space, description) -> (EdgeList, params it resolved)``,
    ``space`` the encoder input or an integrated ``use_rep``), starting layout and training on
    ``objective``: the fitted model and its input."""
    from .._core.encoder import StackedEncoder
    from .._core.frontend import fit_front_end
    from .._core.train import LAYOUT_STEPS, TrainConfig, train_members

    X, genes, use_raw, loadings = model_input(adata, layer=p.layer, use_raw=p.use_raw, mask_var=p.mask_var, use_rep=p.use_rep)
    jacobian_storage(genes, p.store_jacobian, p.jacobian_genes)  # a bad value fails now, not after training
    _check_covariance(len(genes), p.n_pcs is not None and loadings is None)
    front_end = fit_front_end(X, n_pcs=p.n_pcs, center=p.center, loadings=loadings)
    z = front_end.project(X)
    source = f"layers[{p.layer!r}]" if p.layer else (".raw" if use_raw else ".X")
    logg.info(f"    the encoder reads {len(genes)} genes of {source} through {front_end.n_in} linear components")
    # An integrated representation (no gene loadings) is where the graph and the starting
    # layout come from, as in sc.pp.neighbors(use_rep=...); the encoder still reads genes.
    rep = representation(adata, p.use_rep) if p.use_rep is not None and loadings is None else None
    if rep is not None:
        edges, resolved = edges_of(rep, f"adata.obsm[{p.use_rep!r}]")
    else:
        edges, resolved = edges_of(z, f"{z.shape[1]} components of the input")
    if p.batch_key is not None:
        front_end, z = _without_batch_shifts(adata, p.batch_key, front_end, z, edges)
    config = TrainConfig(
        p.n_epochs, p.learning_rate, p.negative_sample_rate, objective, p.train_batch_size,
        weight_decay=p.weight_decay, layout_steps=LAYOUT_STEPS, bfloat16=p.precision == "bfloat16",
        centred_input=p.center,
    )
    if p.n_models > 1:
        logg.info(f"    training {p.n_models} models on {what}; the map is their consensus")
    seeds = p.member_seeds()
    stack = StackedEncoder.random(front_end.n_in, p.hidden, p.n_components, seeds=seeds, activation=p.activation)
    space, graph_only = graph_space(adata, p.init, rep, z, resolved["graph"])
    if p.batch_key is None and (graph_only or space is not z):  # the graph comes from an integrated space
        _suggest_batch_key(adata, resolved["graph"])
    layout = start_layout(adata, p.init, space, edges, p.n_components, p.random_state, graph_only=graph_only)
    stack, history = train_members(
        stack, z, edges, config, member_seeds=seeds, layout=layout, device=dev, seed=p.random_state,
        progress=settings.verbosity >= 1, n_jobs=settings.n_jobs, desc=what,
    )
    params = p.stored(
        **resolved, use_raw=use_raw, device=str(dev), member_seeds=np.asarray(seeds),
        n_pcs=-1 if p.n_pcs is None and loadings is None else front_end.n_in,
    )
    align_on = z[np.random.default_rng(p.random_state).permutation(len(z))[:ALIGN_CELLS]]
    model = ELMModel.from_members(front_end, stack, align_on=align_on)
    _warn_misfits(model.member_r2)
    return StoredModel(genes, model, params, history), X


def _suggest_batch_key(adata: AnnData, graph_source: str) -> None:
    """On an integrated graph the encoder still reads the batches' shifts: with a strong batch
    effect, batch genes then enter the cell types' explanations unless ``batch_key`` removes
    them (docs/integration.md). Name the batch column where BBKNN recorded it."""
    from ._graph import stored_graph_space

    key = (stored_graph_space(adata, graph_source)[1] or {}).get("batch_key")
    column = repr(key) if isinstance(key, str) else "<the obs column of the batches>"
    logg.info(f"    if the cells come from several batches, pass batch_key={column} to keep batch genes out of the explanations")


def _without_batch_shifts(adata: AnnData, batch_key: str, front_end, z: np.ndarray, edges):
    """The front end with the batches' shifts projected out, and the encoder input it gives."""
    from .._core.batch import batch_shifts, project_out, shift_directions, without_directions
    from .._input import frame_column

    codes = frame_column(adata.obs, batch_key).astype("category").cat.codes.to_numpy()
    shifts = batch_shifts(z, codes, edges)
    directions = shift_directions(shifts)
    spread = float(np.sqrt(np.mean(np.sum((z - z.mean(0)) ** 2, axis=1))))
    logg.info(
        f"    removing {directions.shape[1]} batch direction(s) of {batch_key!r} from the front end (shifts "
        f"{np.round(np.linalg.norm(shifts, axis=1) / spread, 3).tolist()} of the cells' spread)"
    )
    # the encoder input of the new front end, without a second pass over X
    return without_directions(front_end, directions), project_out(z, directions)


def _check_covariance(n_genes: int, pca: bool) -> None:
    """Refuse a PCA front end whose g x g covariance would pass ``scelm.settings.dense_max_gb``."""
    from .._core.frontend import covariance_gb
    from .._settings import settings as scelm_settings

    if pca and (need := covariance_gb(n_genes)) > scelm_settings.dense_max_gb:
        raise ValueError(
            f"A PCA front end over {n_genes} genes needs {need:.1f} GB for its covariance (scelm.settings.dense_max_gb = "
            f"{scelm_settings.dense_max_gb}). Select genes first (sc.pp.highly_variable_genes, or mask_var=), pass "
            "use_rep= with stored PCs, or raise scelm.settings.dense_max_gb."
        )


def _warn_misfits(r2: np.ndarray | None) -> None:
    """Warn about members whose map the consensus does not describe (``uns[key]['member_r2']``)."""
    if r2 is not None and (bad := np.flatnonzero(r2 < MEMBER_FIT_MIN)).size:
        logg.warning(
            f"models {bad.tolist()} of the ensemble fit the consensus map with R^2 {np.round(r2[bad], 2).tolist()} "
            f"(< {MEMBER_FIT_MIN}): they laid the cells out differently, and the consensus averages unlike maps. "
            "Check the starting layout (init=) or fit more epochs."
        )


def fit_and_write(adata: AnnData, p, *, device, key_added: str, copy: bool, edges_of, objective, what: str) -> AnnData | None:
    """Fit, then write the embedding, the model and the Jacobian layers (all keys at once)."""
    from .._core.device import resolve_device

    dev = resolve_device(device)
    start = logg.info(f"computing {what} (scelm)")
    model, X = fit_embedding(adata, p, dev, edges_of=lambda space, name: edges_of(space, name, dev), objective=objective, what=what)
    target = adata.copy() if copy else adata
    Y, J, stored_genes = compute_outputs(
        model, X, target.var_names, store_jacobian=p.store_jacobian, jacobian_genes=p.jacobian_genes, device=dev,
        batch_size=p.chunk_size,
    )
    write_outputs(target, key_added, model, Y, J, stored_genes)
    log_written(start, key_added, J)
    return target if copy else None
