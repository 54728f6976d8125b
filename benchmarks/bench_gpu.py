"""The one prepared GPU measurement: run it in a single call when a GPU is lent.

    python benchmarks/bench_gpu.py [--json results/gpu.json] [--budget-s 420]
    python benchmarks/bench_gpu.py --smoke     # the same code on CPU at tiny sizes (< 1 min)

1. Equality: a model fitted on the device embeds and explains 5,000 simulated cells
   (2,000 genes) there and on CPU; the largest relative differences of the embedding and
   of the Jacobians, and the contributions' sum against the embedding, must stay within
   float32 tolerance (1e-4). The device's exact kNN graph is compared with the CPU's.
2. Timings of ``parametric_umap`` (float32 and bfloat16), ``rank_genes_elm`` and
   ``transform`` with the defaults: 100,000 simulated cells x 2,000 genes (sparse), then
   1,000,000 and 5,000,000 cells as their 50-dimensional projection only (a mixture of
   Gaussians standing for 50 PCs, used as the genes: the engine's work per cell is the
   same, and X of 2,000 genes would not be simulated in the time). Each size runs only while
   ``--budget-s`` seconds remain and its projection fits in GPU memory.

Prints one table and writes it, with the device and versions, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

warnings.filterwarnings("ignore")
TOLERANCE = 1e-4
N_TYPES = 12


def simulated(n_cells: int, n_genes: int):
    import scelm

    adata, _ = scelm.datasets.simulate_markers(n_cells, n_genes, n_types=8, random_state=0)
    del adata.layers["counts"]
    return adata, "cell_type"


def projection(n_cells: int, dim: int = 50):
    """``n_cells`` x ``dim`` non-negative mixture of Gaussians as an AnnData (the projection
    stands for the genes), with its cluster labels."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(N_TYPES, dim)).astype(np.float32)
    labels = rng.integers(0, N_TYPES, n_cells)
    X = np.empty((n_cells, dim), dtype=np.float32)
    for start in range(0, n_cells, 1_000_000):  # in blocks: no float64 copy of X
        rows = slice(start, start + 1_000_000)
        X[rows] = centres[labels[rows]] + rng.standard_normal((len(labels[rows]), dim), dtype=np.float32)
    np.abs(X, out=X)
    obs = pd.DataFrame({"cluster": pd.Categorical([f"c{i}" for i in labels])}, index=pd.RangeIndex(n_cells).astype(str))
    return ad.AnnData(X, obs=obs), "cluster"


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def equality(device: str, n_cells: int, n_epochs: int | None) -> dict:
    """A model fitted on ``device``, evaluated there and on CPU; the device's kNN against the CPU's."""
    import torch

    import scelm
    from scelm._core.graph import exact_knn

    adata, _ = simulated(n_cells, 2000)
    scelm.tl.parametric_umap(adata, device=device, n_epochs=n_epochs, store_jacobian=False)
    genes = list(adata.uns["elm"]["var_names"][:200])
    on = {dev: (scelm.get.jacobian(adata, genes=genes, device=dev), scelm.get.contributions(adata, genes=genes, device=dev))
          for dev in (device, "cpu")}
    query = adata.copy()
    scelm.tl.transform(query, adata, device="cpu", store_jacobian=False)
    C = scelm.get.contributions(adata, device=device)
    z = np.asarray(adata.obsm["X_elm"])
    idx_dev, _ = exact_knn(np.asarray(query.obsm["X_elm"]), 15, device=torch.device(device))
    idx_cpu, _ = exact_knn(np.asarray(query.obsm["X_elm"]), 15, device=torch.device("cpu"))
    overlap = float(np.mean([len(set(a) & set(b)) / 15 for a, b in zip(idx_dev, idx_cpu)]))
    return dict(
        embedding_device_vs_cpu=relative(z, query.obsm["X_elm"]),
        jacobian_device_vs_cpu=relative(on[device][0], on["cpu"][0]),
        contributions_device_vs_cpu=relative(on[device][1], on["cpu"][1]),
        sum_vs_embedding=relative(C.sum(-1), z),
        knn_overlap_device_vs_cpu=overlap,
    )


