"""explain_embedding: how well an exact encoder reproduces maps users already have.

    python benchmarks/bench_explain.py [--sizes 700 10000 50000] [--maps umap tsne]

For pbmc68k_reduced (700 cells, its stored neighbours) and simulated data
(``scelm.datasets.simulate_markers``, 2,000 genes, 50 PCs, exact sklearn kNN because
``sc.pp.neighbors``' pynndescent path fails from 8,192 cells with scipy 1.17), the target
maps are ``sc.tl.umap`` and ``sc.tl.tsne``. Reported: train and held-out R^2, 15-NN overlap
(each cell's neighbours among all cells, map vs fitted map), ``explain_embedding``'s fit
time next to ``parametric_umap``'s on the same data (defaults, one process).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

warnings.filterwarnings("ignore")


def dataset(n: int):
    import scanpy as sc

    import scelm

    if n == 700:
        return "pbmc68k_reduced", sc.datasets.pbmc68k_reduced()
    adata, _ = scelm.datasets.simulate_markers(n, 2000, n_types=8, random_state=0)
    sc.pp.pca(adata, n_comps=50)
    sc.pp.neighbors(adata, n_pcs=50, transformer="sklearn")
    return f"simulated {n:,}", adata


def main() -> None:
    import scanpy as sc

    import scelm

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[700, 10_000, 50_000])
    p.add_argument("--maps", nargs="+", default=["umap", "tsne"])
    args = p.parse_args()
    sc.settings.verbosity = 0
    rows = []
    for n in args.sizes:
        name, adata = dataset(n)
        t0 = time.perf_counter()
        scelm.tl.parametric_umap(adata, store_jacobian=False)
        t_pumap = time.perf_counter() - t0
        for basis in args.maps:
            if basis == "tsne":
                sc.tl.tsne(adata, n_pcs=50)
            elif "X_umap" not in adata.obsm:
                sc.tl.umap(adata)
            t0 = time.perf_counter()
            scelm.tl.explain_embedding(adata, basis, store_jacobian=False)
            t_fit = time.perf_counter() - t0
            fid = adata.uns[f"elm_{basis}"]["fidelity"]
            rows.append(dict(
                data=name, map=basis, r2_train=fid["r2_train"], r2_held_out=fid["r2_held_out"],
                knn15_train=fid["knn_overlap_train"], knn15_held_out=fid["knn_overlap_held_out"],
                explain_s=t_fit, parametric_umap_s=t_pumap,
            ))
            print(rows[-1], flush=True)
    print_table(rows, "explain_embedding: fidelity to the map (20% of cells held out) and fit time")


if __name__ == "__main__":
    main()
