"""Simulated counts with known marker genes per cell type."""

from __future__ import annotations

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
    normalize: bool = True,
    random_state: int = 0,
) -> tuple[AnnData, dict[str, list[str]]]:
    """Negative-binomial counts with known markers per cell type.

    Every type gets ``n_markers`` genes of its own, up-regulated by ``exp(effect)``-fold
    (effects drawn in [0.5, 1.5] x ``effect`` on the log scale). On top, ``n_programs``
    gene programs are each switched on in two or three types, so one-vs-rest contrasts
    see shared, non-specific signal too. Library sizes vary log-normally.

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
        Mean log fold change of markers and programs.
    dispersion
        Negative-binomial shape (smaller is noisier).
    library_sd
        Standard deviation of log library size.
    normalize
        If True, ``X`` is ``log1p`` of counts normalised to 10,000 per cell and the counts
        stay in ``layers['counts']``; else ``X`` holds counts.
    random_state
        Seed.

    Returns
    -------
    ``(adata, markers)``: the AnnData (``obs['cell_type']``, ``var['marker_of']``) and a
    dict from each type to its true marker genes, strongest first.
    """
    obs, var, markers, counts = simulated_blocks(
        n_cells, n_genes, n_types=n_types, n_markers=n_markers, n_programs=n_programs, program_size=program_size,
        effect=effect, dispersion=dispersion, library_sd=library_sd, random_state=random_state,
    )
    X = sparse.vstack(list(counts), format="csr")
    adata = AnnData(X=X, obs=obs, var=var)
    if normalize:
        adata.layers["counts"] = X.copy()
        adata.X = log_normalize(X)
    return adata, markers


def simulated_blocks(n_cells: int, n_genes: int, *, n_types: int = 6, n_markers: int = 10, n_programs: int = 6,
                     program_size: int = 20, effect: float = 1.0, dispersion: float = 5.0, library_sd: float = 0.3,
                     random_state: int = 0):
    """:func:`simulate_markers`' design and its counts as a generator of CSR blocks of
    cells, for data too large to hold twice (``benchmarks/bench_scale.py`` writes a million
    cells block by block). Returns ``(obs, var, markers, blocks)``."""
    rng = np.random.default_rng(random_state)
    n_needed = n_types * n_markers + n_programs * program_size
    if n_needed > n_genes:
        raise ValueError(f"n_genes={n_genes} is too small for {n_needed} marker and program genes.")
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
    return obs, var, markers, _count_blocks(rng, labels, library, base, logfc, dispersion)


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
