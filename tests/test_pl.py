"""scelm.pl: figures with the expected panels and labels, not blank, after h5ad too."""

import io

import anndata as ad
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import scelm

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, n_epochs=60, hidden=(32, 32), n_models=1, store_jacobian=False)
    scelm.tl.rank_genes_elm(adata, "bulk_labels")
    sc.tl.rank_genes_groups(adata, "bulk_labels", method="t-test")
    path = tmp_path_factory.mktemp("h5") / "ranked.h5ad"
    adata.write_h5ad(path)
    return sc.read_h5ad(path)  # every plot is tested on an AnnData read back from .h5ad


def _not_blank(fig) -> bool:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    buf.seek(0)
    img = plt.imread(buf)
    plt.close(fig)
    return float(img[..., :3].std()) > 0.02


def _visible_axes(fig, with_data=True):
    return [a for a in fig.axes if a.get_visible() and (a.has_data() or a.texts or not with_data) and a.get_label() != "<colorbar>"]


def test_contributions(ranked):
    fig = scelm.pl.contributions(ranked, ["LYZ", "NKG7", "MS4A1"], show=False, return_fig=True)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["LYZ → axis 1", "NKG7 → axis 1", "MS4A1 → axis 1"]
    assert any(a.get_ylabel() == "contribution" for a in fig.axes)  # the shared colour bar
    assert _not_blank(fig)
    fig = scelm.pl.contributions(ranked, "LYZ", component=[1.0, 1.0], show=False, return_fig=True)
    assert "direction" in fig.axes[0].get_title()
    _, ax = plt.subplots()
    assert scelm.pl.contributions(ranked, "LYZ", ax=ax, show=False) is ax


def test_gene_arrows(ranked):
    fig = scelm.pl.gene_arrows(ranked, "bulk_labels", n_genes=2, show=False, return_fig=True)
    ax = fig.axes[0]
    n_groups = len(ranked.uns["rank_genes_elm"]["names"].dtype.names)
    arrows = [c for c in ax.texts if c.get_text() == ""]  # annotate() arrows carry no text
    labels = [c.get_text() for c in ax.texts if c.get_text()]
    assert len(arrows) == 2 * n_groups and len(labels) == 2 * n_groups
    assert any("contribution" in t.get_text() for t in ax.get_legend().get_texts())
    assert _not_blank(fig)


def test_rank_genes_elm(ranked):
    groups = ["CD19+ B", "CD56+ NK"]
    fig = scelm.pl.rank_genes_elm(ranked, groups=groups, n_genes=5, show=False, return_fig=True)
    axes = _visible_axes(fig)
    assert [a.get_title() for a in axes] == groups
    assert all(len(a.patches) == 5 for a in axes)
    top = list(ranked.uns["rank_genes_elm"]["names"]["CD56+ NK"][:5])
    assert [t.get_text() for t in axes[1].get_yticklabels()] == top[::-1]
    assert _not_blank(fig)


def test_rank_genes_elm_dotplot(ranked):
    dp = scelm.pl.rank_genes_elm_dotplot(ranked, n_genes=2, show=False, return_fig=True)
    assert isinstance(dp, sc.pl.DotPlot)
    dp.make_figure()
    assert _not_blank(dp.fig)


def test_cell_waterfall_adds_up(ranked):
    fig = scelm.pl.cell(ranked, ranked.obs_names[3], n_genes=6, show=False, return_fig=True)
    axes = _visible_axes(fig)
    assert len(axes) == 2
    for k, ax in enumerate(axes):
        bars = ax.patches
        assert len(bars) == 7 and ax.get_yticklabels()[-1].get_text() == "other genes"
        end = bars[-1].get_x() + bars[-1].get_width()
        assert np.isclose(end, ranked.obsm["X_elm"][3, k], rtol=1e-4, atol=1e-4)
    assert _not_blank(fig)
    assert len(_visible_axes(scelm.pl.cell(ranked, 5, show=False, return_fig=True))) == 2


def test_compare_de(ranked):
    fig = scelm.pl.compare_de(ranked, groups=["CD56+ NK"], n_genes=5, show=False, return_fig=True)
    ax = _visible_axes(fig)[0]
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("both") for t in texts) and any(t.startswith("ELM only") for t in texts)
    assert "shared" in ax.get_title()


def test_training_and_reconstruction(ranked):
    fig = scelm.pl.training(ranked, show=False, return_fig=True)
    assert len(fig.axes[0].lines[0].get_xdata()) == 60
    fig = scelm.pl.reconstruction(ranked, show=False, return_fig=True)
    assert len(fig.axes) == 2
    err = [t.get_text() for a in fig.axes for t in a.texts]
    assert all(t.startswith("max |error|") and float(t.split("=")[1]) < 1e-3 for t in err)
    assert _not_blank(fig)


