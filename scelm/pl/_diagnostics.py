"""Model diagnostics: the training loss and the exactness of the decomposition."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._core.blocks import BLOCK_ROWS
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
    """The training curve of the fit stored in ``uns[elm_key]``, one line per model of the
    ensemble: UMAP's cross-entropy per epoch for :func:`scelm.tl.parametric_umap`, t-SNE's
    KL divergence (estimated from the step's negatives) for :func:`scelm.tl.parametric_tsne`,
    the held-out mean squared error per check for :func:`scelm.tl.explain_embedding`.

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
    stored = StoredModel.from_adata(adata, elm_key)
    history = stored.loss_history
    if history.size == 0:
        raise ValueError(f"adata.uns[{elm_key!r}] has no loss history.")
    fig, axes = panels(1, ncols=1, panel_size=(5, 3.5), ax=ax)
    if stored.params.get("method") == "explain_embedding":
        steps = (np.arange(history.shape[1]) + 1) * 50
        xlabel, ylabel = "regression step", "held-out mean squared error"
    else:
        steps = np.arange(1, history.shape[1] + 1)
        loss = "t-SNE KL divergence (estimated)" if stored.params.get("method") == "tsne" else "UMAP cross-entropy per edge weight"
        xlabel, ylabel = "epoch (one pass over all cells)", loss
    for member in history:  # one line per model of the ensemble
        axes[0].plot(steps, member, lw=1, alpha=0.7)
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    axes[0].set_title(f"training of {elm_key!r}: final {history[:, -1].mean():.4g} (mean over models)")
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
    key = _keys.embedding_key(elm_key)
    if key not in adata.obsm:
        raise KeyError(f"No embedding adata.obsm[{key!r}].")
    Y = np.asarray(adata.obsm[key])
    model = StoredModel.from_adata(adata, elm_key)
    total = np.empty_like(Y, dtype=np.float32)  # streamed: one batch of contributions at a time
    for b in model.iter_batches(adata, elm_key, model.input_matrix(adata), device="auto", batch_size=BLOCK_ROWS):
        total[b.start : b.stop] = b.contributions().sum(-1).cpu().numpy()
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
    if _keys.FIDELITY not in entry or "basis" not in entry.get("params", {}):
        raise KeyError(f"No explain_embedding result in adata.uns[{elm_key!r}]; run scelm.tl.explain_embedding first.")
    Y = np.asarray(adata.obsm[entry["params"]["basis"]])[:, :2]
    # The fitted map in the map's own frame (a centred fit stores it translated).
    F = (np.asarray(adata.obsm[_keys.embedding_key(elm_key)]) + np.asarray(entry["params"].get("offset", 0.0)))[:, :2]
    held = np.asarray(adata.obs[_keys.held_out_key(elm_key)], dtype=bool)
    fid = entry[_keys.FIDELITY]
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
