"""Integrated data, side by side in one process: ``sc.tl.umap`` and scelm on the same
integrated graph, with and without ``batch_key``.

    python benchmarks/bench_integration.py [--cells 10000 50000] [--graphs harmony bbknn] [--tsne]
                                           [--batch-effect 0.5] [--zero-reference] [--variants init=X_pca]
    python benchmarks/bench_integration.py --timing 3 [--cells 10000] [--graphs harmony]

Data: ``scelm.datasets.simulate_markers`` with 2 batches (60 batch genes shifted by about
``--batch-effect`` on the log scale, each batch its own mix of types), 4 donors and two
conditions (8 response genes per type), 6 types, 2,000 genes. 50 PCs of the log-normalised
expression, then ``harmonypy.run_harmony`` on them
(called directly: scanpy 1.11's ``sc.external.pp.harmony_integrate`` stores harmonypy 2's
result transposed) and the UMAP graph of its output (exact 15-NN; ``sc.pp.neighbors`` fails
from 8,192 cells with pynndescent 0.7 and scipy 1.17), or BBKNN's graph on the PCs. Every
method embeds that graph; scelm reads genes (``use_rep='X_pca_harmony'`` names where the
graph and the starting layout come from). Measured:

- trust: trustworthiness (k=15, 5,000 cells) in the integrated space (harmony's PCs; for
  BBKNN, the PCs);
- mixing: mean share of a cell's 15 nearest neighbours in the map from another batch,
  over the share a perfect mix would give (1 = perfectly mixed);
- type_acc: cell-type 15-NN accuracy in the map;
- batch_genes_top10: share of batch genes among each type's top-10 genes (mean over
  types), for the ELM ranking of the map and for the t-test;
- response_recall10: share of each type's 8 simulated response genes among the top 10 of
  its stim-vs-ctrl shift (mean over types), for ``rank_genes_elm(within='cell_type')``
  (scores ``separation`` and ``expression``) and
  for a pseudobulk t-test over donors (per type, each donor's mean expression in each
  condition, Welch's t between the conditions' donor means);
- fit_s: fit time (scelm: parametric_umap alone; umap: sc.tl.umap on the stored graph).

With ``--timing N``, only the cost of ``batch_key``: N alternating rounds of the fit
without and with it on each graph (``random_state`` = the round, after a warm-up fit),
the medians and their ratio.

With ``--zero-reference``, scelm also runs with ``center=False`` (contributions relative to
zero expression instead of the mean cell; with and without ``batch_key``).

With ``--variants``, scelm also runs with each given change of its defaults, written as in
``bench_trust.py --configs`` (``init=X_pca``: started from the uncorrected PCs instead of the
integrated representation's own start; ``n_epochs=300``, ``hidden=128-128``).

With ``--tsne``, also openTSNE (perplexity 30) on harmony's PCs against
``parametric_tsne(use_rep='X_pca_harmony')``, and ``parametric_tsne(neighbors_key=...)``
on the BBKNN graph, each with and without ``batch_key``: trust, mixing, type accuracy and
fit time.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import alternating_rounds, knn_accuracy, print_table, trustworthiness  # noqa: E402
from bench_trust import parse_config  # noqa: E402

warnings.filterwarnings("ignore")
BATCH = "batch"


def simulate(n_cells: int, batch_effect: float = 0.5):
    import scanpy as sc

    import scelm

    adata, _ = scelm.datasets.simulate_markers(n_cells, 2000, n_types=6, n_batches=2, n_donors=4, batch_effect=batch_effect,
                                               conditions=("ctrl", "stim"), random_state=0)
    del adata.layers["counts"]
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata


def harmony_graph(adata) -> np.ndarray:
    """Store harmony's PCs and the UMAP graph built on them; return the integrated space."""
    import harmonypy
    import torch

    from scelm._core.graph import fuzzy_graph

    out = np.asarray(harmonypy.run_harmony(adata.obsm["X_pca"], adata.obs, BATCH, random_state=0, verbose=False).Z_corr)
    adata.obsm["X_pca_harmony"] = (out.T if out.shape[0] != adata.n_obs else out).astype(np.float32)
    graph = fuzzy_graph(adata.obsm["X_pca_harmony"], n_neighbors=15, random_state=0, device=torch.device("cpu"), method="exact")
    adata.obsp["connectivities"] = adata.obsp["distances"] = graph
    adata.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances",
                              "params": {"n_neighbors": 15, "method": "umap", "use_rep": "X_pca_harmony"}}
    return adata.obsm["X_pca_harmony"]


