"""scelm's parametric t-SNE against openTSNE, side by side in one warm process.

    python benchmarks/bench_tsne.py [--data pbmc sim10000 sim50000] [--seeds 3]
                                    [--configs default "use_rep=X_pca"] [--exaggeration 1 4]
                                    [--json results/tsne.json]

The data are bench_trust's: pbmc68k_reduced (``bulk_labels``) and simulated cells
(``scelm.datasets.simulate_markers``, 2,000 genes, 8 types), each with scanpy's 50 PCs in
``obsm['X_pca']``. openTSNE (its defaults: perplexity 30, PCA start, FFT-accelerated
gradient, 2 threads) embeds ``X_pca``, as a user would after ``sc.pp.pca``. scelm's
``parametric_tsne`` runs with each ``--configs`` entry, both at each ``--exaggeration``: ``default`` reads the genes (its own
50-component front end), ``use_rep=X_pca`` reads the same 50 PCs as openTSNE. Measured, the
mean over ``--seeds`` values of ``random_state`` for both:

- fit time (openTSNE's includes its affinities; scelm's its affinities and front end);
- trustworthiness (k=15, in X_pca, 5,000 cells) and 15-NN label accuracy;
- exactness: the largest relative error, against the displayed map, of the contributions'
  sum and of each group's separation scores' sum (its centroid distance);
- scelm's reported stability (mean over groups) and the measured top-10 agreement of
  ``rank_genes_elm`` across seeds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import knn_accuracy, print_table, trustworthiness  # noqa: E402
from bench_trust import exactness, jaccard, load, parse_config, top  # noqa: E402

warnings.filterwarnings("ignore")
KEY = "elm_tsne"


def opentsne_row(name: str, adata, groupby: str, seeds: int, exaggeration: float = 1.0) -> dict:
    import openTSNE

    pcs, labels = adata.obsm["X_pca"], adata.obs[groupby].to_numpy()
    times, trust, acc = [], [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        Y = np.asarray(openTSNE.TSNE(exaggeration=exaggeration, n_jobs=2, random_state=seed).fit(pcs))
        times.append(time.perf_counter() - t0)
        trust.append(trustworthiness(pcs, Y))
        acc.append(knn_accuracy(Y, labels))
    return dict(data=name, exaggeration=exaggeration, method="openTSNE", time_s=float(np.mean(times)), trust=float(np.mean(trust)),
                knn_acc=float(np.mean(acc)))


def scelm_row(name: str, adata, groupby: str, seeds: int, label: str, config: dict, opentsne: dict) -> dict:
    import scelm

    pcs, labels = adata.obsm["X_pca"], adata.obs[groupby].to_numpy()
    runs = []
    for seed in range(seeds):
        ad = adata.copy()
        t0 = time.perf_counter()
        scelm.tl.parametric_tsne(ad, random_state=seed, exaggeration=opentsne["exaggeration"], **config)
        elapsed = time.perf_counter() - t0
        scelm.tl.rank_genes_elm(ad, groupby, elm_key=KEY, key_added="rank_tsne")
        res, Y = ad.uns["rank_tsne"], ad.obsm[f"X_{KEY}"]
        runs.append(dict(time=elapsed, trust=trustworthiness(pcs, Y), acc=knn_accuracy(Y, labels),
                         exact=exactness(ad, groupby, elm_key=KEY, rank_key="rank_tsne"),
                         stability=float(np.nanmean([res["stability"][g][0] for g in res["names"].dtype.names])),
                         top=top(ad, "rank_tsne"), n_models=int(ad.uns[KEY]["params"]["n_models"]),
                         n_epochs=int(ad.uns[KEY]["params"]["n_epochs"])))
    groups = list(runs[0]["top"])
    pairs = list(itertools.combinations(range(seeds), 2))
    agreement = np.mean([jaccard(runs[i]["top"][g], runs[j]["top"][g]) for i, j in pairs for g in groups]) if pairs else np.nan
    mean = lambda key: float(np.mean([r[key] for r in runs]))  # noqa: E731
    method = f"scelm {label} ({runs[0]['n_models']}x, {runs[0]['n_epochs']} ep)"
    return dict(data=name, exaggeration=opentsne["exaggeration"], method=method,
                time_s=mean("time"), trust=mean("trust"), knn_acc=mean("acc"),
                time_vs_opentsne=mean("time") / opentsne["time_s"], trust_vs_opentsne=mean("trust") - opentsne["trust"],
                knn_vs_opentsne=mean("acc") - opentsne["knn_acc"], exactness=max(r["exact"] for r in runs),
                reported_stability=mean("stability"), top10_agreement=float(agreement))


def main() -> None:
    import scanpy as sc

    import scelm

    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", default=["pbmc", "sim10000", "sim50000"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=["default", "use_rep=X_pca"])
    p.add_argument("--exaggeration", type=float, nargs="+", default=[1.0], help="for both methods, one row each")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    sc.settings.verbosity = 0
    warm, _ = load("pbmc")  # compile and load everything once, outside the timings
    scelm.tl.parametric_tsne(warm, n_epochs=5)
    opentsne_row("warm", warm, "bulk_labels", 1)
    rows = []
    for name in args.data:
        adata, groupby = load(name)
        for exaggeration in args.exaggeration:
            reference = opentsne_row(name, adata, groupby, args.seeds, exaggeration)
            rows.append(reference)
            for label in args.configs:
                rows.append(scelm_row(name, adata, groupby, args.seeds, label, parse_config(label), reference))
            print_table(rows[-1 - len(args.configs) :], f"{name}, exaggeration {exaggeration:g}")
    print_table(rows, f"parametric t-SNE against openTSNE, {args.seeds} seeds")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
