"""Scaling: scelm vs umap-learn from 10^3 to 2x10^5 cells, same data, same run.

    python benchmarks/bench_scale.py [--sizes 1000 10000 50000 100000 200000] [--n-genes 2000]
                                     [--device cpu|cuda] [--timeout 1800]
    python benchmarks/bench_scale.py --memory --sizes 100000 [--repeats 3]
    python benchmarks/bench_scale.py --atlas --sizes 500000 1000000 [--fit-cells 100000] [--umap] [--seeds 2]

Data: ``scelm.datasets.simulate_markers`` (8 types), log-normalised sparse X, written once
per size to ``--workdir`` with scanpy's 50 PCs. Each (size, method) runs in a fresh
process. umap-learn embeds the 50 PCs (``sc.pp.neighbors`` fails from 8,192 cells with
scipy >= 1.15, so it is called directly); scelm reads X itself (its own PCA, graph, fit),
then ``rank_genes_elm`` computes Jacobian group moments for every cell.

Memory: ``peak_over_X`` is the peak RSS added during ``parametric_umap(
store_jacobian=False)`` + ``rank_genes_elm`` over the bytes of X; "scelm (dense X)" is the
same with X densified (float32) first. ``--memory`` instead runs the defaults
(``store_jacobian='auto'``) at the largest size, sparse and dense, ``--repeats`` fresh
processes each, and prints the peak added by each stage (input checks, front end, graph,
training, outputs, ranking) and by each trust tool after it (``deletion_curve(n_genes=10)``,
``perturb`` of one type's top 10 genes, ``pl.reconstruction``), RSS sampled every 5 ms;
``*_peak_rss_over_X`` is the whole process's peak RSS (X included) over the bytes of X.
Quality: trustworthiness and kNN label accuracy on 5,000 cells, against the 50 PCs.

Atlas: ``--atlas`` runs, at each size (sparse X; above 200,000 cells written block by block,
X_pca fitted on 100,000 cells), the defaults' fit + ``rank_genes_elm`` +
``deletion_curve(n_genes=10)`` on every cell, timed and peaked by stage, then the recipe:
fit on ``--fit-cells`` random cells, ``transform`` every cell, rank every cell, with the
top-10 agreement of its ranking with the every-cell fit's; ``--umap`` adds umap-learn;
``--seeds N`` adds every-cell fits (+ ranking) from ``random_state`` 1 to N-1, each with
its top-10 agreement with the first (``random_state=0``): the seed-to-seed agreement the
recipe's is compared with.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, StagePeaks, knn_accuracy, print_table, run_isolated, timer, trustworthiness, warm_umap  # noqa: E402

warnings.filterwarnings("ignore")


def data_path(workdir: Path, n_cells: int, n_genes: int) -> Path:
    """Simulate once per size; the h5ad holds X (log-normalised CSR) and X_pca."""
    import scanpy as sc

    import scelm

    path = workdir / f"sim_{n_cells}x{n_genes}.h5ad"
    if path.exists():
        return path
    # Written under another name and renamed when complete: an interrupted run leaves no
    # truncated file for the next one to read.
    partial = path.with_name(path.name + ".partial")
    if n_cells > LEAN_ABOVE:
        write_lean(partial, n_cells, n_genes)
    else:
        adata, _ = scelm.datasets.simulate_markers(n_cells, n_genes, n_types=8, random_state=0)
        del adata.layers["counts"]
        sc.pp.pca(adata, n_comps=50, random_state=0)
        adata.write_h5ad(partial)
    partial.replace(path)
    return path


LEAN_ABOVE = 200_000  # larger data are written block by block: X is never held twice
PCA_FIT_CELLS = 100_000


def write_lean(path: Path, n_cells: int, n_genes: int) -> None:
    """The same cells as ``simulate_markers(n_cells, n_genes, n_types=8)``'s X, appended to
    the h5ad block by block; X_pca (the reference of trustworthiness and umap-learn's
    input) is scanpy's PCA fitted on ``PCA_FIT_CELLS`` random cells, applied to all."""
    import anndata as ad
    import h5py
    import scanpy as sc
    from anndata.io import sparse_dataset, write_elem
    from scipy import sparse

    from scelm.datasets._simulate import log_normalize, simulated_blocks

    obs, var, _, blocks = simulated_blocks(n_cells, n_genes, n_types=8, random_state=0)
    keep = np.sort(np.random.default_rng(0).choice(n_cells, PCA_FIT_CELLS, replace=False))
    sample, start = [], 0
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        for block in blocks:
            block = log_normalize(block)
            rows = keep[(keep >= start) & (keep < start + block.shape[0])] - start
            sample.append(block[rows])
            if start == 0:
                write_elem(f, "X", block)
                X = sparse_dataset(f["X"])
            else:
                X.append(block)
            start += block.shape[0]
        sub = ad.AnnData(X=sparse.vstack(sample, format="csr"))
        sc.pp.pca(sub, n_comps=50, random_state=0)
        pcs, mean = sub.varm["PCs"], np.asarray(sub.X.mean(0)).ravel()
        X_pca = np.vstack([X[i : i + 50_000] @ pcs - mean @ pcs for i in range(0, n_cells, 50_000)]).astype(np.float32)
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        write_elem(f, "obsm", {"X_pca": X_pca})


