"""Trust in ELM rankings: stability over seeds, faithfulness to the map, markers, quality, time.

    python benchmarks/bench_trust.py [--seeds 5] [--n-cells 2000]

For pbmc68k_reduced (``bulk_labels``) and simulated data (``scelm.datasets.simulate_markers``,
6 types, effect 1.0), measured side by side in one run:

(a) stability: mean top-10 Jaccard index over groups and pairs of ``random_state``, for
    scelm's defaults and for v0.1's settings (``init='random'``, no weight decay, one
    model); the t-test vs wilcoxon agreement on the same groups is the reference line;
(b) faithfulness: deletion curves (``scelm.tl.deletion_curve``, protocol 'both', matched to
    the default ``separation`` score; 'group' for ``position``) of ELM, t-test, wilcoxon,
    logreg, the unsigned magnitude (how glass-box tools rank) and random genes, on the map
    of each seed's defaults fit (member 0 of the ensemble); ELM and t-test also on v0.1's
    single-model map;
(c) markers: pbmc textbook-marker recall@10 (markers below), simulated precision@10;
(d) trustworthiness (k=15, in the 50-PC space) and 15-NN label accuracy vs umap-learn;
(e) fit time of the defaults vs v0.1's settings.
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
from _common import knn_accuracy, print_table, trustworthiness  # noqa: E402

warnings.filterwarnings("ignore")
# Textbook PBMC markers present in pbmc68k_reduced's genes (fixed before measuring).
TEXTBOOK = {
    "CD19+ B": ["MS4A1", "CD79A", "CD79B"], "CD56+ NK": ["NKG7", "GNLY", "GZMB", "PRF1"],
    "CD14+ Monocyte": ["LYZ", "S100A8", "S100A9"], "Dendritic": ["FCER1A", "CST3", "CLEC10A"],
    "CD34+": ["PRSS57", "SOX4"], "CD8+ Cytotoxic T": ["CD8A", "CD8B", "CD3D"],
    "CD8+/CD45RA+ Naive Cytotoxic": ["CD8A", "CD8B", "CCR7"], "CD4+/CD25 T Reg": ["CD3D", "CD3E", "CD4"],
    "CD4+/CD45RO+ Memory": ["CD3D", "IL7R", "S100A4"], "CD4+/CD45RA+/CD25- Naive T": ["CD3D", "CCR7", "IL7R"],
}
V01 = dict(init="random", weight_decay=0.0, n_models=1)  # v0.1's training, same code path
DE = ("t-test", "wilcoxon", "logreg")
KS = (1, 5, 10, 20, 50)


def load(name: str, n_cells: int):
    import scanpy as sc

    import scelm

    if name == "pbmc":
        adata = sc.datasets.pbmc68k_reduced()
        return adata, "bulk_labels", TEXTBOOK
    adata, markers = scelm.datasets.simulate_markers(n_cells, 1000, n_types=6, effect=1.0, random_state=0)
    sc.pp.pca(adata, n_comps=50)
    return adata, "cell_type", markers


def top(adata, key: str, n: int = 10) -> dict[str, list[str]]:
    names = adata.uns[key]["names"]
    return {g: list(names[g][:n]) for g in names.dtype.names}


def jaccard(a: dict, b: dict) -> float:
    return float(np.mean([len(set(a[g]) & set(b[g])) / len(set(a[g]) | set(b[g])) for g in a]))


def recall(tops: dict, markers: dict) -> float:
    return float(np.mean([m in tops[g] for g, ms in markers.items() for m in ms]))


def de_rankings(adata, groupby: str) -> None:
    """scanpy's DE on the genes the model reads, from the same matrix."""
    import scanpy as sc

    genes = np.asarray(adata.uns["elm"]["var_names"]).astype(str)
    src = adata.raw.to_adata() if adata.raw is not None else adata
    sub = src[:, genes].copy()
    sub.obs = adata.obs
    for method in DE:
        sc.tl.rank_genes_groups(sub, groupby, method=method, use_raw=False, key_added=method)
        adata.uns[method] = sub.uns[method]