def bbknn_graph(adata) -> np.ndarray:
    import bbknn

    bbknn.bbknn(adata, batch_key=BATCH, use_rep="X_pca")
    adata.uns["neighbors"]["params"]["use_rep"] = "X_pca"
    return adata.obsm["X_pca"]


def mixing(Y: np.ndarray, batches: np.ndarray, k: int = 15) -> float:
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y)
    other = (batches[idx[:, 1:]] != batches[:, None]).mean(1)
    share = np.array([(batches != b).mean() for b in batches])
    return float((other / share).mean())


def batch_gene_share(adata, key: str, batch_genes: set) -> float:
    names = adata.uns[key]["names"]
    return float(np.mean([len(set(names[g][:10]) & batch_genes) / 10 for g in names.dtype.names]))


def recall(ranked: dict[str, list[str]], truth: dict) -> float:
    return float(np.mean([len(set(ranked[t][:10]) & set(truth[t])) / len(truth[t]) for t in truth]))


def pseudobulk_top(adata) -> dict[str, list[str]]:
    """Per type, genes ranked by Welch's t between the donors' mean expression in stim and in ctrl."""
    from scipy import sparse, stats

    X = adata.X.tocsr() if sparse.issparse(adata.X) else sparse.csr_matrix(adata.X)
    obs, out = adata.obs, {}
    for t in obs["cell_type"].cat.categories:
        means = {}
        for c in ("ctrl", "stim"):
            rows = [np.asarray(X[((obs["cell_type"] == t) & (obs["condition"] == c) & (obs["donor"] == d)).to_numpy()].mean(0)).ravel()
                    for d in obs["donor"].cat.categories]
            means[c] = np.vstack(rows)
        tstat = np.nan_to_num(stats.ttest_ind(means["stim"], means["ctrl"], equal_var=False).statistic, nan=-np.inf)
        out[t] = list(adata.var_names[np.argsort(-tstat)[:10]])
    return out


def run(n_cells: int, graph: str, batch_effect: float, centers: list[bool], extra: tuple[str, ...] = ()) -> list[dict]:
    import scanpy as sc

    import scelm

    adata = simulate(n_cells, batch_effect)
    space = harmony_graph(adata) if graph == "harmony" else bbknn_graph(adata)
    batches = adata.obs[BATCH].to_numpy()
    batch_genes = set(adata.uns["simulation"]["batch_genes"])
    sc.tl.rank_genes_groups(adata, "cell_type", method="t-test", key_added="t-test")
    de_share = batch_gene_share(adata, "t-test", batch_genes)
    truth = {t: list(g) for t, g in adata.uns["simulation"]["response"].items()}
    pseudobulk = recall(pseudobulk_top(adata), truth)
    rows = []
    ad = adata.copy()
    t0 = time.perf_counter()
    sc.tl.umap(ad, random_state=0)
    rows.append(dict(method="sc.tl.umap", fit_s=time.perf_counter() - t0, Y=ad.obsm["X_umap"], elm=np.nan, response=np.nan,
                     response_expr=np.nan))
    rep = "X_pca_harmony" if graph == "harmony" else None
    variants = [(f"scelm{'' if c else ', center=False'}{' batch_key' if b else ''}", {"center": c, **({"batch_key": BATCH} if b else {})})
                for c in centers for b in (False, True)]
    variants += [(f"scelm, {config}", parse_config(config)) for config in extra]
    for label, kw in variants:
        ad = adata.copy()
        t0 = time.perf_counter()
        scelm.tl.parametric_umap(ad, use_rep=rep, store_jacobian=False, **kw)
        fit_s = time.perf_counter() - t0
        scelm.tl.rank_genes_elm(ad, "cell_type")
        found = {}
        for score in ("separation", "expression"):
            scelm.tl.rank_genes_elm(ad, "condition", groups="stim", reference="ctrl", within="cell_type", score=score, key_added="shift")
            found[score] = recall({t: list(ad.uns["shift"]["names"][t]) for t in ad.uns["shift"]["names"].dtype.names}, truth)
        rows.append(dict(method=label, fit_s=fit_s, Y=ad.obsm["X_elm"], elm=batch_gene_share(ad, "rank_genes_elm", batch_genes),
                         response=found["separation"], response_expr=found["expression"]))
    out = []
    for r in rows:
        Y = r.pop("Y")
        out.append(dict(cells=n_cells, graph=graph, method=r["method"], trust=trustworthiness(space, Y), mixing=mixing(Y, batches),
                        type_acc=knn_accuracy(Y, adata.obs["cell_type"]), batch_genes_top10_elm=r["elm"],
                        batch_genes_top10_ttest=de_share, response_recall10_elm=r["response"],
                        response_recall10_elm_expression=r["response_expr"],
                        response_recall10_pseudobulk=pseudobulk, fit_s=r["fit_s"]))
    return out


