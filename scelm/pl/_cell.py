"""One cell explained: a waterfall of its largest gene contributions per axis."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys, get
from .._docs import doc_params
from .._model import StoredModel
from ._utils import doc_show, finish, panels


@doc_params(doc_show=doc_show)
def cell(
    adata: AnnData,
    cell: str | int,
    *,
    n_genes: int = 10,
    elm_key: str = _keys.DEFAULT_KEY,
    ncols: int = 2,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Waterfall per embedding axis, from 0 to the cell's coordinate through its largest
    contributions; the remaining genes are summed as "other genes", so the bars visibly add
    up to the coordinate (marked by the dashed line). 0 is where the model's reference sits
    (the mean cell by default), so each bar is how far a gene's deviation from its reference
    value moves the cell along that axis.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    cell
        Cell name (``obs_names``) or integer position.
    n_genes
        Largest contributions shown per axis (by absolute value).
    elm_key
        ``key_added`` of the model.
    ncols
        Panels per row.
    {doc_show}
    """
    if isinstance(cell, (int, np.integer)) and not isinstance(cell, bool):
        if not -adata.n_obs <= cell < adata.n_obs:
            raise IndexError(f"cell index {cell} out of range for {adata.n_obs} cells.")
        idx = int(cell) % adata.n_obs
    elif cell in adata.obs_names:
        idx = adata.obs_names.get_loc(cell)
    else:
        raise KeyError(f"cell {cell!r} is not in adata.obs_names.")
    model = StoredModel.from_adata(adata, elm_key)
    genes = list(model.genes)
    C = get.contributions(adata[idx : idx + 1], elm_key=elm_key, genes=genes)[0]  # (d, genes)
    coords = np.asarray(adata.obsm[_keys.embedding_key(elm_key)][idx])
    fig, axes = panels(C.shape[0], ncols=ncols, panel_size=(4.8, 0.32 * (n_genes + 2) + 1.2))
    for k, a in enumerate(axes):
        order = np.argsort(-np.abs(C[k]))[:n_genes]
        labels = [genes[i] for i in order] + ["other genes"]
        steps = np.append(C[k, order], C[k].sum() - C[k, order].sum())
        starts = np.concatenate([[0.0], np.cumsum(steps)[:-1]])
        colors = np.where(steps >= 0, "#b2182b", "#2166ac")
        colors[-1] = "#999999"
        a.barh(range(len(steps)), steps, left=starts, color=colors)
        a.axvline(0, color="k", lw=0.6)
        a.axvline(coords[k], color="k", ls="--", lw=1)
        a.set_yticks(range(len(steps)), labels, fontsize=8)
        a.invert_yaxis()
        a.set_xlabel(f"{elm_key}{k + 1}")
        a.set_title(f"{adata.obs_names[idx]}: {elm_key}{k + 1} = {coords[k]:.3g} (sum {C[k].sum():.3g})", fontsize=9)
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="cell")