def timed(call) -> float:
    import torch

    t0 = time.perf_counter()
    call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def one_size(make, n_cells: int, device: str, n_epochs: int | None) -> dict:
    import torch

    import scelm

    adata, groupby = make(n_cells)
    row = dict(cells=n_cells, genes=adata.n_vars, input="X" if adata.n_vars > 50 else "projection")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for precision in ("float32", "bfloat16"):
        fit = adata.copy() if precision == "float32" else adata
        row[f"fit_{precision}_s"] = timed(lambda fit=fit, p=precision: scelm.tl.parametric_umap(
            fit, device=device, precision=p, n_epochs=n_epochs, store_jacobian=False))
        if precision == "float32":
            fitted = fit
    row["n_models"] = int(fitted.uns["elm"]["params"]["n_models"])
    row["rank_s"] = timed(lambda: scelm.tl.rank_genes_elm(fitted, groupby, device=device))
    query = adata.copy()
    del query.uns["elm"], query.obsm["X_elm"]
    row["transform_s"] = timed(lambda: scelm.tl.transform(query, fitted, device=device, store_jacobian=False))
    row["transform_matches"] = relative(query.obsm["X_elm"], fitted.obsm["X_elm"])
    if torch.cuda.is_available():
        row["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return row


def fits_on_device(n_cells: int, device: str) -> bool:
    """Room for the projection, its kNN work and training, with a wide margin (x20)."""
    import torch

    if device == "cpu":
        return True
    free, _ = torch.cuda.mem_get_info()
    return n_cells * 50 * 4 * 20 < free


def main() -> None:
    import scanpy as sc
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, few epochs: checks the script runs")
    p.add_argument("--json", type=Path, default=Path("results/gpu.json"))
    p.add_argument("--budget-s", type=float, default=420.0)
    args = p.parse_args()
    sc.settings.verbosity = 0
    start = time.perf_counter()
    if args.smoke:
        device, n_eq, epochs = "cpu", 500, 5
        sizes = [(lambda n: simulated(n, 300), 1_000), (projection, 3_000)]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("bench_gpu.py needs a CUDA device (or --smoke to check the script on CPU).")
        device, n_eq, epochs = "cuda", 5_000, None
        sizes = [(lambda n: simulated(n, 2000), 100_000), (projection, 1_000_000), (projection, 5_000_000)]
    eq = equality(device, n_eq, epochs)
    ok = all(v <= TOLERANCE for k, v in eq.items() if k != "knn_overlap_device_vs_cpu") and eq["knn_overlap_device_vs_cpu"] > 0.99
    print_table([dict(check="equality", cells=n_eq, **eq, within_tolerance=ok)], f"{device} against CPU")
    rows, skipped = [], []
    for make, n in sizes:
        left = args.budget_s - (time.perf_counter() - start)
        # a size is run when the last one took less than a fifth of what is left (about 10x cells, 2x safety)
        if (rows and rows[-1]["total_s"] * 5 > left) or not fits_on_device(n, device):
            skipped.append(n)
            continue
        t0 = time.perf_counter()
        rows.append(one_size(make, n, device, epochs))
        rows[-1]["total_s"] = time.perf_counter() - t0
        print_table(rows[-1:], f"{n:,} cells")
    if rows:
        print_table(rows, f"scelm on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'})")
    if skipped:
        print(f"not run (time budget or memory): {skipped}")
    out = dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu", torch=torch.__version__,
               smoke=args.smoke, equality=eq, equality_ok=ok, timings=rows, skipped=skipped,
               seconds=time.perf_counter() - start)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    if not ok:
        raise SystemExit("device and CPU disagree beyond float32 tolerance")


if __name__ == "__main__":
    main()
