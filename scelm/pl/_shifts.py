"""Condition shifts within categories: where a condition moved each cell type, and the genes."""

from __future__ import annotations

from anndata import AnnData

from .. import _keys
from .._docs import doc_params
from ..tl._rank_genes_elm import contrast_masks
from ._utils import doc_show, embedding_coords, finish, group_colors, label_map_axes, panels, ranked_result


@doc_params(doc_show=doc_show)
def condition_shifts(
    adata: AnnData,
    key: str = _keys.DEFAULT_RANK_KEY,
    *,
    n_genes: int = 3,
    elm_key: str = _keys.DEFAULT_KEY,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Each category's shift in the map between a condition and its reference, as an arrow
    labelled with its top genes.

    Reads a ranking made with ``scelm.tl.rank_genes_elm(..., within=...)``: for each
    category of ``within`` (e.g. each cell type), the arrow runs from the centroid of the
    reference's cells (e.g. ``ctrl``) to the centroid of the group's cells (e.g. ``stim``)
    of that category, and its label lists the top ``n_genes`` genes with, for the
    ``separation`` score, each gene's share of the arrow's length (the shares of all genes
    sum to 1 exactly).

    Parameters
    ----------
    adata
        AnnData with a fitted model and a ``within`` ranking.
    key
        ``uns`` key of the ranking.
    n_genes
        Genes named per arrow.
    elm_key
        Key of the model whose map is drawn.
    ax
        Axes to draw into.
    {doc_show}
    """
    import matplotlib.pyplot as plt

    result = ranked_result(adata, key)
    params = result["params"]
    if "within" not in params:
        raise ValueError(f"adata.uns[{key!r}] is not a ranking within categories; run "
                         "scelm.tl.rank_genes_elm(adata, groupby, groups=..., reference=..., within=...) first.")
    Y = embedding_coords(adata, elm_key)[:, :2]
    labels, colors = group_colors(adata, params["within"])
    fig, axes = panels(1, ncols=1, panel_size=(7.5, 6.5), ax=ax)
    a = axes[0]
    a.scatter(Y[:, 0], Y[:, 1], s=6, color="lightgrey", linewidths=0, rasterized=True)
    shares = params.get("score") == "separation"
    for field in result["names"].dtype.names:
        in_group, in_ref = contrast_masks(adata, params, field)
        start, end = Y[in_ref].mean(0), Y[in_group].mean(0)
        color = colors.get(field, "k")
        a.scatter(Y[in_group, 0], Y[in_group, 1], s=8, color=color, alpha=0.35, linewidths=0, rasterized=True)
        a.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=color, lw=2.2, shrinkA=0, shrinkB=0))
        distance = float(result["centroid_distance"][field][0])
        genes = [f"{g} {s / distance:.0%}" if shares else str(g)
                 for g, s in zip(result["names"][field][:n_genes], result["scores"][field][:n_genes])]
        a.text(*end, f"{field}\n" + "\n".join(genes), fontsize=8, ha="left", va="bottom",
               bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=0.6, alpha=0.85))
    label_map_axes(a, elm_key, f"{params['group']} vs {params['reference']} within each {params['within']}")
    if ax is None:
        plt.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="condition_shifts")
