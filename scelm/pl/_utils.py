"""What every scelm plot shares: figure set-up and scanpy's show/return_fig convention."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._input import basis_key

doc_show = """\
show
    Show the figure; ``None`` follows ``sc.settings.autoshow``.
save
    Write the figure to ``sc.settings.figdir`` as scanpy does: ``True`` writes
    ``'{plot name}{sc.settings.plot_suffix}.{sc.settings.file_format_figs}'``, a string is
    appended to the plot name (its extension ``.png``, ``.pdf`` or ``.svg``, if any, picks
    the format), and ``None`` follows ``sc.settings.autosave``.
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of the axes."""


def figure_path(name: str, save: bool | str | None):
    """Where ``save`` writes the plot called ``name``, or None: the file scanpy's
    ``savefig_or_show`` would write for a plot of that name."""
    from pathlib import Path

    from scanpy import settings

    if save is not None and not isinstance(save, (bool, str)):
        raise TypeError(f"save must be True, False, None or a string appended to the file name, got {type(save).__name__}.")
    ext = None
    if isinstance(save, str):
        for suffix in (".svg", ".pdf", ".png"):
            if save.endswith(suffix):
                ext, save = suffix[1:], save[: -len(suffix)]
                break
        name, save = name + save, True
    if not (settings.autosave if save is None else save):
        return None
    return Path(settings.figdir) / f"{name}{settings.plot_suffix}.{ext or settings.file_format_figs}"


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
    """scanpy's convention: save if asked (or ``autosave``), then the Figure if
    ``return_fig``, else show or return the axes."""
    import matplotlib.pyplot as plt
    from scanpy import logging as logg
    from scanpy import settings

    path = figure_path(name, save)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        logg.warning(f"saving figure to file {path}")  # scanpy's message, at scanpy's level
        fig.savefig(path, bbox_inches="tight")
    if return_fig:
        return fig
    if settings.autoshow if show is None else show:
        plt.show()
        return None
    return axes[0] if len(axes) == 1 else axes


def label_map_axes(a, basis: str, title: str) -> None:
    """A map panel's frame: no ticks, axes named after the basis, a title."""
    a.set_xticks([]), a.set_yticks([])
    a.set_xlabel(f"{basis}1"), a.set_ylabel(f"{basis}2")
    a.set_title(title)


def embedding_coords(adata: AnnData, basis: str) -> np.ndarray:
    """Coordinates of a basis (scanpy's rule: ``obsm[basis]`` or ``obsm['X_' + basis]``)."""
    key = basis_key(adata, basis)
    Y = np.asarray(adata.obsm[key])
    if Y.shape[1] < 2:
        raise ValueError(f"adata.obsm[{key!r}] has {Y.shape[1]} dimension(s); plots need at least 2.")
    return Y


def default_colors(n: int) -> list[str]:
    """The colours scanpy gives ``n`` categories that have none stored: matplotlib's colour
    cycle when it has enough, else scanpy's public palettes of 20, 28 and 102, else grey."""
    from matplotlib import rcParams
    from matplotlib.colors import to_hex
    from scanpy.plotting import palettes

    for palette in (rcParams["axes.prop_cycle"].by_key()["color"], palettes.default_20, palettes.default_28, palettes.default_102):
        if len(palette) >= n:
            return [to_hex(c) for c in palette[:n]]
    return ["#808080"] * n


def group_colors(adata: AnnData, groupby: str) -> tuple[pd.Categorical, dict[str, str]]:
    """Labels and scanpy's colours for them (``uns[groupby + '_colors']`` or its default)."""
    if groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs.")
    labels = pd.Categorical(adata.obs[groupby].astype("category"))
    colors = adata.uns.get(f"{groupby}_colors")
    if colors is None or len(colors) < len(labels.categories):
        colors = default_colors(len(labels.categories))
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
