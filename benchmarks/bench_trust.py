"""Trust in ELM rankings, under the defaults, side by side with scanpy in one warm process.

    python benchmarks/bench_trust.py [--data pbmc sim2000 sim10000 sim50000 sim50000x10 sim200000] [--seeds 5]
                                     [--configs default "n_models=1" "n_models=3,hidden=64-64"]
                                     [--json results/trust.json]
    python benchmarks/bench_trust.py --pool results/*.json [--configs default]
    python benchmarks/bench_trust.py --timing 3 [--data ...]

For pbmc68k_reduced (``bulk_labels``) and simulated data (``scelm.datasets.simulate_markers``,
2,000 genes, 8 types; ``sim50000x10``: 10 types), every method embeds the same graph: pbmc68k_reduced's stored
``sc.pp.neighbors`` graph, and for simulated data the UMAP graph of 50 PCs (15-NN, exact up
to 50,000 cells and NNDescent above, built once and stored as ``uns['neighbors']``, since
``sc.pp.neighbors`` fails from 8,192 cells with pynndescent 0.7 and scipy 1.17). Each scelm configuration is fitted with
``--seeds`` values of ``random_state``; ``sc.tl.umap`` with 3. Measured:

(a) exactness against the displayed map: the largest relative error of the contributions'
    sum against ``X_elm`` and of each group's separation scores' sum against its centroid
    distance in ``X_elm``;
(b) stability: top-10 agreement (Jaccard, mean over groups and pairs of seeds) of
    ``rank_genes_elm``, with its jackknife standard error over the seeds (``agreement_se``:
    how far another run with other seeds may land), beside the t-test-wilcoxon agreement on
    the same genes;
(c) calibration: Spearman correlation, over groups, between the ``stability`` one fit
    reports (mean over seeds) and the group's measured agreement; the confident top genes
    one fit reports (``n_confident`` per group) and the share of them in another seed's
    top 10 (``confident_kept``); per group, ``direction_agreement`` beside its agreement;
(d) faithfulness: deletion@10 (protocol 'both') on the displayed map of the first 2 seeds,
    for ELM, t-test, wilcoxon and logreg;
(e) trustworthiness (k=15, 50-PC space, 5,000 cells) against ``sc.tl.umap``;
(f) fit time (median over seeds) against ``sc.tl.umap``'s on the same graph;
(g) each configuration's top-10 agreement with the first configuration's fits (other seeds).

``--pool a.json b.json ...`` prints, instead, the per-group calibration of earlier runs pooled
(of the first ``--configs``): the mean distance of reported stability from measured
agreement, and the groups the warning caught, by measured agreement.

``--timing N`` prints, instead, only the time: N rounds of ``sc.tl.umap`` then the default
``parametric_umap`` (``random_state`` = the round), each on its own copy of the data, medians
and their ratio (after the warm-up every run makes).

A configuration ``fit_cells=N`` is the large-data recipe: fit on N random cells (on their own
graph) and ``scelm.tl.transform`` every cell, then rank every cell.
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
from _common import alternating_rounds, print_table, trustworthiness  # noqa: E402

from scelm._core.options import CONFIDENT, UNSTABLE  # noqa: E402

warnings.filterwarnings("ignore")
DE = ("t-test", "wilcoxon", "logreg")
DELETION_SEEDS = 2
UMAP_SEEDS = 3


def load(name: str):
    """AnnData with 50 PCs and a stored UMAP graph, and its groupby column."""
    import scanpy as sc
    import torch

    import scelm
    from scelm._core.graph import fuzzy_graph

    if name == "pbmc":
        return sc.datasets.pbmc68k_reduced(), "bulk_labels"
    n_cells, _, n_types = name.removeprefix("sim").partition("x")
    adata, _ = scelm.datasets.simulate_markers(int(n_cells), 2000, n_types=int(n_types or 8), random_state=0)
    del adata.layers["counts"]
    sc.pp.pca(adata, n_comps=50, random_state=0)
    graph = fuzzy_graph(adata.obsm["X_pca"], n_neighbors=15, random_state=0, device=torch.device("cpu"), method="auto")
    adata.obsp["connectivities"] = adata.obsp["distances"] = graph
    adata.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances",
                              "params": {"n_neighbors": 15, "method": "umap", "use_rep": "X_pca"}}
    return adata, "cell_type"


def parse_config(text: str) -> dict:
    """``'n_models=3,hidden=64-64'`` -> keyword arguments of parametric_umap."""
    if text == "default":
        return {}
    out = {}
    for item in text.split(","):
        key, value = item.split("=")
        out[key] = tuple(int(v) for v in value.split("-")) if key == "hidden" else _number_or_text(value)
    return out


def _number_or_text(value: str):
    if value in ("True", "False"):  # a switch, never the truthy string
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def top(adata, key: str, n: int = 10) -> dict[str, set[str]]:
    names = adata.uns[key]["names"]
    return {g: set(names[g][:n]) for g in names.dtype.names}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def exactness(adata, groupby: str, elm_key: str = "elm", rank_key: str = "rank_genes_elm") -> float:
    """Largest relative error, against the displayed map, of the contributions' sum and of
    each group's separation scores' sum (its centroid distance)."""
    import scelm

    Y = adata.obsm[f"X_{elm_key}"].astype(np.float64)
    total = np.zeros_like(Y)
    for start in range(0, adata.n_obs, 4096):  # the sum only: no n x d x genes array
        total[start : start + 4096] = scelm.get.contributions(adata[start : start + 4096], elm_key=elm_key).sum(-1)
    err = np.abs(total - Y).max() / np.abs(Y).max()
    labels = adata.obs[groupby].astype(str).to_numpy()
    res = adata.uns[rank_key]
    for g in res["names"].dtype.names:
        dist = np.linalg.norm(Y[labels == g].mean(0) - Y[labels != g].mean(0))
        err = max(err, abs(res["scores"][g].astype(np.float64).sum() - dist) / dist)
    return float(err)


def de_rankings(adata, groupby: str, elm_key: str = "elm") -> None:
    """scanpy's DE on the genes the model ``elm_key`` reads, from the matrix it reads."""
    import scanpy as sc

    genes = np.asarray(adata.uns[elm_key]["var_names"]).astype(str)
    src = adata.raw.to_adata() if adata.raw is not None else adata
    sub = src[:, genes].copy()
    sub.obs = adata.obs
    for method in DE:
        sc.tl.rank_genes_groups(sub, groupby, method=method, use_raw=False, key_added=method)
        adata.uns[method] = sub.uns[method]


