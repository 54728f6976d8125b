"""``scelm.tl.rank_genes_elm``: marker genes from the equivalent linear mapping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .. import _checks, _keys
from .._core.blocks import BLOCK_ROWS, GeneColumns
from .._core.options import AGREEMENT_TOP, CONFIDENT, CORR_METHODS, DIRECTION_MIN, SCORES, TESTS, UNSTABLE, UNTESTED, CorrMethod, Score
from .._docs import doc_batch_device, doc_copy, doc_params
from .._input import check_adata, group_labels, source_matrix
from .._model import StoredModel


def _adjust(p: np.ndarray, tested: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values over the ``tested`` genes only (those the model reads), as scanpy
    corrects over the genes it tests; the others keep p = 1."""
    from scipy.stats import false_discovery_control

    out = np.ones_like(p)
    if method == "bonferroni":
        out[tested] = np.minimum(p[tested] * tested.sum(), 1.0)
    else:
        out[tested] = false_discovery_control(p[tested], method="bh")
    return out


def _expm1(adata: AnnData):
    """Undo the log of ``sc.pp.log1p``, in the base it recorded (``uns['log1p']['base']``,
    natural log when absent), as scanpy's ``rank_genes_groups`` does for fold changes."""
    base = adata.uns.get("log1p", {}).get("base")
    if base is None:
        return np.expm1
    return lambda x: np.expm1(x * np.log(float(base)))


def _recarray(columns: dict[str, np.ndarray]) -> np.recarray:
    return np.rec.fromarrays(list(columns.values()), names=list(columns.keys()))


