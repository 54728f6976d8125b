"""``scelm.tl.perturb`` and ``scelm.tl.deletion_curve``: what happens to the map when genes
are set to the reference. They check an explanation against the map it explains."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .. import _checks, _keys
from .._core.blocks import BLOCK_ROWS, iter_selected_rows
from .._core.options import PROTOCOLS, Protocol
from .._docs import doc_batch_device, doc_copy, doc_params
from .._input import check_adata, group_labels
from .._model import StoredModel
from ._rank_genes_elm import contrast_masks


def _inputs(model: StoredModel, adata: AnnData, cells: np.ndarray, genes: np.ndarray, *, chunk: int):
    """Encoder inputs ``(len(cells), n_in)`` and expression of the model genes ``genes``
    (positions; -1 gives zeros) of the cells at the sorted positions ``cells``, float32,
    streamed: the cells' whole expression is never held."""
    fe = model.model.front_end
    z = np.empty((len(cells), fe.n_in), dtype=np.float32)
    x = np.zeros((len(cells), len(genes)), dtype=np.float32)
    read = np.flatnonzero(np.asarray(genes) >= 0)
    for lo, hi, rows in iter_selected_rows(model.input_matrix(adata), cells, chunk):
        z[lo:hi] = fe.project_rows(rows)
        x[lo:hi, read] = rows[:, np.asarray(genes)[read]]
    return z, x


def _values(model: StoredModel, value: float | None) -> np.ndarray:
    """What deleted genes are set to: the front end's reference (``x_ref``, the mean cell by default),
    against which contributions are exact, or one given value."""
    if value is None:
        return model.model.front_end.reference
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"value must be None or a finite number, got {value!r}.")
    return np.full(len(model.genes), float(value), dtype=np.float32)


def _cell_mask(adata: AnnData, groupby: str | None, groups, mask) -> np.ndarray:
    if (groupby is None) == (mask is None):
        raise ValueError("Choose the cells with either groupby= (and groups=) or mask=, not both or neither.")
    if mask is not None:
        if isinstance(mask, str):
            if mask not in adata.obs.columns or adata.obs[mask].dtype != bool:
                raise KeyError(f"mask={mask!r} is not a boolean column of adata.obs.")
            mask = adata.obs[mask].to_numpy()
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (adata.n_obs,):
            raise ValueError(f"mask must be a boolean array of length n_obs={adata.n_obs}.")
    else:
        labels = group_labels(adata, groupby)
        if groups is None:
            raise ValueError("With groupby=, name the groups= whose cells are perturbed.")
        wanted = [groups] if isinstance(groups, str) else [str(g) for g in groups]
        if unknown := [g for g in wanted if g not in labels.categories]:
            raise ValueError(f"groups {unknown} are not categories of {groupby!r}.")
        mask = np.asarray(pd.Series(labels).isin(wanted))
    if not mask.any():
        raise ValueError("No cell is selected.")
    return mask


