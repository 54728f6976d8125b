"""scelm.tl.explain_embedding: an exact encoder of a map the user already has."""

import matplotlib
import numpy as np
import pytest
import scanpy as sc
from helpers import logged_warnings, model_reference

import scelm
from scelm.tl._explain import r2

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def explained():
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.explain_embedding(adata, "umap", groupby="bulk_labels")
    return adata


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reproduces_the_map_on_held_out_cells(seed):
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.explain_embedding(adata, "X_umap", random_state=seed, store_jacobian=False, n_models=2)
    fid = adata.uns["elm_umap"]["fidelity"]
    # Measured 0.96-0.97 held out over seeds 0-2 (0.99 on the fitted cells).
    assert fid["r2_held_out"] > 0.9 and fid["r2_train"] > fid["r2_held_out"] - 0.02, fid
    held = adata.obs["elm_umap_held_out"].to_numpy()
    assert 0.15 < held.mean() < 0.25


def test_explanations_are_exact_and_every_tool_reads_them(explained, tmp_path):
    adata = explained.copy()
    C = scelm.get.contributions(adata, elm_key="elm_umap")
    np.testing.assert_allclose(C.sum(-1), adata.obsm["X_elm_umap"], rtol=1e-4, atol=1e-4)
    scelm.tl.rank_genes_elm(adata, "bulk_labels", elm_key="elm_umap")
    assert adata.uns["rank_genes_elm"]["params"]["n_models"] == 5
    names = adata.uns["rank_genes_elm"]["names"]
    # Known markers (random_state 0-2: CD79A first; 3 of these NK genes in the NK top 10).
    nk_markers = {"NKG7", "GZMA", "GZMB", "GZMH", "GNLY", "PRF1", "CST7", "CCL5", "CD247", "KLRD1"}
    assert "CD79A" in list(names["CD19+ B"][:10]) and len(nk_markers & set(names["CD56+ NK"][:10])) >= 2
    scelm.tl.deletion_curve(adata, n_genes=5, groups="CD19+ B")  # the ranking's model: elm_umap
    assert adata.uns["rank_genes_elm_deletion"]["removed"].loc["CD19+ B", "5"] > 0.1
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = sc.read_h5ad(tmp_path / "e.h5ad")
    assert set(back.uns["elm_umap"]["fidelity"]["r2_per_group"].index) <= set(adata.obs["bulk_labels"].cat.categories)
    query = back.raw.to_adata()[:50].copy()
    scelm.tl.transform(query, back, elm_key="elm_umap", store_jacobian=False, use_raw=False)
    np.testing.assert_allclose(query.obsm["X_elm_umap"], adata.obsm["X_elm_umap"][:50], rtol=1e-4, atol=1e-4)
    fig = scelm.pl.fidelity(back, color="bulk_labels", return_fig=True, show=False)
    assert len([a for a in fig.axes if a.get_visible()]) == 3


@pytest.mark.parametrize("center", [True, False])
def test_reference_and_translation(center):
    """Centred: the mean cell is the reference, embedded at the origin, and the fitted map is
    the map translated by the centroid of the cells not held out; zero: no translation.
    Fidelity is measured in the map's own frame, and the contributions sum to the stored
    (translated) map."""
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.explain_embedding(adata, "umap", center=center, n_models=2, max_steps=300, store_jacobian=False)
    entry, Y, F = adata.uns["elm_umap"], adata.obsm["X_umap"], adata.obsm["X_elm_umap"]
    offset, held = np.asarray(entry["params"]["offset"]), adata.obs["elm_umap_held_out"].to_numpy()
    assert entry["params"]["center"] is center
    np.testing.assert_allclose(offset, Y[~held].mean(0) if center else 0.0)
    assert r2(Y[held], F[held] + offset) == pytest.approx(entry["fidelity"]["r2_held_out"], rel=1e-6)
    assert entry["fidelity"]["r2_held_out"] > 0.8
    ref = model_reference(adata, adata.raw.var_names, "elm_umap")
    raw = adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else np.asarray(adata.raw.X)
    read = adata.raw.var_names.isin(np.asarray(entry["var_names"]).astype(str))  # the genes the model reads
    np.testing.assert_allclose(ref[read], raw.mean(0)[read] if center else 0.0, rtol=1e-5, atol=1e-6)
    query = adata.raw.to_adata()[:2].copy()
    query.X = np.vstack([ref, ref + 2.0 * (raw[0] - ref)]).astype(np.float32)  # the reference, and cell 0 scaled about it
    scelm.tl.transform(query, adata, elm_key="elm_umap", store_jacobian=False, use_raw=False)
    np.testing.assert_allclose(query.obsm["X_elm_umap"], [[0.0, 0.0], 2.0 * F[0]], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scelm.get.contributions(adata[:20], elm_key="elm_umap").sum(-1), F[:20], rtol=1e-4, atol=1e-4)
    fig = scelm.pl.fidelity(adata, return_fig=True, show=False)  # residuals drawn in the map's frame
    shown = np.random.default_rng(0).permutation(adata.n_obs)[:2000]
    fitted_cells = shown[~held[shown]]
    np.testing.assert_allclose(fig.axes[2].collections[0].U, (F + offset - Y)[fitted_cells, 0], rtol=1e-5, atol=1e-5)


