"""Embedding plots: per-gene contributions, and gene arrows at group centroids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .. import _keys, get
from .._docs import doc_params
from ._utils import doc_show, embedding_coords, finish, group_colors, label_map_axes, panels, ranked_result


def _direction(component, d: int) -> tuple[np.ndarray, str]:
    if isinstance(component, (int, np.integer)) and not isinstance(component, bool):
        if not 0 <= component < d:
            raise ValueError(f"component must be in [0, {d}), got {component}.")
        u = np.zeros(d)
        u[component] = 1.0
        return u, f"axis {component + 1}"
    u = np.asarray(component, dtype=float)
    if u.shape != (d,) or not np.all(np.isfinite(u)) or np.linalg.norm(u) == 0:
        raise ValueError(f"component must be an axis index or a non-zero direction of length {d}.")
    return u / np.linalg.norm(u), "direction " + np.array2string(u / np.linalg.norm(u), precision=2)


@doc_params(doc_show=doc_show)
def contributions(
    adata: AnnData,
    genes: str | Sequence[str],
    *,
    component: int | Sequence[float] = 0,
    elm_key: str = _keys.DEFAULT_KEY,
    basis: str | None = None,
    ncols: int = 4,
    cmap: str = "RdBu_r",
    size: float | None = None,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """The embedding coloured by each gene's contribution, one panel per gene.

    Red cells are pushed towards positive ``component``, blue ones away from it; the colour
    scale is centred at zero and shared by all panels, like ``sc.pl.embedding(color=[...])``.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    genes
        Gene name(s).
    component
        Embedding axis (0-based) or a direction vector to project contributions on.
    elm_key
        ``key_added`` of the model.
    basis
        Embedding to draw on; defaults to the model's ``X_{{elm_key}}``.
    ncols, cmap, size
        Panels per row, diverging colour map, point size.
    ax
        Axes to draw a single gene into.
    {doc_show}
    """
    import matplotlib.colors as mcolors

    genes = [genes] if isinstance(genes, str) else list(genes)
    if not genes:
        raise ValueError("Pass at least one gene.")
    Y = embedding_coords(adata, basis or elm_key)
    C = get.contributions(adata, elm_key=elm_key, genes=genes)
    u, label = _direction(component, C.shape[1])
    values = np.einsum("ndg,d->ng", C, u)
    vmax = float(np.abs(values).max()) or 1.0
    norm = mcolors.TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)
    size = min(120000 / adata.n_obs, 30.0) if size is None else size  # scanpy's rule, capped
    fig, axes = panels(len(genes), ncols=ncols, ax=ax)
    for a, gene, v in zip(axes, genes, values.T):
        order = np.argsort(np.abs(v))  # strongest on top
        sc_ = a.scatter(Y[order, 0], Y[order, 1], c=v[order], cmap=cmap, norm=norm, s=size, linewidths=0, rasterized=True)
        a.set_title(f"{gene} → {label}")
        a.set_xticks([]), a.set_yticks([])
        a.set_xlabel(f"{basis or elm_key}1"), a.set_ylabel(f"{basis or elm_key}2")
    fig.colorbar(sc_, ax=axes, shrink=0.8, fraction=0.03, pad=0.02, label="contribution")
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="contributions")


def _free_spot(tip: np.ndarray, v: np.ndarray, placed: list[np.ndarray], span: float) -> np.ndarray:
    """A label position just beyond the arrow tip, slid sideways (alternating) until it is
    clear of the labels placed so far; greedy, enough for a few arrows per group."""
    along = v / (np.linalg.norm(v) or 1.0)
    across = np.array([-along[1], along[0]])
    base, step = tip + 0.03 * span * along, 0.045 * span
    for k in range(9):
        spot = base + across * step * ((k + 1) // 2) * (1 if k % 2 else -1)
        if all(np.abs(spot - p)[0] > 2.2 * step or np.abs(spot - p)[1] > 0.6 * step for p in placed):
            break
    placed.append(spot)
    return spot


@doc_params(doc_show=doc_show)
def gene_arrows(
    adata: AnnData,
    groupby: str,
    *,
    n_genes: int = 3,
    groups: Sequence[str] | None = None,
    elm_key: str = _keys.DEFAULT_KEY,
    key: str = _keys.DEFAULT_RANK_KEY,
    arrow_scale: float | None = None,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """The embedding with each group's top genes drawn as arrows from its centroid.

    An arrow is the gene's mean contribution vector over the group's cells: where that gene
    moves the group. Arrows are scaled together (the scale is shown in the legend), and
    labels sit beyond the arrow tips.

    Parameters
    ----------
    adata
        AnnData with a fitted model and :func:`scelm.tl.rank_genes_elm` run on ``groupby``.
    groupby
        ``obs`` column the ranking was computed for.
    n_genes
        Arrows per group (top of the ranking).
    groups
        Groups to annotate; default all ranked groups.
    elm_key, key
        Keys of the model and of the ranking.
    arrow_scale
        Factor from contribution units to embedding units; default: the longest arrow
        spans 20% of the embedding.
    ax
        Axes to draw into.
    {doc_show}
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ._utils import check_groups

    result = ranked_result(adata, key)
    if result["params"].get("groupby") != groupby:
        raise ValueError(f"adata.uns[{key!r}] ranks {result['params'].get('groupby')!r}, not {groupby!r}; rerun rank_genes_elm.")
    groups = check_groups(result, groups)
    Y = embedding_coords(adata, elm_key)
    labels, colors = group_colors(adata, groupby)
    fig, axes = panels(1, ncols=1, panel_size=(7.5, 6.5), ax=ax)
    a = axes[0]
    for cat in labels.categories:
        m = labels == cat
        a.scatter(Y[m, 0], Y[m, 1], s=12, color=colors[cat], alpha=0.35, linewidths=0, label=cat, rasterized=True)
    top = {g: list(result["names"][g][:n_genes]) for g in groups}
    genes = sorted({x for v in top.values() for x in v})
    C = get.contributions(adata, elm_key=elm_key, genes=genes)[:, :2, :]
    vectors, centres = {}, {}
    for g in groups:
        m = np.asarray(labels == g)
        centres[g] = Y[m, :2].mean(0)
        vectors[g] = {gene: C[m, :, genes.index(gene)].mean(0) for gene in top[g]}
    longest = max(np.linalg.norm(v) for vs in vectors.values() for v in vs.values()) or 1.0
    span = np.ptp(Y[:, :2], axis=0).max()
    scale = arrow_scale if arrow_scale is not None else 0.2 * span / longest
    placed: list[np.ndarray] = []
    for g in groups:
        c = centres[g]
        for gene, v in vectors[g].items():
            tip = c + scale * v
            a.annotate("", xy=tip, xytext=c, arrowprops=dict(arrowstyle="-|>", color=colors.get(g, "k"), lw=1.8, shrinkA=0, shrinkB=0))
            a.text(*_free_spot(tip, v, placed, span), gene, fontsize=8, ha="center", va="center",
                   bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=colors.get(g, "k"), lw=0.6, alpha=0.85))
        a.plot(*c, "o", color="k", ms=4)
    handles, names = a.get_legend_handles_labels()
    handles.append(Line2D([0], [0], color="k", lw=1.8))
    names.append(f"arrow = {scale:.2g} x mean\ncontribution vector")
    a.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8, markerscale=2)
    label_map_axes(a, elm_key, f"top {n_genes} ELM genes per {groupby}")
    if ax is None:
        plt.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="gene_arrows")
