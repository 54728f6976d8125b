"""Simulated counts with known marker genes per cell type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


def simulate_markers(
    n_cells: int = 2000,
    n_genes: int = 1000,
    *,
    n_types: int = 6,
    n_markers: int = 10,
    n_programs: int = 6,
    program_size: int = 20,
    effect: float = 1.0,
    dispersion: float = 5.0,
    library_sd: float = 0.3,
    n_batches: int = 1,
    batch_genes: int = 60,
    batch_effect: float = 0.5,
    n_donors: int | None = None,
    conditions: tuple[str, ...] | None = None,
    n_response: int = 8,
    normalize: bool = True,
    random_state: int = 0,
) -> tuple[AnnData, dict[str, list[str]]]:
    """Negative-binomial counts with known markers per cell type, and optionally batches,
    donors and conditions with known batch and response genes.

    Every type gets ``n_markers`` genes of its own, up-regulated by ``exp(effect)``-fold
    (effects drawn in [0.5, 1.5] x ``effect`` on the log scale). On top, ``n_programs``
    gene programs are each switched on in two or three types, so one-vs-rest contrasts
    see shared, non-specific signal too. Library sizes vary log-normally.

    With ``n_batches > 1``, cells come from ``n_donors`` donors (default: 2 per batch),
    dealt to the batches in turn; each batch draws its own mix of types, and its own
    log-fold shift (up or down, about ``batch_effect``) of ``batch_genes`` genes shared by
    every type: a technical effect that integration should remove. With ``conditions``
    (e.g. ``('ctrl', 'stim')``), every donor gives cells in each condition, and each type
    responds to every condition after the first with ``n_response`` genes of its own (a
    ``effect``-fold change): the biology a condition comparison should find.

    Parameters
    ----------
    n_cells, n_genes
        Size of the matrix.
    n_types
        Number of cell types (``obs['cell_type']``), with unequal sizes.
    n_markers
        Own marker genes per type: the ground truth.
    n_programs, program_size
        Shared programs and their number of genes (disjoint from the markers).
    effect
        Mean log fold change of markers, programs and responses.
    dispersion
        Negative-binomial shape (smaller is noisier).
    library_sd
        Standard deviation of log library size.
    n_batches, batch_genes, batch_effect
        Batches (``obs['batch']``), the genes each shifts and the size of the shift.
    n_donors
        Donors (``obs['donor']``), nested in batches.
    conditions
        Condition names (``obs['condition']``); the first is the reference.
    n_response
        Response genes per type and condition.
    normalize
        If True, ``X`` is ``log1p`` of counts normalised to 10,000 per cell and the counts
        stay in ``layers['counts']``; else ``X`` holds counts.
    random_state
        Seed.

    Returns
    -------
    ``(adata, markers)``: the AnnData (``obs['cell_type']``, ``var['marker_of']``) and a
    dict from each type to its true marker genes, strongest first. With batches or
    conditions, ``var['batch_gene']`` and ``var['response_of']`` mark the truth, and
    ``adata.uns['simulation']`` holds ``batch_genes`` and ``response`` (type -> genes).
    """
    design = Design(n_batches, batch_genes, batch_effect, n_donors, tuple(conditions or ()), n_response, effect)
    obs, var, markers, counts = simulated_blocks(
        n_cells, n_genes, n_types=n_types, n_markers=n_markers, n_programs=n_programs, program_size=program_size,
        effect=effect, dispersion=dispersion, library_sd=library_sd, random_state=random_state, design=design,
    )
    X = sparse.vstack(list(counts), format="csr")
    adata = AnnData(X=X, obs=obs, var=var)
    if design.active:
        adata.uns["simulation"] = {
            "batch_genes": var.index[var["batch_gene"]].to_numpy(dtype=object),
            "response": {t: var.index[var["response_of"] == t].to_numpy(dtype=object) for t in obs["cell_type"].cat.categories
                         if (var["response_of"] == t).any()},
        }
    if normalize:
        adata.layers["counts"] = X.copy()
        adata.X = log_normalize(X)
    return adata, markers


@dataclass(frozen=True)
class Design:
    """Batches, donors and conditions of a simulation (inactive: one batch, no condition)."""

    n_batches: int = 1
    batch_genes: int = 60
    batch_effect: float = 0.5
    n_donors: int | None = None
    conditions: tuple[str, ...] = ()
    n_response: int = 8
    effect: float = 1.0

    @property
    def active(self) -> bool:
        return self.n_batches > 1 or len(self.conditions) > 1

    def extra_genes(self, n_types: int) -> int:
        return (self.batch_genes if self.n_batches > 1 else 0) + n_types * self.n_response * max(len(self.conditions) - 1, 0)


def simulated_blocks(n_cells: int, n_genes: int, *, n_types: int = 6, n_markers: int = 10, n_programs: int = 6,
                     program_size: int = 20, effect: float = 1.0, dispersion: float = 5.0, library_sd: float = 0.3,
                     random_state: int = 0, design: Design | None = None):
    """:func:`simulate_markers`' design and its counts as a generator of CSR blocks of
    cells, for data too large to hold twice (``benchmarks/bench_scale.py`` writes a million
    cells block by block). Returns ``(obs, var, markers, blocks)``."""
    design = design or Design()
    rng = np.random.default_rng(random_state)
    n_needed = n_types * n_markers + n_programs * program_size + design.extra_genes(n_types)
    if n_needed > n_genes:
        raise ValueError(f"n_genes={n_genes} is too small for {n_needed} marker, program, batch and response genes.")
    genes = np.array([f"gene{i:05d}" for i in range(n_genes)])
    types = [f"type{t}" for t in range(n_types)]
    weights = rng.dirichlet(np.full(n_types, 4.0))
    labels = rng.choice(n_types, size=n_cells, p=weights)

    base = rng.gamma(shape=0.6, scale=1.0, size=n_genes) + 0.02  # mean counts per gene at 1x library
    logfc = np.zeros((n_types, n_genes))
    order = rng.permutation(n_genes)
    markers: dict[str, list[str]] = {}
    marker_of = np.full(n_genes, "", dtype=object)
    for t in range(n_types):
        idx = order[t * n_markers : (t + 1) * n_markers]
        fc = effect * rng.uniform(0.5, 1.5, size=n_markers)
        logfc[t, idx] = fc
        base[idx] = np.maximum(base[idx], 0.3)  # markers are detectable genes
        markers[types[t]] = genes[idx[np.argsort(-fc)]].tolist()
        marker_of[idx] = types[t]
    offset = n_types * n_markers
    for p in range(n_programs):
        idx = order[offset + p * program_size : offset + (p + 1) * program_size]
        users = rng.choice(n_types, size=rng.integers(2, 4), replace=False)
        logfc[np.ix_(users, idx)] += effect * rng.uniform(0.5, 1.5, size=(len(users), program_size))

    library = np.exp(rng.normal(0.0, library_sd, size=n_cells)) * 3.0
    obs = pd.DataFrame({"cell_type": pd.Categorical([types[i] for i in labels], categories=types)},
                       index=[f"cell{i:06d}" for i in range(n_cells)])
    var = pd.DataFrame({"marker_of": marker_of.astype(str)}, index=genes)
    if design.active:
        # Every cell's state (type, donor, condition) indexes one row of the log-fold table.
        labels, logfc = _batches_and_conditions(rng, design, labels, weights, logfc, base, order[offset + n_programs * program_size:],
                                                obs, var, types)
    return obs, var, markers, _count_blocks(rng, labels, library, base, logfc, dispersion)


def _batches_and_conditions(rng, design: Design, labels, weights, logfc, base, free, obs, var, types):
    """Add ``batch``, ``donor`` and ``condition`` to ``obs`` and the truth to ``var``; return
    each cell's state and the log-fold table of the states (type x donor x condition)."""
    n_cells, (n_types, n_genes) = len(labels), logfc.shape
    n_batches = design.n_batches
    n_donors = design.n_donors or 2 * n_batches
    conditions = design.conditions or ("none",)
    donor = rng.integers(0, n_donors, size=n_cells)
    batch_of_donor = np.arange(n_donors) % n_batches
    if n_batches > 1:  # each batch its own mix of types
        mixes = rng.dirichlet(np.full(n_types, 2.0), size=n_batches) * 0.5 + weights * 0.5
        labels = np.array([rng.choice(n_types, p=mixes[batch_of_donor[d]]) for d in donor])
    condition = rng.integers(0, len(conditions), size=n_cells)
    batch_fc = np.zeros((n_batches, n_genes))
    is_batch_gene = np.zeros(n_genes, dtype=bool)
    used = 0
    if n_batches > 1:
        idx = free[: design.batch_genes]
        used = len(idx)
        is_batch_gene[idx] = True
        base[idx] = np.maximum(base[idx], 0.3)
        signs = rng.choice([-1.0, 1.0], size=(n_batches, len(idx)))
        batch_fc[:, idx] = design.batch_effect * signs * rng.uniform(0.5, 1.5, size=(n_batches, len(idx)))
        batch_fc -= batch_fc.mean(0)
    response_fc = np.zeros((n_types, len(conditions), n_genes))
    response_of = np.full(n_genes, "", dtype=object)
    for t in range(n_types):
        for c in range(1, len(conditions)):
            idx = free[used : used + design.n_response]
            used += len(idx)
            base[idx] = np.maximum(base[idx], 0.3)
            response_fc[t, c, idx] = design.effect * rng.uniform(0.5, 1.5, size=len(idx))
            response_of[idx] = types[t]
    donor_fc = rng.normal(0.0, 0.1, size=(n_donors, n_genes))  # small donor-to-donor variation
    table = (logfc[:, None, None, :] + batch_fc[batch_of_donor][None, :, None, :] + donor_fc[None, :, None, :]
             + response_fc[:, None, :, :])
    obs["cell_type"] = pd.Categorical([types[i] for i in labels], categories=types)
    obs["donor"] = pd.Categorical([f"donor{d}" for d in donor], categories=[f"donor{d}" for d in range(n_donors)])
    obs["batch"] = pd.Categorical([f"batch{batch_of_donor[d]}" for d in donor], categories=[f"batch{b}" for b in range(n_batches)])
    if design.conditions:
        obs["condition"] = pd.Categorical([conditions[c] for c in condition], categories=list(conditions))
    var["batch_gene"] = is_batch_gene
    var["response_of"] = response_of.astype(str)
    state = (labels * n_donors + donor) * len(conditions) + condition
    return state, table.reshape(-1, n_genes)


def _count_blocks(rng, labels, library, base, logfc, dispersion, block: int = 16384):
    """Counts in blocks of cells (sparse CSR), so memory stays at the sparse result; the
    draws are those of one call over all cells (the generator is consumed in order)."""
    for start in range(0, len(labels), block):
        rows = slice(start, start + block)
        mean = library[rows, None] * base[None, :] * np.exp(logfc[labels[rows]])
        yield sparse.csr_matrix(rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(np.float32))


def log_normalize(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """``log1p`` of counts normalised to 10,000 per cell (row by row, so blocks of rows
    give the same result as the whole matrix)."""
    scale = 1e4 / np.maximum(np.asarray(counts.sum(1)).ravel(), 1)
    return sparse.csr_matrix(sparse.diags(scale.astype(np.float32)) @ counts).log1p()
