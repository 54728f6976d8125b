"""Plots that check explanations against the map: perturbation arrows, deletion curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _checks, _keys
from .._docs import doc_params
from ._utils import doc_show, embedding_coords, finish, group_colors, panels


@doc_params(doc_show=doc_show)
def perturbation(
    adata: AnnData,
    key: str = _keys.perturbation_key(_keys.DEFAULT_KEY),
    *,
    color: str | None = None,
    max_arrows: int = 300,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Where :func:`scelm.tl.perturb` moved its cells, as arrows on the embedding.

    Every cell is drawn in grey (or by ``color``); each perturbed cell gets an arrow from
    its place in the map to where it lands without the perturbed genes, and the centroid of
    the perturbed cells a thick one.

    Parameters
    ----------
    adata
        AnnData with :func:`scelm.tl.perturb` results.
    key
        ``key_added`` of the perturbation.
    color
        ``obs`` column to colour the cells by (categorical), e.g. the ``groupby`` used.
    max_arrows
        Draw arrows for at most this many cells (a random subset; the centroid arrow uses all).
    random_state
        Seed of that subset.
    ax
        Axes to draw into.
    {doc_show}
    """
    if key not in adata.uns or "displacement" not in adata.uns[key]:
        raise KeyError(f"No perturbation in adata.uns[{key!r}]; run scelm.tl.perturb first.")
    random_state = _checks.seed("random_state", random_state)
    res = adata.uns[key]
    Y = embedding_coords(adata, res["params"]["elm_key"])[:, :2]
    cells = adata.obs_names.get_indexer(pd.Index(np.asarray(res["obs_names"]).astype(str)))
    if (cells < 0).any():
        raise ValueError(f"adata.uns[{key!r}] names cells that are not in this AnnData.")
    start, move = Y[cells], np.asarray(res["displacement"])[:, :2]
    fig, axes = panels(1, ncols=1, panel_size=(6.5, 5.5), ax=ax)
    a = axes[0]
    if color is None:
        a.scatter(Y[:, 0], Y[:, 1], s=6, color="#cccccc", linewidths=0, rasterized=True)
    else:
        labels, colors = group_colors(adata, color)
        for cat in labels.categories:
            m = np.asarray(labels == cat)
            a.scatter(Y[m, 0], Y[m, 1], s=6, color=colors[cat], alpha=0.4, linewidths=0, label=cat, rasterized=True)
        a.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8, markerscale=2)
    shown = np.random.default_rng(random_state).permutation(len(cells))[:max_arrows]
    a.quiver(start[shown, 0], start[shown, 1], move[shown, 0], move[shown, 1], angles="xy", scale_units="xy",
             scale=1, width=0.002, color="k", alpha=0.5)
    c = start.mean(0)
    a.annotate("", xy=c + move.mean(0), xytext=c, arrowprops=dict(arrowstyle="-|>", color="#b2182b", lw=2.5))
    genes = list(np.asarray(res["genes"]).astype(str))
    a.set_title(f"{len(cells)} cells without {', '.join(genes[:4])}{' ...' if len(genes) > 4 else ''}", fontsize=10)
    a.set_xticks([]), a.set_yticks([])
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="perturbation")


@doc_params(doc_show=doc_show)
def deletion_curve(
    adata: AnnData,
    keys: str | Sequence[str] = _keys.deletion_key(_keys.DEFAULT_RANK_KEY),
    *,
    groups: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Deletion curves of one or more rankings (:func:`scelm.tl.deletion_curve`).

    One line per ranking: the share of separation removed by deleting the top-k genes,
    averaged over groups (or for each of ``groups``, in panels). A ranking that explains the
    map rises fast; a random one stays near 0.

    Parameters
    ----------
    adata
        AnnData with :func:`scelm.tl.deletion_curve` results.
    keys
        Their ``key_added`` (default ``'rank_genes_elm_deletion'``).
    groups
        Draw these groups in separate panels instead of the mean over groups.
    labels
        Legend labels, one per key; default the ranking's key and method.
    ax
        Axes to draw into (mean over groups only).
    {doc_show}
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("keys names no deletion curve.")
    for k in keys:
        if k not in adata.uns or "removed" not in adata.uns[k]:
            raise KeyError(f"No deletion curve in adata.uns[{k!r}]; run scelm.tl.deletion_curve first.")
    if labels is not None and len(labels) != len(keys):
        raise ValueError(f"labels has {len(labels)} entries for {len(keys)} keys.")
    frames = [pd.DataFrame(adata.uns[k]["removed"]) for k in keys]
    protocols = {str(adata.uns[k]["params"]["protocol"]) for k in keys}
    if labels is None:
        labels = []
        for k in keys:
            rank_key = str(adata.uns[k]["params"]["key"])
            method = adata.uns.get(rank_key, {}).get("params", {}).get("method", "")
            labels.append(f"{rank_key} ({method})" if method else rank_key)
    panel_names = ["mean over groups"] if groups is None else [str(g) for g in groups]
    for f, k in zip(frames, keys):
        if unknown := [g for g in (groups or []) if g not in f.index]:
            raise ValueError(f"groups {unknown} are not in adata.uns[{k!r}].")
    fig, axes = panels(len(panel_names), ncols=4, panel_size=(4.2, 3.4), ax=ax)
    for a, name in zip(axes, panel_names):
        for f, label in zip(frames, labels):
            curve = f.mean(0) if groups is None else f.loc[name]
            a.plot(np.arange(1, len(curve) + 1), curve.to_numpy(dtype=float), lw=1.6, label=label)
        a.axhline(0, color="k", lw=0.5)
        a.set_xlabel("top-k genes deleted")
        a.set_ylabel("share of separation removed")
        a.set_title(name, fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"deletion protocol: {', '.join(sorted(protocols))}", fontsize=10)
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="deletion_curve")