def x_bytes(X) -> int:
    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if hasattr(X, "indptr") else X.nbytes


def run_umap(adata, device):
    import umap

    warm_umap()
    out = {}
    with PeakRSS() as mem, timer(out, "total_s"):
        Y = umap.UMAP(n_neighbors=15, min_dist=0.5, random_state=0).fit_transform(adata.obsm["X_pca"])
    out["peak_over_X"] = (mem.peak - mem.before) * 2**30 / x_bytes(adata.X)
    return Y, out


def run_scelm(adata, device):
    import scanpy as sc

    import scelm
    from scelm._core.blocks import GeneColumns
    from scelm._core.frontend import fit_front_end
    from scelm._core.graph import fuzzy_graph

    sc.settings.verbosity = 0
    scelm.tl.parametric_umap(adata[:300].copy(), n_epochs=2, store_jacobian=False, device=device)  # warm torch
    gc.collect()
    out = {}
    # The graph on its own, to break the fit time down (parametric_umap builds it again).
    cols = GeneColumns(adata.X, np.arange(adata.n_vars))
    with timer(out, "pca_s"):
        z = fit_front_end(cols, n_pcs=50, center=False).project(cols)
    with timer(out, "graph_s"):
        fuzzy_graph(z, n_neighbors=15, random_state=0, device=scelm._core.device.resolve_device(device))
    del z
    gc.collect()
    with PeakRSS() as mem:
        with timer(out, "fit_s"):
            scelm.tl.parametric_umap(adata, store_jacobian=False, device=device)
        with timer(out, "rank_s"):
            scelm.tl.rank_genes_elm(adata, "cell_type", device=device)
    out["total_s"] = out["fit_s"] + out["rank_s"]
    out["jac_cells_per_s"] = adata.n_obs / out["rank_s"]
    out["peak_over_X"] = (mem.peak - mem.before) * 2**30 / x_bytes(adata.X)
    return adata.obsm["X_elm"], out


def run_scelm_dense(adata, device):
    adata.X = adata.X.toarray()  # float32, as dense as an atlas someone densified
    return run_scelm(adata, device)


METHODS = {"umap-learn": run_umap, "scelm": run_scelm, "scelm (dense X)": run_scelm_dense}
FIT_STAGES = ["input", "front end", "graph", "training", "outputs", "ranking"]
TOOLS = ["deletion", "perturb", "reconstruction"]


