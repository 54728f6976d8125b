"""Regenerate docs/_static/exaggeration.png and the table of docs/tsne.md:
``python docs/_scripts/exaggeration_spectrum.py``.

pbmc68k_reduced embedded by ``scelm.tl.parametric_tsne`` along the attraction-repulsion
spectrum (Böhm, Berens & Kobak, JMLR 2022): exaggeration 1 is t-SNE, larger values pull
neighbours together more strongly than the map repels, towards UMAP-like and then
Laplacian-eigenmap-like pictures; ``scelm.tl.parametric_umap`` on the same data closes the
row. Each panel is an exact model: the table reports the contributions' largest error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402

import scelm  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from _common import knn_accuracy, trustworthiness  # noqa: E402

EXAGGERATIONS = (1, 2, 4, 12)
OUT = Path(__file__).parents[1] / "_static" / "exaggeration.png"


def main() -> None:
    sc.settings.verbosity = 0
    adata = sc.datasets.pbmc68k_reduced()
    keys = []
    for ex in EXAGGERATIONS:
        scelm.tl.parametric_tsne(adata, exaggeration=ex, key_added=f"tsne_ex{ex}", random_state=0)
        keys.append((f"tsne_ex{ex}", f"t-SNE, exaggeration {ex}"))
    scelm.tl.parametric_umap(adata, random_state=0)
    keys.append(("elm", "UMAP"))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4))
    print("| map | trustworthiness | 15-NN accuracy | exactness |\n|---|---|---|---|")
    labels = adata.obs["bulk_labels"]
    for ax, (key, title) in zip(axes, keys):
        Y = adata.obsm[f"X_{key}"]
        exact = np.abs(scelm.get.contributions(adata, elm_key=key).sum(-1) - Y).max() / np.abs(Y).max()
        print(f"| {title} | {trustworthiness(adata.obsm['X_pca'], Y):.3f} | {knn_accuracy(Y, labels):.3f} | {exact:.0e} |")
        sc.pl.embedding(adata, basis=f"X_{key}", color="bulk_labels", ax=ax, show=False, legend_loc=None,
                        title=title, frameon=False, size=12)
    fig.savefig(OUT, dpi=100, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
