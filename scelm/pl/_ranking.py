"""Plots of rank_genes_elm results: ranked scores, dot plot, comparison with DE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .. import _keys
from .._core.options import CONFIDENT, DIRECTION_MIN, UNSTABLE
from .._docs import doc_params
from ._utils import check_groups, doc_show, finish, panels, ranked_result


@doc_params(doc_show=doc_show)
def rank_genes_elm(
    adata: AnnData,
    *,
    groups: Sequence[str] | None = None,
    n_genes: int = 10,
    key: str = _keys.DEFAULT_RANK_KEY,
    ncols: int = 4,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Per-group panels of the top genes with their signed ELM scores.

    Bars are the scores (positive: the gene moves the group away from its reference);
    error bars are the standard error over the models of an ensemble, when there is one.
    Genes lower in the group than in its reference are hatched. With an ensemble, each
    gene's label carries the standard deviation of its rank over the models, the genes a
    fit from another seed is expected to keep in its top 10 at least 9 times in 10 (the
    confident top genes, ``top_frequency``) are in bold, and each title gives the ranking's
    ``stability`` (expected top-10 agreement with another seed, see
    :func:`scelm.tl.rank_genes_elm`; red below 0.55, where it warns) and says when the
    group's direction in the map is ill-defined (the models disagree on which side of its
    reference the group sits: the ranking then depends on the seed).

    Parameters
    ----------
    adata
        AnnData with :func:`scelm.tl.rank_genes_elm` results.
    groups
        Groups to show; default all.
    n_genes
        Genes per panel.
    key
        ``key_added`` of the ranking.
    ncols
        Panels per row.
    ax
        Axes to draw into, when one group is drawn.
    {doc_show}
    """
    result = ranked_result(adata, key)
    groups = check_groups(result, groups)
    fig, axes = panels(len(groups), ncols=ncols, panel_size=(3.6, 0.28 * n_genes + 1.2), ax=ax)
    has_se = "scores_se" in result and any(np.asarray(result["scores_se"][g][:n_genes]).max() > 0 for g in groups)
    for a, g in zip(axes, groups):
        names = list(result["names"][g][:n_genes])[::-1]
        scores = np.asarray(result["scores"][g][:n_genes], dtype=float)[::-1]
        se = np.asarray(result["scores_se"][g][:n_genes], dtype=float)[::-1] if has_se else None
        lower = np.asarray(result["lower_in_group"][g][:n_genes])[::-1] if "lower_in_group" in result else np.zeros(len(names), bool)
        bars = a.barh(range(len(names)), scores, xerr=se, color=np.where(scores >= 0, "#b2182b", "#2166ac"),
                      ecolor="k", capsize=2)
        for bar, low in zip(bars, lower):
            if low:
                bar.set_hatch("//")
        rank_sd, frequency = (_column(result, name, g, len(names))[::-1] for name in ("rank_sd", "top_frequency"))
        a.set_yticks(range(len(names)), [n if np.isnan(sd) else f"{n} (±{sd:.0f})" for n, sd in zip(names, rank_sd)], fontsize=8)
        for label, f in zip(a.get_yticklabels(), frequency):
            label.set_fontweight("bold" if f >= CONFIDENT else "normal")
        a.axvline(0, color="k", lw=0.6)
        _title(a, g, result)
        a.set_xlabel(f"ELM {result['params'].get('score', 'score')}")
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="rank_genes_elm")


def _column(result, name: str, group: str, n: int) -> np.ndarray:
    """The first ``n`` values of a per-gene column, NaN where the ranking lacks it."""
    return np.asarray(result[name][group][:n], dtype=float) if name in result else np.full(n, np.nan)


def _title(ax, group: str, result) -> None:
    """The group, its stability and confident genes, and a flag when its direction is
    ill-defined (red when either needs care)."""
    summary = {k: float(result[k][group][0]) for k in ("stability", "n_confident", "direction_agreement") if k in result}
    lines, warn = [group], False
    if np.isfinite(stable := summary.get("stability", np.nan)):
        lines.append(f"stability {stable:.2f}, {summary['n_confident']:.0f} confident")
        warn = stable < UNSTABLE
    if summary.get("direction_agreement", np.inf) < DIRECTION_MIN:
        lines.append("direction ill-defined")
        warn = True
    ax.set_title("\n".join(lines), fontsize=10, color="#b2182b" if warn else "k")


