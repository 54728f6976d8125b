"""Small-data speed: epochs, ensemble size and width against quality, next to umap-learn.

    python benchmarks/bench_speed.py [--data pbmc sim3000 sim10000] [--seeds 3]
                                     [--epochs 100 200 400] [--models 5] [--hidden 64,64]
    python benchmarks/bench_speed.py --steps         # where a full-batch step's time goes
    python benchmarks/bench_speed.py --first-calls   # first call in fresh processes

For each data set, in one warm process (torch and numba imported and compiled before any
timing, as in a notebook's second call): umap-learn's time on the same input
(``sc.tl.umap`` on pbmc68k_reduced's stored graph; ``umap.UMAP`` on 50 PCs for simulated
data, which needs its own kNN, against scelm building its own PCA and graph from X), then
every (n_epochs, n_models, hidden) of the grid over ``--seeds`` seeds: median fit time,
its ratio to umap-learn, trustworthiness (k=15, 50-PC space) and 15-NN label accuracy of
the displayed (consensus) map, and the top-10 Jaccard of ``rank_genes_elm`` over pairs of
seeds. Unset grid values are scelm's defaults.
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
from _common import knn_accuracy, print_table, trustworthiness, warm_umap  # noqa: E402

warnings.filterwarnings("ignore")


def load(name: str):
    import scanpy as sc

    import scelm

    if name == "pbmc":
        return sc.datasets.pbmc68k_reduced(), "bulk_labels"
    adata, _ = scelm.datasets.simulate_markers(int(name.removeprefix("sim")), 2000, n_types=8, random_state=0)
    del adata.layers["counts"]
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata, "cell_type"


def umap_seconds(adata, repeats: int = 3) -> float:
    """Median time of umap-learn on the same input (a single run varied 2x on this machine)."""
    import scanpy as sc
    import umap

    times = []
    for seed in range(repeats):
        ad = adata.copy()
        t0 = time.perf_counter()
        if "neighbors" in ad.uns:
            sc.tl.umap(ad, random_state=seed)
        else:
            umap.UMAP(n_neighbors=15, min_dist=0.5, random_state=seed).fit_transform(ad.obsm["X_pca"])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def top10(adata) -> dict[str, set[str]]:
    names = adata.uns["rank_genes_elm"]["names"]
    return {g: set(names[g][:10]) for g in names.dtype.names}


def jaccard(a: dict, b: dict) -> float:
    return float(np.mean([len(a[g] & b[g]) / len(a[g] | b[g]) for g in a]))


def run_config(adata, groupby: str, seeds: int, **kw) -> dict:
    import scelm

    times, trust, knn, tops = [], [], [], []
    for seed in range(seeds):
        ad = adata.copy()
        t0 = time.perf_counter()
        scelm.tl.parametric_umap(ad, random_state=seed, **kw)
        times.append(time.perf_counter() - t0)
        Y = ad.obsm["X_elm"]
        trust.append(trustworthiness(ad.obsm["X_pca"], Y))
        knn.append(knn_accuracy(Y[:5000], ad.obs[groupby][:5000]))
        scelm.tl.rank_genes_elm(ad, groupby)
        tops.append(top10(ad))
    pairs = list(itertools.combinations(range(seeds), 2))
    return dict(fit_s=float(np.median(times)), trustworthiness=float(np.mean(trust)), knn_acc=float(np.mean(knn)),
                jaccard_top10=float(np.mean([jaccard(tops[i], tops[j]) for i, j in pairs])) if pairs else "")


def step_costs(n: int = 700, repeats: int = 200) -> list[dict]:
    """Milliseconds per training step of each part, on random data of pbmc68k_reduced's
    size (50 PCs in, 15 edges and 5 negatives per cell) and one of the default fit's CPU
    stacks of members: where a full-batch step goes."""
    import torch

    from scelm._core.encoder import StackedEncoder
    from scelm._core.loss import Pairs, umap_loss_and_gradient
    from scelm._core.train import member_groups
    from scelm.tl._fit_params import DEFAULT_HIDDEN, default_members

    members = len(member_groups(default_members(n), 1, torch.device("cpu"))[0])
    hidden = DEFAULT_HIDDEN

    def ms(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats * 1e3

    gen = torch.Generator().manual_seed(0)
    stack = StackedEncoder.random(50, hidden, 2, seeds=range(members))
    z = torch.randn(n, 50, generator=gen)
    cache = torch.randn(n * members, 2, generator=gen)  # the flat cache: row i * M + m
    member = torch.arange(members)

    def flat(cells: torch.Tensor) -> torch.Tensor:
        return (cells[None] * members + member[:, None]).reshape(-1)

    head, tail = torch.randint(0, n, (15 * n,), generator=gen), torch.randint(0, n, (15 * n,), generator=gen)
    neg_head = torch.arange(n).repeat_interleave(5)
    neg_tail = torch.randint(0, n * members, (5 * n * members,), generator=gen)
    pairs = Pairs(
        flat(head), flat(tail), torch.rand(15 * n * members), flat(neg_head), neg_tail, torch.rand(5 * n * members),
        scale=torch.ones(members), n_cells=n, negative_sample_rate=5,
        edge_member=member.repeat_interleave(15 * n), neg_member=member.repeat_interleave(5 * n),
    )

    def forward_backward():
        y = stack(z)
        y.backward(torch.ones_like(y))

    loss = lambda: umap_loss_and_gradient(cache, pairs, a=1.58, b=0.9, repulsion_strength=1.0)  # noqa: E731
    forward_backward()
    rows = [dict(part="encoder forward", ms=ms(lambda: stack(z))), dict(part="encoder forward + backward", ms=ms(forward_backward)),
            dict(part="UMAP loss and its gradient", ms=ms(loss))]
    for label, kw in [("AdamW step (default)", {}), ("AdamW step (fused, scelm)", dict(fused=True))]:
        rows.append(dict(part=label, ms=ms(torch.optim.AdamW(stack.parameters(), lr=1e-3, **kw).step)))
    opt = torch.optim.AdamW(stack.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    rows.append(dict(part="learning-rate schedule step", ms=ms(schedule.step)))
    return [dict(r, members=members, cells=n, threads=torch.get_num_threads()) for r in rows]


def first_call(method: str) -> None:
    """Seconds of the first call in a fresh process on pbmc68k_reduced, scanpy already
    imported: what a notebook user waits for (torch's import and set-up, numba's cache)."""
    import json

    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    t0 = time.perf_counter()
    if method == "umap-learn":
        sc.tl.umap(adata)
    else:
        import scelm

        scelm.tl.parametric_umap(adata)
    print(json.dumps(dict(method=method, first_call_s=time.perf_counter() - t0)))


def first_calls(repeats: int = 3) -> list[dict]:
    from _common import run_isolated

    rows = []
    for method in ("umap-learn", "scelm"):
        runs = [run_isolated([sys.executable, __file__, "--first-call", method], 600, method) for _ in range(repeats)]
        rows.append(dict(method=method, first_call_s=float(np.median([r["first_call_s"] for r in runs if r]))))
    return rows


def main() -> None:
    import scanpy as sc

    import scelm

    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", default=["pbmc", "sim3000", "sim10000"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, nargs="+", default=[None], help="n_epochs values (default: scelm's)")
    p.add_argument("--models", type=int, nargs="+", default=[None], help="n_models values (default: scelm's)")
    p.add_argument("--hidden", nargs="+", default=[None], help="hidden widths, e.g. 64,64 (default: scelm's)")
    p.add_argument("--steps", action="store_true", help="only the per-step cost table")
    p.add_argument("--first-calls", action="store_true", help="only the first call in fresh processes, pbmc")
    p.add_argument("--first-call", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.first_call:
        first_call(args.first_call)
        return
    if args.first_calls:
        print_table(first_calls(), "First call in a fresh process, pbmc68k_reduced (median of 3 processes)")
        return
    if args.steps:
        print_table(step_costs(), "Per-step cost of full-batch training (ms, pbmc68k_reduced's size)")
        return
    sc.settings.verbosity = 0
    warm = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(warm[:200].copy(), n_epochs=2)  # torch imports
    warm_umap()
    rows = []
    for name in args.data:
        adata, groupby = load(name)
        base = umap_seconds(adata)
        rows.append(dict(data=name, config="umap-learn", fit_s=base))
        for n_epochs, n_models, hidden in itertools.product(args.epochs, args.models, args.hidden):
            widths = {} if hidden is None else dict(hidden=tuple(int(h) for h in hidden.split(",")))
            r = run_config(adata, groupby, args.seeds, n_epochs=n_epochs, n_models=n_models, **widths)
            config = f"epochs={n_epochs or 'default'} models={n_models or 'default'} hidden={hidden or 'default'}"
            rows.append(dict(data=name, config=config, **r, vs_umap=r["fit_s"] / base))
            print(rows[-1], file=sys.stderr, flush=True)
    cols = ["data", "config", "fit_s", "vs_umap", "trustworthiness", "knn_acc", "jaccard_top10"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows], f"Speed and quality ({args.seeds} seeds, one warm process)")


if __name__ == "__main__":
    main()