def run_tool(adata, tool: str, device: str) -> None:
    import scelm

    if tool == "deletion":
        scelm.tl.deletion_curve(adata, n_genes=10, device=device)
    elif tool == "perturb":
        scelm.tl.perturb(adata, list(adata.uns["rank_genes_elm"]["names"]["type0"][:10]), groupby="cell_type",
                         groups="type0", device=device)
    else:
        scelm.pl.reconstruction(adata, show=False)


def stage_peaks(path: str, layout: str, device: str, tools: list[str]) -> dict:
    """Peak RSS added and time taken by each stage of the defaults' ``parametric_umap`` +
    ``rank_genes_elm``, then by each of ``tools`` after it, in this (fresh) process; peaks
    over the bytes of X, RSS sampled every 5 ms."""
    import anndata as ad
    import matplotlib
    import scanpy as sc

    matplotlib.use("Agg")
    import scelm
    import scelm._core.frontend as frontend
    import scelm._core.train as train
    import scelm.tl._fit as fit
    import scelm.tl._parametric_umap as pu

    sc.settings.verbosity = 0
    t0 = time.perf_counter()
    adata = ad.read_h5ad(path)
    read_s = time.perf_counter() - t0
    if layout == "dense":
        adata.X = adata.X.toarray()
    gc.collect()
    with StagePeaks() as mem:
        def marked(module, name, stage):
            original = getattr(module, name)
            setattr(module, name, lambda *a, **k: (mem.stage(stage), original(*a, **k))[1])

        for module, name, stage in [(fit, "model_input", "input"), (frontend, "fit_front_end", "front end"),
                                    (pu, "graph_edges", "graph"), (train, "train_members", "training"),
                                    (fit, "compute_outputs", "outputs")]:
            marked(module, name, stage)
        scelm.tl.parametric_umap(adata, device=device)
        mem.stage("ranking")
        scelm.tl.rank_genes_elm(adata, "cell_type", device=device)
        fit_rank = mem.peak
        for tool in tools:  # one after the other: each stage's peak is what that tool adds
            mem.stage(tool)
            run_tool(adata, tool, device)
    x_gb = x_bytes(adata.X) / 2**30
    stages = FIT_STAGES + tools
    out = {stage: (mem.peaks.get(stage, mem.before) - mem.before) / x_gb for stage in stages}
    out.update({f"{stage}_s": mem.seconds.get(stage, 0.0) for stage in stages})
    out.update(X=layout, X_gb=x_gb, read_s=read_s, added_over_X=(fit_rank - mem.before) / x_gb,
               peak_rss_over_X=mem.peak / x_gb, fit_rank_peak_rss_over_X=fit_rank / x_gb,
               tools_peak_rss_over_X=max([mem.peaks.get(s, 0) for s in tools] or [0]) / x_gb,
               fit_rank_s=sum(mem.seconds.get(s, 0.0) for s in ["start", *FIT_STAGES]),
               trustworthiness=trustworthiness(adata.obsm["X_pca"], adata.obsm["X_elm"]),
               top10=top10_genes(adata),
               layers_gb=sum(v.nbytes for k, v in adata.layers.items() if "jacobian" in k) / 2**30)
    return out


def recipe(path: str, device: str, n_fit: int) -> dict:
    """The atlas recipe: fit on ``n_fit`` random cells, ``transform`` every cell with that
    model, rank on every cell; times and the peak RSS over X, in this (fresh) process."""
    import anndata as ad
    import scanpy as sc

    import scelm

    sc.settings.verbosity = 0
    adata = ad.read_h5ad(path)
    out = {}
    with PeakRSS() as mem:
        with timer(out, "subsample_fit_s"):
            ref = adata[np.sort(np.random.default_rng(0).choice(adata.n_obs, n_fit, replace=False))].copy()
            scelm.tl.parametric_umap(ref, device=device)
        with timer(out, "transform_s"):
            scelm.tl.transform(adata, ref, device=device)
        with timer(out, "ranking_s"):
            scelm.tl.rank_genes_elm(adata, "cell_type", device=device)
    out.update(fit_cells=n_fit, X_gb=x_bytes(adata.X) / 2**30, peak_rss_over_X=mem.peak * 2**30 / x_bytes(adata.X),
               total_s=sum(out.values()), trustworthiness=trustworthiness(adata.obsm["X_pca"], adata.obsm["X_elm"]),
               top10=top10_genes(adata))
    return out


