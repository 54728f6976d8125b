"""Marker recovery: rank_genes_elm vs scanpy's t-test, wilcoxon and logreg, same run.

    python benchmarks/bench_markers.py [--seeds 5] [--n-cells 2000]

Simulated data (scelm.datasets.simulate_markers, two effect sizes): precision@10 of each
group's top genes against its true markers, mean and standard deviation over seeds.
pbmc68k_reduced: rank of textbook markers (MS4A1/CD79A in B, NKG7/GNLY in NK, LYZ/S100A8
in monocytes, FCER1A/CST3 in dendritic cells) among each group's genes.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

warnings.filterwarnings("ignore")
ELM_SCORES = ("separation", "position", "magnitude", "weight")
DE_METHODS = ("t-test", "wilcoxon", "logreg")
TEXTBOOK = {"CD19+ B": ["MS4A1", "CD79A"], "CD56+ NK": ["NKG7", "GNLY"],
            "CD14+ Monocyte": ["LYZ", "S100A8"], "Dendritic": ["FCER1A", "CST3"]}


def rankings(adata, groupby: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Method -> group -> ranked gene names, all methods on the same genes (the ELM's of
    the default fit, the consensus of its members)."""
    import scanpy as sc

    import scelm

    scelm.tl.parametric_umap(adata, random_state=seed, store_jacobian=False)
    genes = np.asarray(scelm._model.StoredModel.from_adata(adata, "elm").genes)
    out = {}
    for score in ELM_SCORES:
        scelm.tl.rank_genes_elm(adata, groupby, score=score, key_added="r")
        out[f"elm {score}"] = {g: np.asarray(adata.uns["r"]["names"][g]) for g in adata.uns["r"]["names"].dtype.names}
    mask = adata.var_names.isin(genes) if adata.raw is None else adata.raw.var_names.isin(genes)
    sub = adata[:, mask].copy() if adata.raw is None else adata.raw.to_adata()[:, mask].copy()
    sub.obs = adata.obs
    for method in DE_METHODS:
        sc.tl.rank_genes_groups(sub, groupby, method=method, use_raw=False, key_added="de")
        out[method] = {g: np.asarray(sub.uns["de"]["names"][g]) for g in sub.uns["de"]["names"].dtype.names}
    return out


def simulated(seeds: int, n_cells: int) -> list[dict]:
    import scelm

    rows = []
    for effect in (0.5, 1.0):
        prec: dict[str, list[float]] = {}
        for seed in range(seeds):
            adata, markers = scelm.datasets.simulate_markers(n_cells, 1000, n_types=6, effect=effect, random_state=seed)
            for method, ranked in rankings(adata, "cell_type", seed).items():
                p = np.mean([np.isin(ranked[g][:10], markers[g]).mean() for g in markers])
                prec.setdefault(method, []).append(p)
        for method, p in prec.items():
            rows.append(dict(data=f"simulated, effect {effect}", method=method,
                             precision_at_10=float(np.mean(p)), sd=float(np.std(p))))
    return rows


def pbmc(seeds: int) -> list[dict]:
    import scanpy as sc

    ranks: dict[str, list[float]] = {}
    top10: dict[str, list[float]] = {}
    for seed in range(seeds):
        adata = sc.datasets.pbmc68k_reduced()
        for method, ranked in rankings(adata, "bulk_labels", seed).items():
            r = [int(np.flatnonzero(ranked[g] == m)[0]) + 1 for g, ms in TEXTBOOK.items() for m in ms]
            ranks.setdefault(method, []).append(float(np.median(r)))
            top10.setdefault(method, []).append(float(np.mean(np.asarray(r) <= 10)))
    return [dict(data="pbmc68k_reduced textbook markers", method=m, median_rank=float(np.mean(ranks[m])),
                 sd=float(np.std(ranks[m])), frac_in_top10=float(np.mean(top10[m]))) for m in ranks]


def main() -> None:
    import scanpy as sc

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-cells", type=int, default=2000)
    args = p.parse_args()
    sc.settings.verbosity = 0
    print_table(simulated(args.seeds, args.n_cells), "Simulated markers: precision@10 (mean, sd over seeds)")
    print_table(pbmc(args.seeds), "pbmc68k_reduced: textbook markers (median rank, lower is better)")


if __name__ == "__main__":
    main()