@doc_params(doc_copy=doc_copy, doc_batch_device=doc_batch_device)
def perturb(
    adata: AnnData,
    genes: str | Sequence[str],
    *,
    groupby: str | None = None,
    groups: str | Sequence[str] | None = None,
    mask: str | np.ndarray | None = None,
    value: float | None = None,
    elm_key: str = _keys.DEFAULT_KEY,
    key_added: str | None = None,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
    copy: bool = False,
) -> AnnData | None:
    """Re-embed chosen cells with chosen genes set to the reference and record where they go.

    The model is frozen: this asks "where would these cells sit in *this* map without
    these genes?", the experiment the ELM contributions predict to first order (a gene's
    contribution is the move it causes when the mapping stays the same).

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    genes
        Gene name(s) to set; they must be genes the model reads.
    groupby, groups
        Perturb the cells of these groups of ``obs[groupby]``.
    mask
        Or a boolean mask over cells (or the name of a boolean ``obs`` column).
    value
        What the genes are set to; ``None`` (default) uses the model's reference ``x_ref``
        (zero with the default front end), against which contributions are exact.
    elm_key
        ``key_added`` of the fitted model.
    key_added
        Where the result goes in ``uns``; default ``'{{elm_key}}_perturbation'``.
    {doc_batch_device}
    {doc_copy}

    Returns
    -------
    ``None`` or a copy. Sets ``adata.uns[key_added]`` with ``obs_names`` (the perturbed
    cells), ``embedding`` (their new coordinates, float32), ``displacement`` (new minus
    old), ``genes`` and ``params``; :func:`scelm.pl.perturbation` draws it.
    """
    from .._core.device import resolve_device
    from .._core.perturb import perturbed_embedding

    check_adata(adata)
    model = StoredModel.from_adata(adata, elm_key)
    names = pd.Index([genes] if isinstance(genes, str) else [str(g) for g in genes])
    if len(names) == 0:
        raise ValueError("genes is empty.")
    pos = pd.Index(model.genes).get_indexer(names)
    if (pos < 0).any():
        raise KeyError(f"genes the model does not read: {names[pos < 0][:10].tolist()}.")
    chosen = _cell_mask(adata, groupby, groups, mask)
    cells = np.flatnonzero(chosen)
    values = _values(model, value)
    key_added = _keys.perturbation_key(elm_key) if key_added is None else key_added
    Y = np.asarray(adata.obsm[_keys.embedding_key(elm_key)])[cells]
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    z, x = _inputs(model, adata, cells, pos, chunk=chunk_size)
    dev = resolve_device(device)
    new = np.concatenate([
        perturbed_embedding(model.model, z[i : i + chunk_size], x[i : i + chunk_size], pos, values, device=dev)
        for i in range(0, len(cells), chunk_size)
    ])
    target = adata.copy() if copy else adata
    target.uns[key_added] = dict(
        obs_names=np.asarray(adata.obs_names[cells], dtype=object),
        embedding=new.astype(np.float32),
        displacement=(new - Y).astype(np.float32),
        genes=np.asarray(names, dtype=object),
        params=dict(elm_key=elm_key, value="reference" if value is None else float(value),
                    groupby=groupby or "", groups=np.asarray([] if groups is None else np.atleast_1d(groups), dtype=object)),
    )
    logg.info(f"    perturbed {len(cells)} cells: mean move {np.linalg.norm(new - Y, axis=1).mean():.3g}; added uns[{key_added!r}]")
    return target if copy else None


