"""The training engine, measured side by side in one process: the same objective in blocks
and at full batch, and the same map on any number of threads.

    python benchmarks/bench_engine.py [--cells 3000] [--seeds 3]

(a) blocks against full batch at equal optimizer steps: ``train_batch_size=500`` for 200
    epochs (6 blocks, 1,200 steps) against full batch for 1,200 epochs, on simulated data
    (``simulate_markers``, 2,000 genes, 8 types; the graph of 50 PCs), trustworthiness
    (k=15, 50-PC space) of each, mean over seeds;
(b) thread invariance: the largest difference between ``X_elm`` fitted with torch on 1 and
    on 2 threads, relative to the map's largest coordinate, for a full-batch and a block fit.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, trustworthiness  # noqa: E402
from bench_trust import load  # noqa: E402

warnings.filterwarnings("ignore")


def fit(adata, **kw) -> tuple[np.ndarray, float]:
    import scelm

    ad = adata.copy()
    t0 = time.perf_counter()
    scelm.tl.parametric_umap(ad, store_jacobian=False, **kw)
    return ad.obsm["X_elm"], time.perf_counter() - t0


def main() -> None:
    import scanpy as sc
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--cells", type=int, default=3000)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    sc.settings.verbosity = 0
    adata, _ = load(f"sim{args.cells}")
    pcs = adata.obsm["X_pca"]
    rows = []
    for label, kw in [("blocks of 500 x 200 epochs", dict(train_batch_size=500, n_epochs=200)),
                      ("full batch x 1,200 epochs", dict(n_epochs=1200))]:
        res = [fit(adata, random_state=s, **kw) for s in range(args.seeds)]
        rows.append(dict(fit=label, steps=1200, trust=float(np.mean([trustworthiness(pcs, y) for y, _ in res])),
                         fit_s=float(np.median([t for _, t in res]))))
    print_table(rows, f"one objective: {args.cells} cells, {args.seeds} seeds")
    threads = []
    before = torch.get_num_threads()
    for label, kw in [("full batch", {}), ("blocks of 500", dict(train_batch_size=500))]:
        maps = []
        for n in (1, 2):
            torch.set_num_threads(n)
            maps.append(fit(adata, random_state=0, n_epochs=100, **kw)[0])
        torch.set_num_threads(before)
        threads.append(dict(fit=label, max_rel_diff_1_vs_2_threads=float(np.abs(maps[0] - maps[1]).max() / np.abs(maps[0]).max())))
    print_table(threads, "the same random_state on 1 and 2 threads")


if __name__ == "__main__":
    main()
