"""End-to-end demo on scanpy's bundled PBMC data: ``scelm-demo --out results``.

Fits the interpretable parametric UMAP, checks that contributions sum to the embedding,
ranks genes per cell type, draws the figures and writes the annotated .h5ad.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scelm-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for figures and .h5ad")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import scanpy as sc

    import scelm

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = "info"
    sc.settings.figdir = out

    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, random_state=0)  # PCA start; X_elm is the consensus of 10 members
    C = scelm.get.contributions(adata)
    Y = adata.obsm["X_elm"]
    err = float(np.abs(C.sum(-1) - Y).max())
    print(f"exactness: max |sum_g contributions - embedding| = {err:.2e} (embedding max {np.abs(Y).max():.2f})")

    def save(fig, name):
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        matplotlib.pyplot.close(fig)

    save(sc.pl.embedding(adata, basis="elm", color=["bulk_labels", "MS4A1", "LYZ", "NKG7"], ncols=2,
                         wspace=0.5, show=False, return_fig=True), "embedding.png")
    scelm.tl.rank_genes_elm(adata, groupby="bulk_labels")
    sc.tl.rank_genes_groups(adata, groupby="bulk_labels", method="wilcoxon")
    print(sc.get.rank_genes_groups_df(adata, group=None, key="rank_genes_elm").groupby("group", observed=True).head(3).to_string())
    save(scelm.pl.gene_arrows(adata, "bulk_labels", n_genes=2, show=False, return_fig=True), "gene_arrows.png")
    save(scelm.pl.contributions(adata, ["LYZ", "CST3", "NKG7", "GNLY"], show=False, return_fig=True), "contributions.png")
    save(scelm.pl.rank_genes_elm(adata, n_genes=8, show=False, return_fig=True), "rank_genes_elm.png")
    dot = scelm.pl.rank_genes_elm_dotplot(adata, n_genes=3, show=False, return_fig=True)
    dot.make_figure()
    save(dot.fig, "rank_genes_elm_dotplot.png")
    save(scelm.pl.cell(adata, adata.obs_names[0], show=False, return_fig=True), "cell.png")
    save(scelm.pl.compare_de(adata, show=False, return_fig=True), "compare_de.png")
    # Do the rankings explain the map? Delete each group's top-k genes and re-embed.
    sc.tl.rank_genes_groups(adata, groupby="bulk_labels", method="t-test", key_added="t-test")
    for key in ("rank_genes_elm", "rank_genes_groups", "t-test"):
        scelm.tl.deletion_curve(adata, key, n_genes=30)
    print("share of separation removed by the top-10 genes:", {
        key: round(float(adata.uns[f"{key}_deletion"]["removed"]["10"].mean()), 3)
        for key in ("rank_genes_elm", "rank_genes_groups", "t-test")
    })
    save(scelm.pl.deletion_curve(adata, ["rank_genes_elm_deletion", "rank_genes_groups_deletion", "t-test_deletion"],
                                 labels=["ELM", "wilcoxon", "t-test"], show=False, return_fig=True), "deletion_curve.png")
    b_genes = list(adata.uns["rank_genes_elm"]["names"]["CD19+ B"][:5])
    scelm.tl.perturb(adata, b_genes, groupby="bulk_labels", groups="CD19+ B")
    save(scelm.pl.perturbation(adata, color="bulk_labels", show=False, return_fig=True), "perturbation.png")
    save(scelm.pl.training(adata, show=False, return_fig=True), "training.png")
    save(scelm.pl.reconstruction(adata, show=False, return_fig=True), "reconstruction.png")

    path = out / "pbmc68k_reduced_scelm.h5ad"
    adata.write_h5ad(path)
    print(f"wrote {path} and figures in {out}/")


if __name__ == "__main__":
    main()