def _sample(mask: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` of the cells in ``mask``, drawn uniformly."""
    cells = np.flatnonzero(mask)
    return cells if len(cells) <= max_cells else np.sort(rng.choice(cells, max_cells, replace=False))


def _ranked_groups(adata: AnnData, key: str, groups) -> tuple[dict, list[str]]:
    """The ranking in ``uns[key]`` and the groups of it to score."""
    if key not in adata.uns or "names" not in adata.uns[key] or "params" not in adata.uns[key]:
        raise KeyError(f"No ranking in adata.uns[{key!r}]; run scelm.tl.rank_genes_elm or sc.tl.rank_genes_groups first.")
    ranked = list(adata.uns[key]["names"].dtype.names)
    wanted = ranked if groups is None else ([groups] if isinstance(groups, str) else [str(g) for g in groups])
    if unknown := [g for g in wanted if g not in ranked]:
        raise ValueError(f"groups {unknown} are not in the ranking {key!r}: {ranked}.")
    return adata.uns[key], wanted


@doc_params(doc_copy=doc_copy, doc_batch_device=doc_batch_device)
def deletion_curve(
    adata: AnnData,
    key: str = _keys.DEFAULT_RANK_KEY,
    *,
    elm_key: str | None = None,
    protocol: Protocol = "both",
    n_genes: int = 50,
    groups: str | Sequence[str] | None = None,
    value: float | None = None,
    max_cells: int = 20_000,
    random_state: int = 0,
    key_added: str | None = None,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
    copy: bool = False,
) -> AnnData | None:
    """How much of each group's place in the map its top-ranked genes explain.

    For k = 1 ... ``n_genes``, the group's top-k genes of a ranking are set to the
    reference and the cells are re-embedded with the frozen model; the curve is the share
    of the distance between the group's centroid and its reference's centroid that
    disappears (measured along the original direction between them). Any ranking in
    scanpy's layout can be scored: :func:`scelm.tl.rank_genes_elm` or
    :func:`scanpy.tl.rank_genes_groups` (t-test, wilcoxon, logreg ...), so the rankings
    can be compared on the map they claim to explain. A random ranking removes about 0.

    Parameters
    ----------
    adata
        AnnData with a fitted model and the ranking.
    key
        ``uns`` key of the ranking to score (its ``params['groupby']`` and
        ``params['reference']`` define the groups).
    elm_key
        ``key_added`` of the fitted model whose map is explained; default the model the
        ranking was computed on (its ``params['elm_key']``), else ``'elm'`` (for rankings
        from :func:`scanpy.tl.rank_genes_groups`).
    protocol
        ``'both'`` (default): delete the genes in the group's cells and in its reference's,
        which is the experiment the ``separation`` score predicts (the default of
        :func:`scelm.tl.rank_genes_elm`). ``'group'``: delete them in the group's cells
        only, which is what the ``position`` score predicts.
    n_genes
        Largest k.
    groups
        Groups to score; default every group of the ranking.
    value
        What deleted genes are set to; ``None`` uses the model's reference ``x_ref``.
    max_cells
        Centroids are measured on at most this many cells of the group and of its
        reference, drawn uniformly (every cell when there are fewer): memory and time stay
        bounded on atlases, and the shares change by sampling error only.
    random_state
        Seed of that draw.
    key_added
        Where the result goes in ``uns``; default ``'{{key}}_deletion'``.
    {doc_batch_device}
    {doc_copy}

    Returns
    -------
    ``None`` or a copy. Sets ``adata.uns[key_added]`` with ``removed``, a
    :class:`~pandas.DataFrame` (groups x k = 1 ... ``n_genes``) of the share of separation
    removed, and ``params`` (``key``, ``elm_key``, ``protocol``, ``groupby``,
    ``reference``, ``max_cells``); :func:`scelm.pl.deletion_curve` draws it.
    """
    from .._core.device import resolve_device
    from .._core.perturb import deletion_curve as _curve

    check_adata(adata)
    protocol = _checks.one_of("protocol", protocol, PROTOCOLS)
    n_genes, max_cells = _checks.positive_int("n_genes", n_genes), _checks.positive_int("max_cells", max_cells)
    chunk_size, random_state = _checks.positive_int("chunk_size", chunk_size), _checks.seed("random_state", random_state)
    ranking, wanted = _ranked_groups(adata, key, groups)
    groupby, reference = ranking["params"]["groupby"], str(ranking["params"].get("reference", "rest"))
    if elm_key is None:
        elm_key = str(ranking["params"].get("elm_key", _keys.DEFAULT_KEY))
    model = StoredModel.from_adata(adata, elm_key)
    values, rng = _values(model, value), np.random.default_rng(random_state)
    dev, gene_pos = resolve_device(device), pd.Index(model.genes)
    start = logg.info(f"deletion curves of {key!r} on the map of {elm_key!r} ({protocol})")
    removed = {}
    for g in wanted:
        in_group, in_ref = contrast_masks(adata, ranking["params"], g)
        # Genes the model does not read cannot move the map: they count as a step with no effect.
        order = gene_pos.get_indexer(np.asarray(ranking["names"][g][:n_genes]).astype(str))
        sides = [_inputs(model, adata, _sample(m, max_cells, rng), order, chunk=chunk_size) for m in (in_group, in_ref)]
        curve = _curve(model.model, *sides, order, values, both=protocol == "both", device=dev)
        removed[g] = np.pad(curve, (0, n_genes - len(curve)), constant_values=np.nan)  # short rankings
    frame = pd.DataFrame.from_dict(removed, orient="index", columns=[str(k) for k in range(1, n_genes + 1)])
    target = adata.copy() if copy else adata
    key_added = _keys.deletion_key(key) if key_added is None else key_added
    target.uns[key_added] = dict(
        removed=frame, params=dict(key=key, elm_key=elm_key, protocol=protocol, groupby=groupby, reference=reference,
                                   value="reference" if value is None else float(value), max_cells=max_cells,
                                   **{k: ranking["params"][k] for k in ("within", "group") if k in ranking["params"]}),
    )
    logg.info("    finished", time=start, deep=f"added\n    '{key_added}', deletion curves (adata.uns)")
    return target if copy else None