@doc_params(doc_batch_device=doc_batch_device, doc_copy=doc_copy)
def rank_genes_elm(
    adata: AnnData,
    groupby: str,
    *,
    groups: str | Sequence[str] = "all",
    reference: str = "rest",
    within: str | None = None,
    score: Score = "separation",
    elm_key: str = _keys.DEFAULT_KEY,
    corr_method: CorrMethod = "benjamini-hochberg",
    key_added: str = _keys.DEFAULT_RANK_KEY,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
    copy: bool = False,
) -> AnnData | None:
    """Rank the genes that place each group where it is in the ELM embedding.

    Each cell's contributions ``C = J(x) * (x - x_ref)`` to the map ``obsm['X_{{elm_key}}']``
    (exact, summing to its coordinates; with an ensemble, the consensus's) are averaged per
    group and projected on ``u``, the unit vector from the reference's centroid to the
    group's centroid in that map. The result is written in
    the layout of :func:`scanpy.tl.rank_genes_groups`, so :func:`scanpy.get.rank_genes_groups_df`,
    ``sc.pl.rank_genes_groups_*`` and :func:`scanpy.tl.filter_rank_genes_groups` read it.

    Scores (all signed except ``magnitude``):

    ``'separation'`` (default)
        ``(mean C in group - mean C in reference) . u``; sums over genes exactly to the
        distance between the two centroids in the map: why the groups sit apart. It was the most
        accurate score on simulated data with known markers (see ``benchmarks/``).
    ``'position'``
        ``mean C in group . u``; sums exactly to the group centroid's coordinate along u:
        what the group's own expression does to place it.
    ``'magnitude'``
        ``|mean C in group|``, unsigned, as glass-box tools rank; genes that push the group
        in any direction come first.
    ``'weight'``
        ``mean J in group . u``: the mapping's weight alone, without expression.
    ``'expression'``
        ``((mean J in group + mean J in reference) / 2 * (mean x in group - mean x in
        reference)) . u``: the part of the separation due to each gene's change of mean
        expression, at the two groups' mean mapping (the rest is due to the mapping's
        change between the two sets of cells). It finds the genes that changed and moved
        the group: for condition shifts (``within=``) it recovered 94-100% of the simulated
        response genes, where ``'separation'`` recovered 54-67% with ``center=False`` and
        96-100% relative to the mean cell (the default; 10,000 cells, ``docs/integration.md``).

    Whatever the score, genes whose mean expression is lower in the group than in the
    reference are ranked after the others (``uns[key_added]['lower_in_group']`` flags them):
    a gene the group lacks must not come first because its absence moves the group.

    Parameters
    ----------
    adata
        AnnData with a fitted model (:func:`scelm.tl.parametric_umap`).
    groupby
        ``obs`` column with the groups; non-categorical values are treated as categories,
        NaN labels are left out with a warning, empty categories are skipped.
    groups
        ``'all'`` or the groups to rank.
    reference
        ``'rest'`` or a group to compare against.
    within
        An ``obs`` column (e.g. ``'cell_type'``): rank, inside each of its categories, the
        genes that move the cells of the one group in ``groups`` (e.g. ``'stim'``) away from
        the reference's cells of the same category (e.g. ``'ctrl'``): why a condition moved
        each cell type. The result has one field per category of ``within``, named by it
        (categories without cells of the group or of the reference are skipped), and the
        separation scores of each sum exactly to that category's shift in the map; pass
        ``score='expression'`` for the genes whose change of expression moved it.
    score
        One of ``'separation'``, ``'position'``, ``'magnitude'``, ``'weight'``, ``'expression'``.
    elm_key
        ``key_added`` of the fitted model. With an ensemble (``parametric_umap(n_models=k)``)
        the scores are the consensus's, which is the map shown; each score is the mean of
        the members' parts, whose standard error is stored in ``scores_se`` (as in
        instance-wise linearization of ensembles). How far the members agree is stored too
        (``stability``, ``member_agreement``, ``rank_sd``), and groups whose ranking is
        unstable get a warning.
    corr_method
        ``'benjamini-hochberg'`` or ``'bonferroni'``.
    key_added
        Where the result goes in ``uns``.
    {doc_batch_device}
    {doc_copy}

    Returns
    -------
    ``None`` or a copy. Sets ``adata.uns[key_added]`` with recarrays (one field per group,
    every gene of the matrix the model reads, in rank order; genes the model does not read
    score 0 with p-value 1) ``names``, ``scores``, ``logfoldchanges`` (log2 fold
    change of the group and reference means of ``expm1`` expression, in the base of
    ``uns['log1p']``, as scanpy computes it),
    ``pvals``, ``pvals_adj`` (corrected over the genes the model reads, the genes tested),
    ``lower_in_group``, ``scores_se`` (the standard error of the members' parts: a seed
    error given the data, with M - 1 degrees of freedom), ``rank_sd`` (standard deviation over the members of
    the gene's rank in their parts of the score; NaN for one model),
    ``top_frequency`` (how often a fit from another ``random_state`` is expected to keep
    the gene in its top 10; NaN for one model), and per group ``centroid_distance`` (in the
    map), ``direction_agreement`` (the length of the mean of the members' unit directions
    from the reference's centroid to the group's: below 0.8 the direction the scores
    project on is ill-defined, the ranking depends on the seed, and a warning is logged),
    ``member_agreement`` (the mean pairwise Jaccard index of the members' top-10 genes),
    ``stability`` (the expected Jaccard index of the top-10 genes with a fit from another
    ``random_state``, estimated from disjoint halves of the members rescaled to the
    ensemble's size; below 0.55 a warning is logged) and ``n_confident`` (how many genes
    have ``top_frequency`` of at least 0.9: the group's confident top genes, a set whose
    size varies); all but the distance NaN for one model; plus ``params``. ``pvals`` test the ranked
    score: for ``'separation'`` Welch's t-test of the per-cell projected contribution
    ``C_i . u`` between group and reference, for ``'position'`` the one-sample t-test of
    ``C_i . u`` in the group; ``'magnitude'``, ``'weight'`` and ``'expression'`` have none (NaN;
    ``params['pvals']`` says why). Caveat: ``u`` and the embedding are fitted on the same
    cells, so these p-values are optimistic; use them to order genes, not as calibrated
    error rates.
    """
    from .._core.device import resolve_device

    check_adata(adata)
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
    if corr_method not in CORR_METHODS:
        raise ValueError(f"corr_method must be one of {CORR_METHODS}, got {corr_method!r}.")
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    ranking = _ELMRanking(adata, groupby, groups, reference, elm_key, within)
    start = logg.info(f"ranking genes with the ELM ({score}, consensus of {ranking.model.n_members} model(s))")
    ranking.compute(device=resolve_device(device), batch_size=chunk_size)
    result = ranking.result(score, corr_method)
    target = adata.copy() if copy else adata
    target.uns[key_added] = result
    logg.info("    finished", time=start, deep=f"added\n    '{key_added}', ranked genes (adata.uns)")
    return target if copy else None


