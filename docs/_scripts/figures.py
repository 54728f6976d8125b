"""Regenerate the figures of the README and the guides from the current code:
``python docs/_scripts/figures.py``.

pbmc68k_reduced (``bulk_labels``), ``scelm.tl.parametric_umap`` with its defaults and
``random_state=0``, as in the tutorial:

- ``gene_arrows.png``: the map with each cell type's top 2 ELM genes as arrows (where each
  gene moves the type), beside the top 2 genes of scanpy's wilcoxon test drawn the same way;
- ``deletion_curve.png``: the share of each type's separation removed by deleting its top-k
  genes, for the ELM, wilcoxon and t-test rankings, on the displayed map;
- ``interactive.png``: ``scelm.pl.interactive``'s page in headless Chromium (Debian's
  ``chromium`` and playwright, ``pip install 'scelm[test]'``), B cells selected and an NK
  cell hovered; skipped with a message where no browser is found.

``exaggeration.png`` has its own script (``exaggeration_spectrum.py``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402

import scelm  # noqa: E402

STATIC = Path(__file__).parents[1] / "_static"
CHROMIUM = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def fitted():
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, random_state=0)
    scelm.tl.rank_genes_elm(adata, "bulk_labels")
    for method in ("wilcoxon", "t-test"):
        sc.tl.rank_genes_groups(adata, "bulk_labels", method=method, key_added=method)
    return adata


def gene_arrows(adata) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    for ax, key, title in zip(axes, ("rank_genes_elm", "wilcoxon"), ("ELM: genes that place each type", "wilcoxon: genes that differ")):
        scelm.pl.gene_arrows(adata, "bulk_labels", n_genes=2, key=key, ax=ax, show=False)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(STATIC / "gene_arrows.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def deletion_curve(adata) -> None:
    keys = ("rank_genes_elm", "wilcoxon", "t-test")
    for key in keys:
        scelm.tl.deletion_curve(adata, key, n_genes=30)
    fig = scelm.pl.deletion_curve(adata, [f"{k}_deletion" for k in keys], labels=["ELM", "wilcoxon", "t-test"],
                                  show=False, return_fig=True)
    fig.savefig(STATIC / "deletion_curve.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    removed = {k: round(float(adata.uns[f"{k}_deletion"]["removed"]["10"].mean()), 3) for k in keys}
    print("share of separation removed by the top-10 genes:", removed)


def interactive(adata) -> None:
    executable = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        print("interactive.png skipped: needs playwright and a Chromium binary")
        return
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        path = Path(tmp) / "map.html"
        scelm.pl.interactive(adata, color="bulk_labels", path=path)
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_context(offline=True, viewport={"width": 1250, "height": 700}).new_page()
        page.goto(path.as_uri())
        page.wait_for_function("() => window.scelmReady === true", timeout=60_000)
        selected = np.flatnonzero(adata.obs["bulk_labels"] == "CD19+ B").tolist()
        page.evaluate("(idx) => { Bokeh.documents[0].get_model_by_name('cells').selected.indices = idx; }", selected)
        xy = adata.obsm["X_elm"]
        nk = np.flatnonzero(adata.obs["bulk_labels"] == "CD56+ NK")
        cell = int(nk[np.argmax(np.linalg.norm(xy[nk] - xy.mean(0), axis=1))])  # an outer NK cell
        page.mouse.move(*page.evaluate("(i) => window.scelm.screenPosition(i)", cell))
        page.wait_for_timeout(500)
        page.screenshot(path=str(STATIC / "interactive.png"))
        browser.close()


def main() -> None:
    sc.settings.verbosity = 0
    adata = fitted()
    gene_arrows(adata)
    deletion_curve(adata)
    interactive(adata)
    print(f"wrote figures to {STATIC}")


if __name__ == "__main__":
    main()