def deletion_at_10(adata, key: str, elm_key: str = "elm") -> float:
    import scelm

    scelm.tl.deletion_curve(adata, key, elm_key=elm_key, n_genes=10, protocol="both", key_added="d")
    return float(adata.uns["d"]["removed"]["10"].mean())


def one_fit(adata, groupby: str, seed: int, config: dict, *, deletion: bool) -> dict:
    import scelm

    ad, config = adata.copy(), dict(config)
    t0 = time.perf_counter()
    if (fit_cells := config.pop("fit_cells", None)) is not None and fit_cells < ad.n_obs:
        # the large-data recipe: fit on random cells (their own graph), transform every cell
        sub = ad[np.random.default_rng(seed).choice(ad.n_obs, fit_cells, replace=False)].copy()
        del sub.uns["neighbors"], sub.obsp["connectivities"], sub.obsp["distances"]
        scelm.tl.parametric_umap(sub, random_state=seed, **config)
        scelm.tl.transform(ad, sub)
    else:
        scelm.tl.parametric_umap(ad, random_state=seed, **config)
    out = {"time": time.perf_counter() - t0, "embedding": ad.obsm["X_elm"], "n_models": int(ad.uns["elm"]["params"]["n_models"])}
    scelm.tl.rank_genes_elm(ad, groupby)
    res = ad.uns["rank_genes_elm"]
    for summary in ("stability", "direction_agreement", "n_confident"):
        out[summary] = {g: float(res[summary][g][0]) for g in res["names"].dtype.names}
    out["top"] = top(ad, "rank_genes_elm")
    out["confident"] = {g: set(np.asarray(res["names"][g])[np.asarray(res["top_frequency"][g]) >= CONFIDENT]) for g in out["top"]}
    out["exactness"] = exactness(ad, groupby)
    if deletion:
        de_rankings(ad, groupby)
        out["deletion"] = {key: deletion_at_10(ad, key) for key in ("rank_genes_elm", *DE)}
        out["de_top"] = {m: top(ad, m) for m in DE}
    return out