def one_seed(adata, groupby: str, seed: int) -> dict:
    import scelm

    out = {}
    old = adata.copy()
    t0 = time.perf_counter()
    scelm.tl.parametric_umap(old, random_state=seed, store_jacobian=False, **V01)
    out["time_v01"] = time.perf_counter() - t0
    scelm.tl.rank_genes_elm(old, groupby)
    out["top_v01"] = top(old, "rank_genes_elm")
    de_rankings(old, groupby)
    curves = {}
    for key in ("rank_genes_elm", "t-test"):  # one model explains its own map most faithfully
        scelm.tl.deletion_curve(old, key, n_genes=max(KS), protocol="both", key_added="d")
        curves[("both", f"{key} [v0.1 map]")] = old.uns["d"]["removed"].mean(0).to_numpy()
    ad = adata.copy()
    t0 = time.perf_counter()
    scelm.tl.parametric_umap(ad, random_state=seed)
    out["time"] = time.perf_counter() - t0
    out["embedding"] = ad.obsm["X_elm"]
    out["embedding_v01"] = old.obsm["X_elm"]
    scelm.tl.rank_genes_elm(ad, groupby)
    stability = ad.uns["rank_genes_elm"]["stability"]
    out["split_half"] = float(np.mean([stability[g][0] for g in stability.dtype.names]))
    scelm.tl.rank_genes_elm(ad, groupby, score="position", key_added="elm position")
    scelm.tl.rank_genes_elm(ad, groupby, score="magnitude", key_added="magnitude")
    de_rankings(ad, groupby)
    rng = np.random.default_rng(seed)
    names = ad.uns["rank_genes_elm"]["names"]
    shuffled = {g: rng.permutation(np.asarray(names[g])) for g in names.dtype.names}
    ad.uns["random"] = dict(names=np.rec.fromarrays(list(shuffled.values()), names=list(shuffled)),
                            params=dict(groupby=groupby, reference="rest"))
    out["top"] = {k: top(ad, k) for k in ("rank_genes_elm", *DE)}
    for key in ("rank_genes_elm", "magnitude", *DE, "random"):
        scelm.tl.deletion_curve(ad, key, n_genes=max(KS), protocol="both", key_added="d")
        curves[("both", key)] = ad.uns["d"]["removed"].mean(0).to_numpy()
    for key in ("elm position", "rank_genes_elm", "t-test"):
        scelm.tl.deletion_curve(ad, key, n_genes=max(KS), protocol="group", key_added="d")
        curves[("group", key)] = ad.uns["d"]["removed"].mean(0).to_numpy()
    out["curves"] = curves
    return out


def umap_learn(adata, seeds: int) -> list[np.ndarray]:
    import scanpy as sc

    maps = []
    for seed in range(seeds):
        ad = adata.copy()
        if "neighbors" not in ad.uns:
            sc.pp.neighbors(ad, n_pcs=50)
        sc.tl.umap(ad, random_state=seed)
        maps.append(ad.obsm["X_umap"])
    return maps


def run(name: str, seeds: int, n_cells: int) -> tuple[list[dict], list[dict], list[dict]]:
    adata, groupby, markers = load(name, n_cells)
    runs = [one_seed(adata, groupby, s) for s in range(seeds)]
    pcs, labels = adata.obsm["X_pca"], adata.obs[groupby].to_numpy()
    umaps = umap_learn(adata, seeds)
    pairs = list(itertools.combinations(range(seeds), 2))
    stab = [
        dict(data=name, ranking="scelm defaults",
             jaccard_top10=np.mean([jaccard(runs[i]["top"]["rank_genes_elm"], runs[j]["top"]["rank_genes_elm"]) for i, j in pairs]),
             split_half_estimate=np.mean([r["split_half"] for r in runs])),
        dict(data=name, ranking="scelm v0.1 settings",
             jaccard_top10=np.mean([jaccard(runs[i]["top_v01"], runs[j]["top_v01"]) for i, j in pairs])),
        dict(data=name, ranking="t-test vs wilcoxon (reference)",
             jaccard_top10=jaccard(runs[0]["top"]["t-test"], runs[0]["top"]["wilcoxon"])),
    ]
    quality = []
    for label, maps, t in [
        ("scelm defaults", [r["embedding"] for r in runs], [r["time"] for r in runs]),
        ("scelm v0.1 settings", [r["embedding_v01"] for r in runs], [r["time_v01"] for r in runs]),
        ("umap-learn", umaps, None),
    ]:
        quality.append(dict(
            data=name, method=label, trustworthiness=np.mean([trustworthiness(pcs, m) for m in maps]),
            knn_accuracy=np.mean([knn_accuracy(m, labels) for m in maps]),
            fit_s=float(np.median(t)) if t else "",
        ))
    faith = []
    for (protocol, key), _ in runs[0]["curves"].items():
        curve = np.mean([r["curves"][(protocol, key)] for r in runs], axis=0)
        marker = recall(runs[0]["top"][key], markers) if key in runs[0]["top"] else ""
        row = dict(data=name, protocol=protocol, ranking=key.replace("rank_genes_elm", "elm separation"))
        if "[v0.1 map]" not in key:
            row["ranking"] += " [defaults map]"
        row.update({f"k={k}": float(curve[k - 1]) for k in KS})
        if protocol == "both":
            recs = [recall(r["top"][key], markers) for r in runs] if key in runs[0]["top"] else []
            row["marker_recall@10"] = float(np.mean(recs)) if recs else marker
        faith.append(row)
    return stab, faith, quality


def main() -> None:
    import scanpy as sc

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-cells", type=int, default=2000)
    p.add_argument("--data", nargs="+", default=["pbmc", "simulated"])
    args = p.parse_args()
    sc.settings.verbosity = 0
    tables = [run(name, args.seeds, args.n_cells) for name in args.data]
    print_table([r for t in tables for r in t[0]], f"(a) stability: top-10 Jaccard over {args.seeds} seeds")
    print_table([r for t in tables for r in t[1]],
                "(b, c) deletion: share of separation removed by the top-k genes (mean over groups and seeds); marker recall@10")
    print_table([r for t in tables for r in t[2]], "(d, e) embedding quality and fit time (median s, this process)")


if __name__ == "__main__":
    main()
