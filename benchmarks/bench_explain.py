"""explain_embedding: how well an exact encoder reproduces maps users already have, and how
steady and faithful the rankings of that map are, with either reference.

    python benchmarks/bench_explain.py [--sizes 700 10000 50000] [--maps umap tsne]
                                       [--references mean zero] [--seeds 3]

For pbmc68k_reduced (700 cells, its stored neighbours, ``bulk_labels``) and simulated data
(``scelm.datasets.simulate_markers``, 2,000 genes, 8 types, 50 PCs, exact sklearn kNN because
``sc.pp.neighbors``' pynndescent path fails from 8,192 cells with scipy 1.17), the target
maps are ``sc.tl.umap`` and ``sc.tl.tsne``. Each map is explained ``--seeds`` times
(``random_state`` 0, 1, ...) with each reference (``center=True``: the mean cell;
``center=False``: zero expression). Reported per map and reference: train and held-out R^2
and 15-NN overlap (each cell's neighbours among all cells, map vs fitted map; means over the
seeds), the top-10 agreement of ``rank_genes_elm`` across the seeds (Jaccard, mean over
groups and pairs of seeds), deletion@10 (protocol 'both') of the ELM ranking and of the best
of t-test, wilcoxon and logreg on the first seed's fitted map, and ``explain_embedding``'s
fit time (median over the seeds) next to ``parametric_umap``'s on the same data (defaults,
one process).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402
from bench_trust import DE, de_rankings, deletion_at_10, jaccard, top  # noqa: E402

warnings.filterwarnings("ignore")
REFERENCES = {"mean": True, "zero": False}


def dataset(n: int):
    import scanpy as sc

    import scelm

    if n == 700:
        return "pbmc68k_reduced", sc.datasets.pbmc68k_reduced(), "bulk_labels"
    adata, _ = scelm.datasets.simulate_markers(n, 2000, n_types=8, random_state=0)
    sc.pp.pca(adata, n_comps=50)
    sc.pp.neighbors(adata, n_pcs=50, transformer="sklearn")
    return f"simulated {n:,}", adata, "cell_type"


def explain(adata, basis: str, groupby: str, center: bool, seed: int, *, deletion: bool) -> dict:
    """One explain_embedding fit, its ranking and (``deletion``) the deletion@10 of it and of DE."""
    import scelm

    ad = adata.copy()
    t0 = time.perf_counter()
    scelm.tl.explain_embedding(ad, basis, center=center, random_state=seed, key_added="e", store_jacobian=False)
    out = {"time": time.perf_counter() - t0, **{k: v for k, v in ad.uns["e"]["fidelity"].items() if k != "r2_per_group"}}
    scelm.tl.rank_genes_elm(ad, groupby, elm_key="e")
    out["top"] = top(ad, "rank_genes_elm")
    if deletion:
        de_rankings(ad, groupby, elm_key="e")
        out["del_elm"] = deletion_at_10(ad, "rank_genes_elm", elm_key="e")
        out["del_de"] = max(deletion_at_10(ad, m, elm_key="e") for m in DE)
    return out


def agreement(tops: list[dict]) -> float:
    return float(np.mean([jaccard(a[g], b[g]) for a, b in itertools.combinations(tops, 2) for g in a]))


def main() -> None:
    import scanpy as sc

    import scelm

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[700, 10_000, 50_000])
    p.add_argument("--maps", nargs="+", default=["umap", "tsne"])
    p.add_argument("--references", nargs="+", choices=list(REFERENCES), default=list(REFERENCES))
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    sc.settings.verbosity = 0
    rows = []
    for n in args.sizes:
        name, adata, groupby = dataset(n)
        t0 = time.perf_counter()
        scelm.tl.parametric_umap(adata, store_jacobian=False)
        t_pumap = time.perf_counter() - t0
        for basis in args.maps:
            if basis == "tsne":
                sc.tl.tsne(adata, n_pcs=50)
            elif "X_umap" not in adata.obsm:
                sc.tl.umap(adata)
            for ref in args.references:
                runs = [explain(adata, basis, groupby, REFERENCES[ref], s, deletion=s == 0) for s in range(args.seeds)]
                mean = {k: float(np.mean([r[k] for r in runs])) for k in ("r2_train", "r2_held_out", "knn_overlap_train",
                                                                           "knn_overlap_held_out")}
                rows.append(dict(
                    data=name, map=basis, reference=ref, r2_train=mean["r2_train"], r2_held_out=mean["r2_held_out"],
                    knn15_train=mean["knn_overlap_train"], knn15_held_out=mean["knn_overlap_held_out"],
                    agreement=agreement([r["top"] for r in runs]) if len(runs) > 1 else float("nan"),
                    del10_elm=runs[0]["del_elm"], del10_best_de=runs[0]["del_de"],
                    explain_s=float(np.median([r["time"] for r in runs])), parametric_umap_s=t_pumap,
                ))
                print(rows[-1], flush=True)
    print_table(rows, f"explain_embedding: fidelity to the map (20% of cells held out), {args.seeds} seeds, and fit time")


if __name__ == "__main__":
    main()