def seed_fit(path: str, device: str, seed: int) -> dict:
    """The defaults' fit + ranking of every cell from ``random_state=seed``, in this (fresh)
    process: time, trustworthiness and each group's top 10."""
    import anndata as ad
    import scanpy as sc

    import scelm

    sc.settings.verbosity = 0
    adata = ad.read_h5ad(path)
    out = {}
    with timer(out, "fit_s"):
        scelm.tl.parametric_umap(adata, random_state=seed, device=device)
    with timer(out, "ranking_s"):
        scelm.tl.rank_genes_elm(adata, "cell_type", device=device)
    out.update(fit_rank_s=out["fit_s"] + out["ranking_s"], trustworthiness=trustworthiness(adata.obsm["X_pca"], adata.obsm["X_elm"]),
               top10=top10_genes(adata))
    return out


def top10_genes(adata) -> dict:
    """Each cell type's top 10 genes in ``uns['rank_genes_elm']``."""
    return {g: list(adata.uns["rank_genes_elm"]["names"][g][:10]) for g in adata.obs["cell_type"].cat.categories}


def top10_agreement(a: dict, b: dict) -> float:
    """Mean Jaccard index of two rankings' top 10 genes, over groups."""
    return float(np.mean([len(set(a[g]) & set(b[g])) / len(set(a[g]) | set(b[g])) for g in a]))


def atlas_table(args) -> None:
    """Fit + rank + deletion_curve on every cell, then the subsample recipe, at each size;
    umap-learn beside them where it finishes within ``--timeout``."""
    rows = []
    for n in args.sizes:
        path = str(data_path(args.workdir, n, args.n_genes))
        full = run_isolated([sys.executable, __file__, "--stages", path, "sparse", "deletion", "--device", args.device],
                            args.timeout, f"{n}/full")
        part = run_isolated([sys.executable, __file__, "--recipe", path, str(args.fit_cells), "--device", args.device],
                            args.timeout, f"{n}/recipe")
        umap = run_isolated([sys.executable, __file__, "--one", path, "umap-learn"], args.timeout, f"{n}/umap") if args.umap else None
        seeds = [(f"every cell, random_state={seed}",
                  run_isolated([sys.executable, __file__, "--seed-fit", path, str(seed), "--device", args.device],
                               args.timeout, f"{n}/seed {seed}")) for seed in range(1, args.seeds)]
        for label, r in (("every cell", full), (f"fit {args.fit_cells:,}, transform", part), *seeds):
            if r is None or r.get("stopped"):
                rows.append(dict(cells=n, run=label, total_s="stopped" if r else "failed"))
                continue
            is_full = r is full
            r = dict(cells=n, run=label, **r)
            if full and not full.get("stopped") and not is_full:
                r["top10_agreement_with_every_cell"] = top10_agreement(r["top10"], full["top10"])
            if umap and not umap.get("stopped"):
                r.update(umap_learn_s=umap["total_s"], umap_learn_trust=umap["trustworthiness"])
            rows.append({k: v for k, v in r.items() if k != "top10"})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cols = ["cells", "run", "read_s", "front end_s", "graph_s", "training_s", "outputs_s", "ranking_s", "fit_rank_s",
            "subsample_fit_s", "transform_s", "fit_s", "total_s", "deletion_s", "umap_learn_s", "trustworthiness",
            "umap_learn_trust", "top10_agreement_with_every_cell", "fit_rank_peak_rss_over_X", "tools_peak_rss_over_X",
            "peak_rss_over_X", "X_gb"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows],
                f"Atlas scale ({args.device}, {args.n_genes} genes, sparse X, fresh process each)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def memory_table(args) -> None:
    """Peak by stage, dense and sparse X, ``--repeats`` fresh processes each."""
    n = args.sizes[-1]
    path = data_path(args.workdir, n, args.n_genes)
    rows = []
    for layout in ("sparse", "dense"):
        for repeat in range(args.repeats):
            cmd = [sys.executable, __file__, "--stages", str(path), layout, *TOOLS, "--device", args.device]
            r = run_isolated(cmd, args.timeout, f"{n}/{layout}/{repeat}")
            if r is not None and not r.get("stopped"):
                rows.append(dict(cells=n, repeat=repeat, **r))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cols = ["cells", "X", "repeat", "X_gb", *FIT_STAGES, *TOOLS, "added_over_X", "fit_rank_peak_rss_over_X", "tools_peak_rss_over_X",
            "layers_gb"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows],
                f"Peak RSS added by stage over X, defaults ({args.device}, {args.n_genes} genes, fresh process each)")


