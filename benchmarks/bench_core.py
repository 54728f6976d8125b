"""Core benchmark: scelm vs umap-learn vs glass-box-umap, one run, same data.

    python benchmarks/bench_core.py [--n-cells 10000] [--n-genes 2000] [--skip-glassbox]

Each (dataset, method) runs in a fresh subprocess so its peak RSS is its own; imports and
JIT compilation (numba for umap-learn, torch for the others) are warmed before timing.
Prints a markdown table; quality is measured in the same 50-PC space for every method.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import knn_accuracy, peak_rss_gb, print_table, run_isolated, timer, trustworthiness, warm_umap  # noqa: E402

warnings.filterwarnings("ignore")


def load(dataset: str, n_cells: int, n_genes: int):
    import scanpy as sc

    import scelm

    if dataset == "pbmc68k_reduced":
        adata = sc.datasets.pbmc68k_reduced()
        return adata, "bulk_labels", adata.obsm["X_pca"]
    adata, _ = scelm.datasets.simulate_markers(n_cells, n_genes, n_types=8, random_state=0)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata, "cell_type", adata.obsm["X_pca"]


def dense_input(adata) -> np.ndarray:
    X = adata.raw.X if adata.raw is not None else adata.X
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def run_umap(adata, ref):
    import umap

    n_neighbors = 10 if "neighbors" in adata.uns else 15  # pbmc68k_reduced's stored graph uses 10
    warm_umap()
    out = {}
    with timer(out, "fit_s"):
        Y = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.5).fit_transform(ref)
    return Y, out


def run_scelm(adata, ref, hidden=(128, 128)):
    import scanpy as sc

    import scelm

    sc.settings.verbosity = 0
    warm = adata[:200].copy()
    warm.uns.pop("neighbors", None)
    scelm.tl.parametric_umap(warm, n_epochs=2, store_jacobian=False)  # warm torch imports
    out = {}
    with timer(out, "fit_s"):
        scelm.tl.parametric_umap(adata, store_jacobian=False, hidden=hidden)
    Y = adata.obsm["X_elm"]
    with timer(out, "jac_s"):
        C = scelm.get.contributions(adata)
    out["exact_err"] = float(np.abs(C.sum(-1) - Y).max() / np.abs(Y).max())
    out["jac_cells_per_s"] = adata.n_obs / out["jac_s"]
    return Y, out


def run_glassbox(adata, ref):
    import torch
    from glass_box_umap import GlassBoxUMAP

    torch.manual_seed(0)
    X = dense_input(adata)
    GlassBoxUMAP(n_neighbors=15, min_dist=0.5, pca_components=50, epochs=1, quiet=True).fit(X[:300])
    out = {}
    model = GlassBoxUMAP(n_neighbors=15, min_dist=0.5, pca_components=50, random_state=0, quiet=True)
    with timer(out, "fit_s"):
        model.fit(X)
    Y = model.transform(X)
    with timer(out, "jac_s"):
        C = model.compute_contributions(X)
    out["exact_err"] = float(np.abs(C.sum(-1) - Y).max() / np.abs(Y).max())
    out["jac_cells_per_s"] = adata.n_obs / out["jac_s"]
    return Y, out


METHODS = {"umap-learn": run_umap, "scelm": run_scelm, "glass-box-umap": run_glassbox,
           "scelm (3x128, glass-box size)": lambda a, r: run_scelm(a, r, hidden=(128, 128, 128))}


def one(dataset: str, method: str, n_cells: int, n_genes: int) -> dict:
    adata, label, ref = load(dataset, n_cells, n_genes)
    Y, out = METHODS[method](adata, ref)
    out.update(
        dataset=f"{dataset} ({adata.n_obs}x{adata.n_vars})", method=method,
        trustworthiness=trustworthiness(ref, Y), knn_acc=knn_accuracy(Y, adata.obs[label]), peak_rss_gb=peak_rss_gb(),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-cells", type=int, default=10_000)
    p.add_argument("--n-genes", type=int, default=2_000)
    p.add_argument("--skip-glassbox", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per (dataset, method)")
    p.add_argument("--one", nargs=2, metavar=("DATASET", "METHOD"))
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.n_cells, args.n_genes)))
        return
    rows = []
    for dataset in ["pbmc68k_reduced", "simulated"]:
        base = {}
        for method in METHODS:
            if method == "glass-box-umap" and args.skip_glassbox:
                continue
            cmd = [sys.executable, __file__, "--one", dataset, method, "--n-cells", str(args.n_cells), "--n-genes", str(args.n_genes)]
            r = run_isolated(cmd, args.timeout, f"{dataset}/{method}")
            if r is None:
                continue
            if r.get("stopped"):
                rows.append(dict(dataset=dataset, method=method, fit_s=f"> {args.timeout:.0f} (stopped)"))
                continue
            base.setdefault("umap", r if method == "umap-learn" else None)
            u = base["umap"]
            if u is not None:
                r["fit_vs_umap"] = r["fit_s"] / u["fit_s"]
                r["d_trust"] = r["trustworthiness"] - u["trustworthiness"]
                r["d_knn"] = r["knn_acc"] - u["knn_acc"]
            rows.append(r)
    cols = ["dataset", "method", "fit_s", "fit_vs_umap", "trustworthiness", "d_trust", "knn_acc", "d_knn",
            "jac_cells_per_s", "exact_err", "peak_rss_gb"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows], "Core benchmark (CPU)")


if __name__ == "__main__":
    main()
