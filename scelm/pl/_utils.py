"""What every scelm plot shares: figure set-up and scanpy's show/return_fig convention."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys

doc_show = """\
show
    Show the figure; ``None`` follows ``sc.settings.autoshow``.
save
    Write the figure to ``sc.settings.figdir``: a file name (its extension picks the
    format), or ``True`` for ``'{plot name}.{sc.settings.file_format_figs}'``.
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of the axes."""


def panels(n: int, *, ncols: int, panel_size=(4.0, 3.6), ax=None):
    """A figure with ``n`` axes in rows of ``ncols`` (or the given single ``ax``)."""
    import matplotlib.pyplot as plt

    if ax is not None:
        if n != 1:
            raise ValueError(f"ax= takes a single panel, but this plot draws {n}; leave ax=None.")
        return ax.figure, [ax]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for extra in axes.ravel()[n:]:
        extra.set_visible(False)
    return fig, list(axes.ravel()[:n])


def finish(fig, axes: list, *, show: bool | None, return_fig: bool, save: bool | str | None = None, name: str = "scelm"):
    """scanpy's convention: save if asked, then the Figure if ``return_fig``, else show or
    return the axes."""
    import matplotlib.pyplot as plt
    from scanpy import settings

    if save:
        from pathlib import Path

        if not isinstance(save, (bool, str)):
            raise TypeError(f"save must be a file name or True, got {type(save).__name__}.")
        path = Path(settings.figdir) / (f"{name}.{settings.file_format_figs}" if save is True else save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    show = settings.autoshow if show is None else show
    if return_fig:
        return fig
    if show:
        plt.show()
        return None
    return axes[0] if len(axes) == 1 else axes


def embedding_coords(adata: AnnData, basis: str) -> np.ndarray:
    key = basis if basis.startswith("X_") else _keys.embedding_key(basis)
    if key not in adata.obsm:
        raise KeyError(f"No embedding adata.obsm[{key!r}]; run scelm.tl.parametric_umap first or pass basis=.")
    Y = np.asarray(adata.obsm[key])
    if Y.shape[1] < 2:
        raise ValueError(f"adata.obsm[{key!r}] has {Y.shape[1]} dimension(s); plots need at least 2.")
    return Y


def group_colors(adata: AnnData, groupby: str) -> tuple[pd.Categorical, dict[str, str]]:
    """Labels and scanpy's colours for them (``uns[groupby + '_colors']`` or its palette)."""
    from scanpy.plotting._utils import _set_default_colors_for_categorical_obs

    if groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs.")
    labels = pd.Categorical(adata.obs[groupby].astype("category"))
    colors = adata.uns.get(f"{groupby}_colors")
    if colors is None or len(colors) < len(labels.categories):
        tmp = AnnData(obs=pd.DataFrame({groupby: labels}, index=adata.obs_names))
        _set_default_colors_for_categorical_obs(tmp, groupby)
        colors = tmp.uns[f"{groupby}_colors"]
    return labels, dict(zip(labels.categories, colors))


def ranked_result(adata: AnnData, key: str) -> dict:
    if key not in adata.uns or "names" not in adata.uns[key]:
        raise KeyError(f"No ranking in adata.uns[{key!r}]; run scelm.tl.rank_genes_elm(adata, groupby) first.")
    return adata.uns[key]


def check_groups(result: dict, groups) -> list[str]:
    available = list(result["names"].dtype.names)
    if groups is None:
        return available
    groups = [groups] if isinstance(groups, str) else list(groups)
    if unknown := [g for g in groups if g not in available]:
        raise ValueError(f"Unknown groups {unknown}; ranked groups are {available}.")
    return groups