def umap_runs(adata, seeds: int) -> tuple[float, list[np.ndarray]]:
    import scanpy as sc

    times, maps = [], []
    for seed in range(seeds):
        ad = adata.copy()
        t0 = time.perf_counter()
        sc.tl.umap(ad, random_state=seed)
        times.append(time.perf_counter() - t0)
        maps.append(ad.obsm["X_umap"])
    return float(np.median(times)), maps


def timing_table(names: list[str], rounds: int) -> None:
    """Median time of ``sc.tl.umap`` and of the default fit, in alternating rounds."""
    import scanpy as sc

    import scelm

    rows = []
    for name in names:
        adata, _ = load(name)
        times = alternating_rounds(adata, {"umap": lambda ad, seed: sc.tl.umap(ad, random_state=seed),
                                           "fit": lambda ad, seed: scelm.tl.parametric_umap(ad, random_state=seed)}, rounds)
        umap_s, fit_s = float(np.median(times["umap"])), float(np.median(times["fit"]))
        rows.append(dict(data=name, rounds=rounds, umap_s=umap_s, fit_s=fit_s, fit_vs_umap=fit_s / umap_s,
                         fit_range=f"{min(times['fit']):.1f}-{max(times['fit']):.1f}"))
        print_table(rows[-1:], f"{name}: time")
    print_table(rows, f"default fit against sc.tl.umap, median of {rounds} rounds")


def jackknife_se(pairs: list[tuple[int, int]], pair_jaccard: np.ndarray, n_seeds: int) -> float:
    """Jackknife standard error over the seeds of the mean of ``pair_jaccard`` ``(pairs,
    groups)`` (NaN below 3 seeds)."""
    if n_seeds < 3:
        return float("nan")
    leave_one_out = np.array([pair_jaccard[[s not in p for p in pairs]].mean() for s in range(n_seeds)])
    return float(np.sqrt((n_seeds - 1) / n_seeds * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))


def summarise(name: str, label: str, runs: list[dict], pcs: np.ndarray, umap_time: float, umap_trust: float) -> tuple[dict, list]:
    pairs = list(itertools.combinations(range(len(runs)), 2))
    groups = list(runs[0]["top"])
    pair_jaccard = np.array([[jaccard(runs[i]["top"][g], runs[j]["top"][g]) for g in groups] for i, j in pairs])
    per_group = dict(zip(groups, pair_jaccard.mean(0).tolist()))
    reported = {g: float(np.nanmean([r["stability"][g] for r in runs])) for g in groups}
    # Of the genes one fit calls confident, the share in another fit's top 10.
    kept = [len(runs[i]["confident"][g] & runs[j]["top"][g]) for i, j in itertools.permutations(range(len(runs)), 2) for g in groups]
    called = [len(runs[i]["confident"][g]) for i, j in itertools.permutations(range(len(runs)), 2) for g in groups]
    with_del = [r for r in runs if "deletion" in r]
    de = with_del[0]["de_top"]
    row = dict(
        data=name, config=label, n_models=runs[0]["n_models"],
        exactness=max(r["exactness"] for r in runs),
        agreement=float(np.mean(list(per_group.values()))), agreement_se=jackknife_se(pairs, pair_jaccard, len(runs)),
        ttest_vs_wilcoxon=float(np.mean([jaccard(de["t-test"][g], de["wilcoxon"][g]) for g in groups])),
        reported_stability=float(np.nanmean(list(reported.values()))),
        n_confident=float(np.mean([r["n_confident"][g] for r in runs for g in groups])),
        confident_kept=float(sum(kept) / max(sum(called), 1)),
        **{f"del10_{k.replace('rank_genes_elm', 'elm')}": float(np.mean([r["deletion"][k] for r in with_del]))
           for k in ("rank_genes_elm", *DE)},
        trust=float(np.mean([trustworthiness(pcs, r["embedding"]) for r in runs])), trust_umap=umap_trust,
        fit_s=float(np.median([r["time"] for r in runs])), umap_s=umap_time,
    )
    row["fit_vs_umap"] = row["fit_s"] / umap_time
    row["best_de_del10"] = max(row[f"del10_{m}"] for m in DE)
    spread = {g: float(np.mean([r["direction_agreement"][g] for r in runs])) for g in groups}
    calibration = [(name, g, reported[g], per_group[g], spread[g]) for g in groups]
    return row, calibration