def rank_genes_elm_dotplot(
    adata: AnnData,
    *,
    groups: Sequence[str] | None = None,
    n_genes: int = 4,
    key: str = _keys.DEFAULT_RANK_KEY,
    cmap: str = "RdBu_r",
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
    **kwds,
):
    """Groups x top genes: colour is the ELM score (diverging, centred at 0), size the
    fraction of cells expressing the gene.

    Built on scanpy's :class:`~scanpy.pl.DotPlot` through
    :func:`scanpy.pl.rank_genes_groups_dotplot` with ``values_to_plot='scores'``, so its
    options (``dendrogram``, ``standard_scale``, ``var_group_rotation`` ...) pass through
    ``**kwds``. ``show``, ``save`` and ``return_fig`` follow scanpy.
    """
    import scanpy as sc

    result = ranked_result(adata, key)
    groups = check_groups(result, groups)
    vmax = max(float(np.abs(np.asarray(result["scores"][g][:n_genes])).max()) for g in groups) or 1.0
    kwds.setdefault("dendrogram", False)
    kwds.setdefault("colorbar_title", f"ELM {result['params'].get('score', 'score')}")
    return sc.pl.rank_genes_groups_dotplot(
        adata, groups=groups, n_genes=n_genes, key=key, values_to_plot="scores", cmap=cmap,
        vmin=-vmax, vmax=vmax, vcenter=0.0, show=show, save=save, return_fig=return_fig, **kwds,
    )


@doc_params(doc_show=doc_show)
def compare_de(
    adata: AnnData,
    *,
    key: str = _keys.DEFAULT_RANK_KEY,
    de_key: str = "rank_genes_groups",
    n_genes: int = 10,
    groups: Sequence[str] | None = None,
    ncols: int = 3,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
):
    """Per group, the top genes ELM and differential expression share, and those each
    finds alone.

    Parameters
    ----------
    adata
        AnnData with :func:`scelm.tl.rank_genes_elm` and :func:`scanpy.tl.rank_genes_groups`
        results for the same ``groupby``.
    key, de_key
        Their ``uns`` keys.
    n_genes
        Top genes compared per group.
    groups
        Groups to show; default all groups in both.
    ncols
        Panels per row.
    ax
        Axes to draw into, when one group is drawn.
    {doc_show}
    """
    elm, de = ranked_result(adata, key), ranked_result(adata, de_key)
    by_elm, by_de = elm["params"].get("groupby"), de["params"].get("groupby")
    if by_elm != by_de:
        raise ValueError(f"{key!r} ranks {by_elm!r} but {de_key!r} ranks {by_de!r}.")
    common = [g for g in elm["names"].dtype.names if g in de["names"].dtype.names]
    groups = check_groups({"names": np.rec.fromarrays([[0]] * len(common), names=common)}, groups) if common else []
    if not groups:
        raise ValueError(f"{key!r} and {de_key!r} have no group in common.")
    fig, axes = panels(len(groups), ncols=ncols, panel_size=(4.6, 0.22 * n_genes + 1.4), ax=ax)
    for a, g in zip(axes, groups):
        top_elm = list(elm["names"][g][:n_genes])
        top_de = list(de["names"][g][:n_genes])
        columns = [
            ("ELM only", [x for x in top_elm if x not in top_de], "#b2182b"),
            ("both", [x for x in top_elm if x in top_de], "#4d4d4d"),
            ("DE only", [x for x in top_de if x not in top_elm], "#2166ac"),
        ]
        a.set_xlim(0, 3), a.set_ylim(n_genes + 0.5, -1)
        a.axis("off")
        for i, (title, genes, color) in enumerate(columns):
            a.text(i + 0.5, -0.5, f"{title} ({len(genes)})", ha="center", fontweight="bold", color=color, fontsize=9)
            for j, gene in enumerate(genes):
                a.text(i + 0.5, j + 0.6, gene, ha="center", color=color, fontsize=8)
        a.set_title(f"{g}: {len(columns[1][1])}/{n_genes} shared", fontsize=10)
    fig.tight_layout()
    return finish(fig, axes, show=show, return_fig=return_fig, save=save, name="compare_de")
