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