def one(path: str, method: str, device: str) -> dict:
    import anndata as ad

    adata = ad.read_h5ad(path)
    Y, out = METHODS[method](adata, device)
    ref = adata.obsm["X_pca"]
    out.update(
        cells=adata.n_obs, method=method, X_gb=x_bytes(adata.X) / 2**30,
        trustworthiness=trustworthiness(ref, Y), knn_acc=knn_accuracy(Y[:5000], adata.obs["cell_type"][:5000]),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000, 100_000, 200_000])
    p.add_argument("--n-genes", type=int, default=2_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "scelm_bench")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per (size, method)")
    p.add_argument("--one", nargs=2, metavar=("PATH", "METHOD"))
    p.add_argument("--memory", action="store_true", help="only the peak-by-stage table, at the largest --sizes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stages", nargs="+", metavar="PATH LAYOUT [TOOL ...]")
    p.add_argument("--atlas", action="store_true", help="fit + rank + deletion on every cell, and the subsample recipe")
    p.add_argument("--fit-cells", type=int, default=100_000, help="--atlas: cells the recipe fits on")
    p.add_argument("--umap", action="store_true", help="--atlas: umap-learn beside it")
    p.add_argument("--recipe", nargs=2, metavar=("PATH", "FIT_CELLS"))
    p.add_argument("--seeds", type=int, default=1, help="--atlas: every-cell fits from random_state 0 to seeds-1")
    p.add_argument("--seed-fit", nargs=2, metavar=("PATH", "SEED"))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.device)))
        return
    if args.stages:
        print(json.dumps(stage_peaks(args.stages[0], args.stages[1], args.device, args.stages[2:])))
        return
    if args.recipe:
        print(json.dumps(recipe(args.recipe[0], args.device, int(args.recipe[1]))))
        return
    if args.seed_fit:
        print(json.dumps(seed_fit(args.seed_fit[0], args.device, int(args.seed_fit[1]))))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.memory:
        memory_table(args)
        return
    if args.atlas:
        atlas_table(args)
        return
    rows = []
    for n in args.sizes:
        path = data_path(args.workdir, n, args.n_genes)
        base = None
        for method in METHODS:
            cmd = [sys.executable, __file__, "--one", str(path), method, "--device", args.device]
            r = run_isolated(cmd, args.timeout, f"{n}/{method}")
            if r is None:
                continue
            if r.get("stopped"):
                rows.append(dict(cells=n, method=method, total_s=f"> {args.timeout:.0f} (stopped)"))
                continue
            base = r if method == "umap-learn" else base
            if base is not None:
                r["vs_umap"] = r["total_s"] / base["total_s"]
                r["d_trust"] = r["trustworthiness"] - base["trustworthiness"]
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    cols = ["cells", "method", "X_gb", "pca_s", "graph_s", "fit_s", "rank_s", "total_s", "vs_umap",
            "jac_cells_per_s", "trustworthiness", "d_trust", "knn_acc", "peak_over_X"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows], f"Scaling ({args.device}, {args.n_genes} genes)")


if __name__ == "__main__":
    main()
