"""scelm.tl.explain_embedding: an exact encoder of a map the user already has."""

import matplotlib
import numpy as np
import pytest
import scanpy as sc

import scelm

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
    assert "CD79A" in list(names["CD19+ B"][:10]) and "NKG7" in list(names["CD56+ NK"][:10])
    scelm.tl.deletion_curve(adata, elm_key="elm_umap", n_genes=5, groups="CD19+ B")
    assert adata.uns["rank_genes_elm_deletion"]["removed"].loc["CD19+ B", "5"] > 0.1
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = sc.read_h5ad(tmp_path / "e.h5ad")
    assert set(back.uns["elm_umap"]["fidelity"]["r2_per_group"].index) <= set(adata.obs["bulk_labels"].cat.categories)
    query = back.raw.to_adata()[:50].copy()
    scelm.tl.transform(query, back, elm_key="elm_umap", store_jacobian=False, use_raw=False)
    np.testing.assert_allclose(query.obsm["X_elm_umap"], adata.obsm["X_elm_umap"][:50], rtol=1e-4, atol=1e-4)
    fig = scelm.pl.fidelity(back, color="bulk_labels", return_fig=True, show=False)
    assert len([a for a in fig.axes if a.get_visible()]) == 3


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
    ],
)
def test_bad_arguments(kwargs, exc, match):
    adata = sc.datasets.pbmc68k_reduced()
    adata.obsm["X_one"] = np.zeros((adata.n_obs, 1))
    adata.obsm["X_nan"] = np.where(np.arange(adata.n_obs)[:, None] == 3, np.nan, adata.obsm["X_umap"])
    with pytest.raises(exc, match=match):
        scelm.tl.explain_embedding(adata, **kwargs)
    assert "elm_umap" not in adata.uns