COLUMNS = ("names", "scores", "logfoldchanges", "pvals", "pvals_adj", "lower_in_group", "scores_se", "rank_sd", "top_frequency")
SUMMARIES = ("centroid_distance", "direction_agreement", "member_agreement", "stability", "n_confident")
# The call that fitted a model (by its params['method']), which more members would steady.
REFIT = {"explain_embedding": "explain_embedding", "tsne": "parametric_tsne"}


class _ELMRanking:
    """Every gene's ELM scores for each group against its reference, in scanpy's layout
    (the role ``_RankGenes`` plays for :func:`scanpy.tl.rank_genes_groups`)."""

    def __init__(self, adata: AnnData, groupby: str, groups, reference: str, elm_key: str, within: str | None = None):
        self.adata, self.groupby, self.reference, self.elm_key, self.within = adata, groupby, reference, elm_key, within
        self.model = StoredModel.from_adata(adata, elm_key)
        labels = group_labels(adata, groupby)
        if within is None:
            self.units, self.code = _units(labels)
            self.contrasts = {g: self._contrast(g) for g in self._wanted(groups, self.units)}
        else:
            self.group_name = self._one_group(groups, labels)
            self.units, self.code, self.contrasts = self._within_contrasts(labels, group_labels(adata, within))
        self.sizes = np.bincount(self.code[self.code >= 0], minlength=len(self.units))

    def _wanted(self, groups, present: list[str]) -> list[str]:
        groupby, reference = self.groupby, self.reference
        if isinstance(groups, str):
            groups = present if groups == "all" else [groups]
        wanted = [str(g) for g in groups]
        if unknown := [g for g in wanted if g not in present]:
            raise ValueError(f"groups {unknown} are not non-empty categories of {groupby!r}: {present}.")
        if reference != "rest":
            if reference not in present:
                raise ValueError(f"reference={reference!r} is not a non-empty category of {groupby!r}: {present}.")
            wanted = [g for g in wanted if g != reference]
        if len(present) < 2 or not wanted:
            raise ValueError(f"Need at least two non-empty groups in {groupby!r} to rank genes.")
        return wanted

    def _contrast(self, g: str) -> tuple[int, list[int]]:
        """Unit of group ``g`` and the units of its reference."""
        gi = self.units.index(g)
        rest = [i for i in range(len(self.units)) if i != gi] if self.reference == "rest" else [self.units.index(self.reference)]
        return gi, rest

    def _one_group(self, groups, labels: pd.Categorical) -> str:
        group = groups if isinstance(groups, str) else (groups[0] if len(groups) == 1 else None)
        if group is None or group == "all":
            raise ValueError(f"within={self.within!r} ranks one group against its reference inside each category: pass "
                             f"groups= one category of {self.groupby!r}, e.g. groups={str(labels.categories[-1])!r}.")
        self._wanted([str(group)], [str(c) for c in labels.categories])  # checks group and reference exist
        return str(group)

    def _within_contrasts(self, labels: pd.Categorical, within: pd.Categorical):
        """Units = (category of ``within``, group) pairs with cells; the contrast of each
        category of ``within`` that holds cells of the group and of its reference."""
        n_groups = len(labels.categories)
        both = (labels.codes >= 0) & (within.codes >= 0)
        pair = np.where(both, within.codes.astype(np.int64) * n_groups + labels.codes, -1)
        present = np.unique(pair[pair >= 0])
        code = np.where(pair >= 0, np.searchsorted(present, pair), -1)
        unit = {(str(within.categories[p // n_groups]), str(labels.categories[p % n_groups])): i for i, p in enumerate(present)}
        contrasts, skipped = {}, []
        for c in map(str, within.categories):
            gi = unit.get((c, self.group_name))
            rest = [i for (cc, g), i in unit.items() if cc == c and g != self.group_name and self.reference in ("rest", g)]
            if gi is None or not rest:
                skipped.append(c)
            else:
                contrasts[c] = (gi, rest)
        if skipped:
            logg.info(f"    skipping {self.within!r} categories without cells of {self.group_name!r} or its reference: {skipped}")
        if not contrasts:
            raise ValueError(f"No category of {self.within!r} holds cells of both {self.group_name!r} and its reference "
                             f"{self.reference!r} in {self.groupby!r}.")
        return [f"{c}:{g}" for (c, g) in unit], code, contrasts

    def compute(self, *, device, batch_size: int) -> None:
        """Stream the contributions' unit moments and the expression's unit means."""
        from ._moments import group_means, group_moments

        self.moments = group_moments(self.adata, self.model, self.code, len(self.units), device=device, batch_size=batch_size)
        # Every gene of the source matrix is stored (scanpy's plots need them all): genes the
        # model does not read have score 0 and p-value 1; fold changes come from expression.
        self.layer, self.use_raw = self.model.source(self.adata)
        src_X, src_genes = source_matrix(self.adata, layer=self.layer, use_raw=self.use_raw)
        self.genes = np.asarray(src_genes)
        self.pos = pd.Index(self.genes).get_indexer(self.model.genes)
        self.means = group_means(GeneColumns(src_X, np.arange(len(self.genes))), self.code, len(self.units), chunk=BLOCK_ROWS)

    def group(self, field: str, score: str, corr_method: str) -> tuple[dict, dict]:
        """One contrast's columns in rank order, and its summaries (distance, agreement,
        stability, whether its group or reference is too small for p-values)."""
        from scipy import stats

        from .._core.ranking import group_scores, member_agreement, rank_order, seed_agreement

        gi, rest = self.contrasts[field]
        s = group_scores(self.moments.pooled([gi]), self.moments.pooled(rest), self.model.n_members, self.model.n_components)
        n_genes, weights = len(self.genes), self.sizes[rest]
        mean_g, mean_r = self.means[gi], (self.means[rest] * weights[:, None]).sum(0) / weights.sum()
        parts = s.members.member_parts(score).cpu().numpy()  # (M, model genes); the score is their mean
        n_members = parts.shape[0]
        values, se = np.zeros(n_genes), np.zeros(n_genes)
        values[self.pos] = s.scores[score]
        if n_members > 1:
            se[self.pos] = parts.std(0, ddof=1) / np.sqrt(n_members)
        small = min(int(self.sizes[gi]), int(weights.sum())) < 2
        tested = np.zeros(n_genes, dtype=bool)
        tested[self.pos] = True
        if score in s.tests:
            pvals = np.ones(n_genes)
            if not small:
                t, dof = s.tests[score]
                pvals[self.pos] = 2.0 * stats.t.sf(np.abs(t), dof)
            pvals_adj = _adjust(pvals, tested, corr_method)
        else:
            pvals = pvals_adj = np.full(n_genes, np.nan)
        lower = mean_g < mean_r
        order = rank_order(values, lower)  # expressed-or-higher genes first, then by score
        agree, rank_sd = member_agreement(rank_order(parts, lower[self.pos]), AGREEMENT_TOP)
        seeds = seed_agreement(s.members, score, lower[self.pos], AGREEMENT_TOP)
        full_rank_sd, frequency = np.full(n_genes, np.nan), np.full(n_genes, np.nan if n_members < 2 else 0.0)
        full_rank_sd[self.pos], frequency[self.pos] = rank_sd, seeds.top_frequency
        expm1 = _expm1(self.adata)
        columns = dict(
            names=self.genes[order].astype(object), scores=values[order].astype(np.float32),
            logfoldchanges=np.log2((expm1(mean_g) + 1e-9) / (expm1(mean_r) + 1e-9))[order].astype(np.float32),
            pvals=pvals[order], pvals_adj=pvals_adj[order], lower_in_group=lower[order],
            scores_se=se[order].astype(np.float32), rank_sd=full_rank_sd[order].astype(np.float32),
            top_frequency=frequency[order].astype(np.float32),
        )
        summary = dict(
            centroid_distance=s.distance, direction_agreement=s.direction_agreement, member_agreement=agree,
            stability=seeds.stability, n_confident=float(np.sum(frequency >= CONFIDENT)) if n_members > 1 else np.nan,
            small=small,
        )
        return columns, summary

    def result(self, score: str, corr_method: str) -> dict:
        """Every group's columns as scanpy's recarrays, the per-group summaries, params."""
        per_group = {field: self.group(field, score, corr_method) for field in self.contrasts}
        result = {name: _recarray({g: cols[name] for g, (cols, _) in per_group.items()}) for name in COLUMNS}
        for name in SUMMARIES:
            result[name] = _recarray({g: np.array([summary[name]], dtype=np.float32) for g, (_, summary) in per_group.items()})
        if small := [g for g, (_, summary) in per_group.items() if summary["small"]]:
            logg.warning(f"groups {small} (or their reference) have fewer than 2 cells: p-values set to 1.")
        refit = REFIT.get(self.model.params.get("method"), "parametric_umap")
        if unstable := [g for g, (_, summary) in per_group.items() if summary["stability"] < UNSTABLE]:
            logg.warning(
                f"The top {AGREEMENT_TOP} genes of {unstable} are unstable: a fit with another random_state is expected "
                f"to share fewer than {UNSTABLE:.0%} of them (stability, Jaccard index). Read their order with care, or fit "
                f"more models ({refit}(n_models=...)); per-gene rank spread: uns[key_added]['rank_sd']."
            )
        if ill_defined := [g for g, (_, summary) in per_group.items() if summary["direction_agreement"] < DIRECTION_MIN]:
            remedy = (f"Read them with care, or fit more models ({refit}(n_models=...))." if self.within is not None
                      else "Rank them against one neighbouring group (reference=) instead.")
            logg.warning(
                f"The models disagree on which side of their reference {ill_defined} sit in the map (direction_agreement "
                f"below {DIRECTION_MIN}): the direction their scores are measured along is ill-defined, so their ranking "
                f"depends on the seed. {remedy}"
            )
        result["params"] = dict(
            groupby=self.groupby, reference=self.reference, method="elm", use_raw=self.use_raw, layer=self.layer,
            corr_method=corr_method, score=score, n_models=self.model.n_members, elm_key=self.elm_key,
            pvals=TESTS.get(score) or UNTESTED[score],
            **({} if self.within is None else dict(within=self.within, group=self.group_name)),
        )
        return result


def _units(labels: pd.Categorical) -> tuple[list[str], np.ndarray]:
    """The non-empty categories of ``labels`` and each cell's index among them (-1: NaN)."""
    counts = pd.Series(labels).value_counts()
    present = [c for c in labels.categories if counts.get(c, 0) > 0]
    if skipped := [c for c in labels.categories if counts.get(c, 0) == 0]:
        logg.info(f"    skipping categories with no cells: {skipped}")
    return [str(c) for c in present], np.array(pd.Categorical(labels, categories=present).codes)


def contrast_masks(adata: AnnData, params, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Cells of one field of a ranking and of its reference, from the ranking's ``params``
    (``groupby``, ``reference``; for a ``within`` ranking, the field is a category of
    ``within`` and the group is ``params['group']``)."""
    groupby, reference = params["groupby"], str(params.get("reference", "rest"))
    labels = np.asarray(group_labels(adata, groupby).astype(object))
    if "within" in params:
        inside = np.asarray(group_labels(adata, params["within"]).astype(object)) == field
        group = str(params["group"])
    else:
        inside, group = np.ones(adata.n_obs, dtype=bool), field
    in_group = inside & (labels == group)
    in_ref = inside & ((~(labels == group) & pd.notna(labels)) if reference == "rest" else labels == reference)
    if not in_group.any() or not in_ref.any():
        raise ValueError(f"group {field!r} or its reference {reference!r} has no cells in adata.obs[{groupby!r}].")
    return in_group, in_ref