def batch_key_timing(n_cells: int, graph: str, batch_effect: float, rounds: int) -> dict:
    import scelm

    adata = simulate(n_cells, batch_effect)
    harmony_graph(adata) if graph == "harmony" else bbknn_graph(adata)
    rep = "X_pca_harmony" if graph == "harmony" else None
    scelm.tl.parametric_umap(adata[:500].copy(), use_rep=rep, n_epochs=5, neighbors_key=False)  # warm-up
    times = alternating_rounds(adata, {
        with_key: lambda ad, seed, with_key=with_key: scelm.tl.parametric_umap(
            ad, use_rep=rep, store_jacobian=False, random_state=seed, **({"batch_key": BATCH} if with_key else {}))
        for with_key in (False, True)
    }, rounds)
    without, with_key = float(np.median(times[False])), float(np.median(times[True]))
    return dict(cells=n_cells, graph=graph, rounds=rounds, fit_s=without, fit_s_batch_key=with_key, ratio=with_key / without,
                ratios=" ".join(f"{b / a:.2f}" for a, b in zip(times[False], times[True])))


def run_tsne(n_cells: int, batch_effect: float) -> list[dict]:
    import openTSNE

    import scelm

    adata = simulate(n_cells, batch_effect)
    harmony = harmony_graph(adata)
    bbknn_data = adata.copy()
    pcs = bbknn_graph(bbknn_data)
    batches, rows = adata.obs[BATCH].to_numpy(), []
    t0 = time.perf_counter()
    Y = np.asarray(openTSNE.TSNE(perplexity=30, n_jobs=2, random_state=0).fit(harmony))
    rows.append(("harmony PCs", "openTSNE", Y, time.perf_counter() - t0, harmony))
    for graph, source, space, given in [("harmony PCs", adata, harmony, {"use_rep": "X_pca_harmony"}),
                                        ("BBKNN graph", bbknn_data, pcs, {"neighbors_key": "neighbors"})]:
        for label, kw in [("scelm t-SNE", {}), ("scelm t-SNE batch_key", {"batch_key": BATCH})]:
            ad = source.copy()
            t0 = time.perf_counter()
            scelm.tl.parametric_tsne(ad, store_jacobian=False, **given, **kw)
            rows.append((graph, label, ad.obsm["X_elm_tsne"], time.perf_counter() - t0, space))
    return [dict(cells=n_cells, graph=g, method=m, trust=trustworthiness(space, Y), mixing=mixing(Y, batches),
                 type_acc=knn_accuracy(Y, adata.obs["cell_type"]), fit_s=t) for g, m, Y, t, space in rows]


def main() -> None:
    import scanpy as sc

    p = argparse.ArgumentParser()
    p.add_argument("--cells", type=int, nargs="+", default=[10000, 50000])
    p.add_argument("--graphs", nargs="*", default=["harmony", "bbknn"], help="none: only --tsne")
    p.add_argument("--tsne", action="store_true")
    p.add_argument("--batch-effect", type=float, default=0.5, help="log-scale shift of the batch genes")
    p.add_argument("--zero-reference", action="store_true", help="also scelm with center=False (contributions relative to zero expression)")
    p.add_argument("--variants", nargs="*", default=[], help="also scelm with these changes, e.g. init=X_pca n_epochs=300")
    p.add_argument("--timing", type=int, default=0, help="only time the fit with and without batch_key, this many rounds")
    args = p.parse_args()
    sc.settings.verbosity = 0
    if args.timing:
        print_table([batch_key_timing(n, g, args.batch_effect, args.timing) for n in args.cells for g in args.graphs],
                    "the fit without and with batch_key, same graph")
        return
    rows = []
    for n in args.cells:
        for graph in args.graphs:
            new = run(n, graph, args.batch_effect, [True, False] if args.zero_reference else [True], tuple(args.variants))
            print_table(new, f"{n} cells, {graph} graph")
            rows += new
    if rows:
        print_table(rows, "integrated data: the same graph for every method")
    if args.tsne:
        print_table([row for n in args.cells for row in run_tsne(n, args.batch_effect)], "t-SNE on integrated data")


if __name__ == "__main__":
    main()
