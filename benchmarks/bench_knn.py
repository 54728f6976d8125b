"""Exact kNN against pynndescent on CPU, as a user pays them: the crossover behind
``scelm._core.graph.EXACT_MAX``.

    python benchmarks/bench_knn.py [--sizes 10000 20000 30000 50000 100000]

Data: a mixture of 12 Gaussians in 50 dimensions (standing for 50 PCs), 15 neighbours.
pynndescent's numba code compiles on its first call in a process; that cost is printed
once (5,000 cells), then both methods are timed warm at each size. A fresh process pays
exact(n) against compile + warm pynndescent(n).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402


def mixture(n: int, rng) -> np.ndarray:
    centres = rng.normal(scale=3, size=(12, 50))
    return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, 50))).astype(np.float32)


def seconds(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main() -> None:
    import torch
    from pynndescent import NNDescent

    from scelm._core.graph import exact_knn

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 30_000, 50_000, 100_000])
    args = p.parse_args()
    rng = np.random.default_rng(0)
    descent = lambda x: NNDescent(x, n_neighbors=15, random_state=0, n_jobs=-1).neighbor_graph  # noqa: E731
    compile_s = seconds(descent, mixture(5000, rng))
    rows = []
    for n in args.sizes:
        x = mixture(n, rng)
        exact = seconds(exact_knn, x, 15, device=torch.device("cpu"))
        warm = seconds(descent, x)
        rows.append(dict(cells=n, exact_s=exact, nndescent_warm_s=warm, nndescent_fresh_process_s=warm + compile_s))
    print_table(rows, f"kNN on CPU (pynndescent's first call in a process: {compile_s:.1f} s with its compilation)")


if __name__ == "__main__":
    main()