def warning_record(files: list[Path], label: str) -> None:
    """Pool the per-group calibration of earlier runs (their ``--json``) for one
    configuration: how far the reported stability is from the measured agreement, and which
    groups the warning (reported below ``UNSTABLE``) caught, by measured agreement."""
    from scipy.stats import spearmanr

    pts = [c for f in files for c in json.loads(f.read_text())["calibration"] if c[0] == label and np.isfinite(c[3])]
    if not pts:
        raise SystemExit(f"no per-group calibration of configuration {label!r} in {[str(f) for f in files]}")
    reported, measured = np.array([c[3] for c in pts]), np.array([c[4] for c in pts])
    print_table([dict(
        config=label, data_sets=len({c[1] for c in pts}), groups=len(pts),
        mean_abs_reported_minus_measured=float(np.abs(reported - measured).mean()),
        spearman=float(spearmanr(reported, measured).statistic),
    )], "calibration pooled over groups")
    table = []
    for band, lo, hi in (("[0.0, 0.5)", 0.0, 0.5), ("[0.5, 0.6)", 0.5, 0.6), ("[0.6, 1.0]", 0.6, np.inf)):
        inside = (measured >= lo) & (measured < hi)
        table.append(dict(measured=band, groups=int(inside.sum()), warned=int((inside & (reported < UNSTABLE)).sum())))
    print_table(table, f"the warning (reported stability below {UNSTABLE}) by measured agreement")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", default=["pbmc", "sim2000", "sim10000", "sim50000"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=["default"])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--pool", type=Path, nargs="+", default=None, help="pool the calibration of these --json files")
    p.add_argument("--timing", type=int, default=0, help="only time the default fit against sc.tl.umap, this many rounds")
    args = p.parse_args()
    if args.pool:
        warning_record(args.pool, args.configs[0])
        return

    import scanpy as sc
    from scipy.stats import spearmanr

    import scelm

    sc.settings.verbosity = 0
    warm, _ = load("pbmc")
    scelm.tl.parametric_umap(warm, n_epochs=5)
    sc.tl.umap(warm)
    if args.timing:
        timing_table(args.data, args.timing)
        return
    rows, calibration = [], []
    for name in args.data:
        adata, groupby = load(name)
        umap_time, umap_maps = umap_runs(adata, UMAP_SEEDS)
        pcs = adata.obsm["X_pca"]
        umap_trust = float(np.mean([trustworthiness(pcs, m) for m in umap_maps]))
        first = None
        for label in args.configs:
            runs = [one_fit(adata, groupby, s, parse_config(label), deletion=s < DELETION_SEEDS) for s in range(args.seeds)]
            row, calib = summarise(name, label, runs, pcs, umap_time, umap_trust)
            first = first or runs
            # top-10 agreement of this configuration's fits with the first configuration's
            row["agreement_with_first"] = float(np.mean([
                jaccard(a["top"][g], b["top"][g]) for a in runs for b in first if a is not b for g in a["top"]
            ]))
            rows.append(row)
            calibration += [(label, *c) for c in calib]
            print_table([row], f"{name}, {label}")
    print_table(rows, f"trust of rank_genes_elm, {args.seeds} seeds")
    print_table([dict(config=c[0], data=c[1], group=c[2], reported=c[3], measured=c[4], direction_agreement=c[5])
                 for c in sorted(calibration, key=lambda c: c[5])], "per group, by the members' direction agreement")
    calib_rows = []
    for label in args.configs:
        pts = [c for c in calibration if c[0] == label and not c[1].startswith("sim50000") and np.isfinite(c[3])]
        if len(pts) > 2:
            rho = spearmanr([c[3] for c in pts], [c[4] for c in pts]).statistic
            calib_rows.append(dict(config=label, groups=len(pts), spearman_reported_vs_measured=float(rho)))
    if calib_rows:
        print_table(calib_rows, "calibration: reported stability vs measured agreement, pooled over groups (pbmc, 2,000, 10,000)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "calibration": calibration, "spearman": calib_rows}, indent=1))


if __name__ == "__main__":
    main()
