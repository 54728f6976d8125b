"""Model diagnostics: the training loss and the exactness of the decomposition."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys, get
from .._docs import doc_params
from .._model import StoredModel
from ._utils import doc_show, finish, panels


@doc_params(doc_show=doc_show)
def training(
    adata: AnnData,
    *,
    elm_key: str = _keys.DEFAULT_KEY,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """UMAP cross-entropy per epoch of the fit stored in ``uns[elm_key]``, one line per model
    of the ensemble (the first, which gives the embedding, drawn solid).

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    elm_key
        ``key_added`` of the model.
    ax
        Axes to draw into.
    {doc_show}
    """
    history = StoredModel.from_adata(adata, elm_key).loss_history
    if history.size == 0:
        raise ValueError(f"adata.uns[{elm_key!r}] has no loss history.")
    fig, axes = panels(1, ncols=1, panel_size=(5, 3.5), ax=ax)
    for i, member in enumerate(history):  # one line per model of the ensemble
        axes[0].plot(np.arange(1, member.size + 1), member, lw=1, alpha=1.0 if i == 0 else 0.5)
    axes[0].set_xlabel("epoch (one pass over all cells)")
    axes[0].set_ylabel("UMAP cross-entropy per edge weight")
    axes[0].set_title(f"training of {elm_key!r}: final {history[0, -1]:.4g}")
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="training")


@doc_params(doc_show=doc_show)
def reconstruction(
    adata: AnnData,
    *,
    elm_key: str = _keys.DEFAULT_KEY,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Sum of contributions against the embedding, per axis, with the largest error printed.

    Points lie on the diagonal up to float32 rounding: the decomposition is exact.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    elm_key
        ``key_added`` of the model.
    {doc_show}
    """
    Y = np.asarray(adata.obsm[_keys.embedding_key(elm_key)]) if _keys.embedding_key(elm_key) in adata.obsm else None
    if Y is None:
        raise KeyError(f"No embedding adata.obsm['X_{elm_key}'].")
    total = get.contributions(adata, elm_key=elm_key).sum(-1)
    fig, axes = panels(Y.shape[1], ncols=Y.shape[1], panel_size=(3.8, 3.6))
    for k, a in enumerate(axes):
        err = float(np.abs(total[:, k] - Y[:, k]).max())
        a.scatter(Y[:, k], total[:, k], s=6, color="#4d4d4d", linewidths=0, rasterized=True)
        lims = [min(Y[:, k].min(), total[:, k].min()), max(Y[:, k].max(), total[:, k].max())]
        a.plot(lims, lims, color="#b2182b", lw=0.8)
        a.set_xlabel(f"{elm_key}{k + 1} (embedding)")
        a.set_ylabel("sum of gene contributions")
        a.text(0.04, 0.94, f"max |error| = {err:.1e}", transform=a.transAxes, va="top", fontsize=9)
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="reconstruction")


@doc_params(doc_show=doc_show)
def fidelity(
    adata: AnnData,
    elm_key: str = "elm_umap",
    *,
    color: str | None = None,
    max_arrows: int = 2000,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """How well an :func:`scelm.tl.explain_embedding` encoder reproduces the map it explains.

    Three panels: the map, the encoder's fitted map (what the explanations are exact for),
    and the residual arrows from each cell's place in the map to its fitted place
    (held-out cells, which the encoder never saw, in red). Titles give R^2.

    Parameters
    ----------
    adata
        AnnData with :func:`scelm.tl.explain_embedding` results.
    elm_key
        Its ``key_added``.
    color
        Categorical ``obs`` column for the first two panels.
    max_arrows
        Residual arrows drawn at most (a fixed random subset).
    {doc_show}
    """
    from ._utils import group_colors

    entry = adata.uns.get(elm_key, {})
    if "fidelity" not in entry or "basis" not in entry.get("params", {}):
        raise KeyError(f"No explain_embedding result in adata.uns[{elm_key!r}]; run scelm.tl.explain_embedding first.")
    Y = np.asarray(adata.obsm[entry["params"]["basis"]])[:, :2]
    F = np.asarray(adata.obsm[_keys.embedding_key(elm_key)])[:, :2]
    held = np.asarray(adata.obs[f"{elm_key}_held_out"], dtype=bool)
    fid = entry["fidelity"]
    fig, axes = panels(3, ncols=3, panel_size=(4.2, 4.0))
    if color is None:
        colors = np.full(adata.n_obs, "#888888")
    else:
        labels, palette = group_colors(adata, color)
        colors = np.asarray([palette[c] if c in palette else "#cccccc" for c in labels.astype(object)])
    for a, coords, title in ((axes[0], Y, f"map: {entry['params']['basis']}"), (axes[1], F, f"fitted map ({elm_key})")):
        a.scatter(coords[:, 0], coords[:, 1], s=6, c=colors, linewidths=0, rasterized=True)
        a.set_title(title, fontsize=10)
    shown = np.random.default_rng(0).permutation(adata.n_obs)[:max_arrows]
    for rows, col in ((shown[~held[shown]], "#999999"), (shown[held[shown]], "#b2182b")):
        d = F[rows] - Y[rows]
        axes[2].quiver(Y[rows, 0], Y[rows, 1], d[:, 0], d[:, 1], angles="xy", scale_units="xy", scale=1, width=0.002, color=col)
    axes[2].set_title(f"residuals: R^2 {fid['r2_train']:.3f} train, {fid['r2_held_out']:.3f} held out (red)", fontsize=9)
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="fidelity")