def test_any_basis_and_a_map_it_cannot_follow():
    adata = sc.datasets.pbmc68k_reduced()
    adata.obsm["X_three"] = np.random.default_rng(0).normal(size=(adata.n_obs, 3))  # noise: nothing to learn
    scelm.tl.explain_embedding(adata, "three", n_models=1, max_steps=300, store_jacobian=False)
    assert adata.obsm["X_elm_three"].shape == (adata.n_obs, 3)
    assert adata.uns["elm_three"]["fidelity"]["r2_held_out"] < 0.5  # reported, not hidden


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(basis="nope"), KeyError, "nope"),
        (dict(basis="one"), ValueError, "2-D or 3-D"),
        (dict(basis="nan"), ValueError, "NaN"),
        (dict(held_out=0.0), ValueError, "held_out"),
        (dict(groupby="nope"), KeyError, "nope"),
        (dict(n_models=0), ValueError, "n_models"),
        (dict(center="yes"), TypeError, "center"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    adata = sc.datasets.pbmc68k_reduced()
    adata.obsm["X_one"] = np.zeros((adata.n_obs, 1))
    adata.obsm["X_nan"] = np.where(np.arange(adata.n_obs)[:, None] == 3, np.nan, adata.obsm["X_umap"])
    with pytest.raises(exc, match=match):
        scelm.tl.explain_embedding(adata, **kwargs)
    assert "elm_umap" not in adata.uns


@pytest.mark.parametrize("center", [True, False])
def test_held_out_cells_influence_nothing(center):
    """Fidelity is measured on cells that neither the regression nor its early stopping saw:
    moving them in the target map leaves the fitted map as it was."""
    adata = sc.datasets.pbmc68k_reduced()
    kw = dict(center=center, n_models=2, max_steps=300, store_jacobian=False)
    scelm.tl.explain_embedding(adata, "umap", **kw, key_added="a")
    held = adata.obs["a_held_out"].to_numpy()
    adata.obsm["X_moved"] = adata.obsm["X_umap"] + held[:, None] * np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    scelm.tl.explain_embedding(adata, "moved", **kw, key_added="b")
    np.testing.assert_array_equal(adata.obs["b_held_out"].to_numpy(), held)
    np.testing.assert_array_equal(adata.obsm["X_a"], adata.obsm["X_b"])
    assert adata.uns["b"]["fidelity"]["r2_held_out"] < adata.uns["a"]["fidelity"]["r2_held_out"]


def test_unstable_warning_names_the_call_to_refit(explained, monkeypatch):
    """More members steady an explained map's ranking: the warning says which call takes them."""
    monkeypatch.setattr("scelm.tl._rank_genes_elm.UNSTABLE", 1.01)  # every group reads unstable
    log = logged_warnings(lambda: scelm.tl.rank_genes_elm(explained.copy(), "bulk_labels", elm_key="elm_umap"))
    assert "explain_embedding(n_models=...)" in log and "parametric_umap(n_models" not in log