def test_show_false_returns_axes(ranked):
    ax = scelm.pl.training(ranked, show=False)
    assert isinstance(ax, matplotlib.axes.Axes)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda a: scelm.pl.contributions(a, ["NOTAGENE"], show=False), KeyError, "NOTAGENE"),
        (lambda a: scelm.pl.rank_genes_elm(a, groups=["nope"], show=False), ValueError, "nope"),
        (lambda a: scelm.pl.gene_arrows(a, "phase", show=False), ValueError, "phase"),
        (lambda a: scelm.pl.cell(a, "nocell", show=False), KeyError, "nocell"),
        (lambda a: scelm.pl.compare_de(a, de_key="missing", show=False), KeyError, "missing"),
        (lambda a: scelm.pl.contributions(a, "LYZ", component=5, show=False), ValueError, "component"),
    ],
)
def test_clear_errors(ranked, call, exc, match):
    with pytest.raises(exc, match=match):
        call(ranked)


PLOTS = {
    "training": lambda a, **kw: scelm.pl.training(a, **kw),
    "reconstruction": lambda a, **kw: scelm.pl.reconstruction(a, **kw),
    "contributions": lambda a, **kw: scelm.pl.contributions(a, "LYZ", **kw),
    "gene_arrows": lambda a, **kw: scelm.pl.gene_arrows(a, "bulk_labels", **kw),
    "rank_genes_elm": lambda a, **kw: scelm.pl.rank_genes_elm(a, groups=["CD19+ B"], **kw),
    "cell": lambda a, **kw: scelm.pl.cell(a, a.obs_names[0], **kw),
    "compare_de": lambda a, **kw: scelm.pl.compare_de(a, groups=["CD19+ B"], **kw),
}


@pytest.fixture(params=sorted(PLOTS))
def plot(request):
    return PLOTS[request.param], request.param


def _saved(tmp_path, call) -> dict[str, int]:
    """Files (and their sizes) a plot call writes into a fresh figdir (settings restored)."""
    figdir, autosave = sc.settings.figdir, sc.settings.autosave
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    sc.settings.figdir = folder
    try:
        call()
    finally:
        sc.settings.figdir, sc.settings.autosave = figdir, autosave
        matplotlib.pyplot.close("all")
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.exists() else {}


@pytest.mark.parametrize("save", [True, "_x.png", "_y.pdf", "_z", None, False])
def test_every_plot_saves_like_scanpy(ranked, plot, tmp_path, save):
    """The file name comes from the same rule as sc.pl.umap(save=...): True gives the plot's
    name, a string is appended to it (its extension picks the format), None follows
    sc.settings.autosave (off here)."""
    ours, name = plot
    ranked.obsm["X_umap"] = ranked.obsm["X_elm"]
    theirs = _saved(tmp_path, lambda: sc.pl.umap(ranked, save=save, show=False))
    mine = _saved(tmp_path, lambda: ours(ranked, save=save, show=False))
    assert set(mine) == {f.replace("umap", name, 1) for f in theirs}
    assert all(size > 1000 for size in mine.values())


def test_plots_honour_autosave(ranked, plot, tmp_path):
    ours, name = plot

    def autosaved():
        sc.settings.autosave = True
        ours(ranked, show=False)

    assert set(_saved(tmp_path, autosaved)) == {f"{name}{sc.settings.plot_suffix}.{sc.settings.file_format_figs}"}


def test_single_panel_plots_draw_into_given_axes(ranked):
    import matplotlib.pyplot as plt

    for plot in (scelm.pl.rank_genes_elm, scelm.pl.compare_de):
        fig, ax = plt.subplots()
        assert plot(ranked, groups=["CD19+ B"], ax=ax, show=False) is ax
        assert len(fig.axes) == 1 and (ax.has_data() or ax.texts)
        plt.close(fig)


@pytest.mark.parametrize("n", [5, 25, 40])
def test_default_group_colours_are_scanpys(n):
    """Categories without stored colours get the ones scanpy's own plots would store."""
    from scelm.pl._utils import group_colors

    labels = pd.Categorical([f"c{i}" for i in range(n)] * 2)
    adata = ad.AnnData(np.zeros((2 * n, 2), dtype=np.float32), obs=pd.DataFrame({"g": labels}, index=[str(i) for i in range(2 * n)]))
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(2 * n, 2))
    _, ours = group_colors(adata, "g")
    sc.pl.umap(adata, color="g", show=False)
    assert list(ours.values()) == list(adata.uns["g_colors"])
