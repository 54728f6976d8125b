"""Misuse the way users do: clear errors or correct results, and AnnData left as it was."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from helpers import FAST, logged_warnings, rel_err
from scipy import sparse

import scelm


def _snapshot(adata):
    return {
        "obsm": set(adata.obsm), "uns": set(adata.uns), "layers": set(adata.layers),
        "obs": list(adata.obs.columns), "var": list(adata.var.columns),
        "X": adata.X.copy() if not sparse.issparse(adata.X) else adata.X.toarray(),
    }


def _unchanged(adata, snap):
    now = _snapshot(adata)
    np.testing.assert_array_equal(now.pop("X"), snap["X"])
    assert now == {k: v for k, v in snap.items() if k != "X"}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csr", "csc", "csr_array", "dense_f64", "dense_int"])  # AnnData refuses COO itself
def test_input_formats_agree(sim, fmt):
    counts = sim.layers["counts"]
    X = {"csr": sparse.csr_matrix(sim.X), "csc": sparse.csc_matrix(sim.X), "csr_array": sparse.csr_array(sim.X),
         "dense_f64": sim.X.toarray().astype(np.float64), "dense_int": counts.toarray().astype(np.int64)}[fmt]
    a = ad.AnnData(X, obs=sim.obs, var=sim.var)
    ref = ad.AnnData(sparse.csr_matrix(X, dtype=np.float32), obs=sim.obs, var=sim.var)
    scelm.tl.parametric_umap(a, **FAST)
    scelm.tl.parametric_umap(ref, **FAST)
    np.testing.assert_allclose(a.obsm["X_elm"], ref.obsm["X_elm"], rtol=1e-4, atol=1e-4 * np.abs(ref.obsm["X_elm"]).max())
    assert rel_err(scelm.get.contributions(a).sum(-1), a.obsm["X_elm"]) < 1e-5


def test_use_rep_pca_chains_back_to_genes(pbmc):
    scelm.tl.parametric_umap(pbmc, **FAST, use_rep="X_pca")
    assert len(pbmc.uns["elm"]["var_names"]) == int(pbmc.var["highly_variable"].sum())  # finite loadings
    assert rel_err(scelm.get.contributions(pbmc).sum(-1), pbmc.obsm["X_elm"]) < 1e-5
    with pytest.raises(ValueError, match="loadings"):  # loadings are the front end: no other gene selection
        scelm.tl.parametric_umap(pbmc, **FAST, use_rep="X_pca", use_raw=True)
    with pytest.raises(KeyError, match="X_nope"):
        scelm.tl.parametric_umap(pbmc, **FAST, use_rep="X_nope")


def test_view_and_backed(pbmc, tmp_path):
    view = pbmc[pbmc.obs["bulk_labels"] != "Dendritic"]
    scelm.tl.parametric_umap(view, **FAST)
    assert view.obsm["X_elm"].shape == (int((pbmc.obs["bulk_labels"] != "Dendritic").sum()), 2)
    pbmc.write_h5ad(tmp_path / "p.h5ad")
    backed = ad.read_h5ad(tmp_path / "p.h5ad", backed="r")
    scelm.tl.parametric_umap(backed, **FAST, store_jacobian=False)  # .raw is a backed sparse dataset
    assert rel_err(scelm.get.contributions(backed).sum(-1), backed.obsm["X_elm"]) < 1e-5


def test_few_cells_and_constant_genes():
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(8, 20)).astype(np.float32)
    X[:, 3] = 0.0  # all-zero gene
    X[:, 4] = 2.0  # constant gene
    a = ad.AnnData(X)
    scelm.tl.parametric_umap(a, **FAST, n_neighbors=15)  # fewer cells than n_neighbors
    assert np.all(np.isfinite(a.obsm["X_elm"]))
    C = scelm.get.contributions(a)
    assert np.all(C[:, :, 3] == 0)
    assert rel_err(C.sum(-1), a.obsm["X_elm"]) < 1e-5


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: ad.AnnData(np.zeros((0, 5), np.float32)), ValueError, "empty"),
        (lambda: ad.AnnData(np.ones((1, 5), np.float32)), ValueError, "at least 3 cells"),
        (lambda: ad.AnnData(np.full((10, 5), np.inf, np.float32)), ValueError, "NaN or inf"),
        (lambda: ad.AnnData(np.ones((10, 3), np.float32), var=pd.DataFrame(index=["a", "a", "b"])), ValueError, "unique"),
        (lambda: ad.AnnData(np.array([["a"] * 3] * 4, dtype=object)), TypeError, "numeric"),
    ],
)
def test_bad_data(make, exc, match):
    adata = make()
    with pytest.raises(exc, match=match):
        scelm.tl.parametric_umap(adata, **FAST)


def test_raw_counts_warning(sim):
    sim.X = sim.layers["counts"] * 1000
    assert "raw counts" in logged_warnings(lambda: scelm.tl.parametric_umap(sim, **FAST))


def test_scaled_input_warning_says_what_to_pass(pbmc):
    """pbmc68k_reduced's .X is scaled (negative values); its .raw is log-normalised."""
    said = logged_warnings(lambda: scelm.tl.parametric_umap(pbmc, **FAST, use_raw=False))
    assert "negative values" in said and "use_raw=True" in said and "layer=" in said
    assert "negative values" not in logged_warnings(lambda: scelm.tl.parametric_umap(pbmc, **FAST))  # reads .raw


def test_overridden_graph_arguments_are_a_warning_and_can_be_had(pbmc):
    """A stored graph wins over explicit n_neighbors/knn, as in sc.tl.umap; the warning names
    them and neighbors_key=False gives what was asked."""
    said = logged_warnings(lambda: scelm.tl.parametric_umap(pbmc, **FAST, n_neighbors=7, knn="exact"))
    assert "n_neighbors=7" in said and "knn='exact'" in said and "neighbors_key=False" in said
    assert pbmc.uns["elm"]["params"]["graph"] == "uns:neighbors"
    assert logged_warnings(lambda: scelm.tl.parametric_umap(pbmc, **FAST)) == ""  # defaults: nothing to say
    scelm.tl.parametric_umap(pbmc, **FAST, n_neighbors=7, neighbors_key=False)
    assert pbmc.uns["elm"]["params"]["graph"] == "scelm:7:exact" and pbmc.uns["elm"]["params"]["n_neighbors"] == 7


def test_a_graph_cut_down_with_its_cells_is_a_warning(pbmc):
    """adata[cells] keeps only the edges among the chosen cells: a subset's graph loses most of
    each cell's neighbours, and both fits say so; a graph of the subset's own says nothing."""
    sub = pbmc[np.random.default_rng(0).choice(pbmc.n_obs, 210, replace=False)].copy()
    for said in (
        logged_warnings(lambda: scelm.tl.parametric_umap(sub, **FAST)),
        logged_warnings(lambda: scelm.tl.parametric_tsne(sub, neighbors_key="neighbors", **FAST)),
    ):
        assert "cut down with the cells" in said and "neighbors_key=False" in said
    sc.pp.neighbors(sub)
    assert logged_warnings(lambda: scelm.tl.parametric_umap(sub, **FAST)) == ""


def test_model_fitted_on_raw_refuses_a_query_without_raw_unless_told(fitted_pbmc):
    query = fitted_pbmc.raw.to_adata()
    del query.obsm["X_elm"]
    with pytest.raises(ValueError, match="use_raw=False"):
        scelm.tl.transform(query, fitted_pbmc, store_jacobian=False)
    assert "X_elm" not in query.obsm
    scelm.tl.transform(query, fitted_pbmc, store_jacobian=False, use_raw=False)
    assert query.uns["elm"]["params"]["use_raw"] is False or not query.uns["elm"]["params"]["use_raw"]
    assert rel_err(scelm.get.contributions(query).sum(-1), query.obsm["X_elm"]) < 1e-5  # its tools read .X too
    with pytest.raises(TypeError, match="use_raw"):
        scelm.tl.transform(query, fitted_pbmc, use_raw="no")


def test_train_batch_size_changes_no_other_default(pbmc):
    scelm.tl.parametric_umap(pbmc, n_epochs=2, hidden=(8,), train_batch_size=256, store_jacobian=False)
    params = pbmc.uns["elm"]["params"]
    assert params["train_batch_size"] == 256 and params["n_models"] == 10
    scelm.tl.parametric_umap(pbmc, hidden=(8,), train_batch_size=256, n_models=1, store_jacobian=False)
    assert pbmc.uns["elm"]["params"]["n_epochs"] == 300  # pbmc68k_reduced's default, full batch or not


@pytest.mark.parametrize("fit", [scelm.tl.parametric_umap, scelm.tl.parametric_tsne])
@pytest.mark.parametrize("argument", [{"center": "False"}, {"center": 0}, {"use_raw": "no"}])
def test_switches_take_booleans_never_truthy_strings(pbmc, fit, argument):
    """center='False' would otherwise fit with the mean cell as reference, silently."""
    keys = set(pbmc.uns)
    with pytest.raises(TypeError, match=next(iter(argument))):
        fit(pbmc, n_epochs=2, **argument)
    assert set(pbmc.uns) == keys


def test_linear_members_without_hidden_layers(pbmc):
    scelm.tl.parametric_umap(pbmc, n_epochs=20, hidden=(), n_models=2)
    assert rel_err(scelm.get.contributions(pbmc).sum(-1), pbmc.obsm["X_elm"]) < 1e-5
    with pytest.raises(TypeError, match="hidden"):
        scelm.tl.parametric_umap(pbmc, hidden=64)


def test_reading_a_model_leaves_the_users_random_streams_alone(fitted_pbmc):
    import torch

    torch.manual_seed(123)
    np.random.seed(123)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    scelm.get.contributions(fitted_pbmc, genes=["LYZ"])
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels")
    scelm.pl.contributions(fitted_pbmc, "LYZ", show=False)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def test_interrupted_fit_leaves_adata_untouched(pbmc, monkeypatch):
    import scelm._core.train as train

    snap = _snapshot(pbmc)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scelm.tl.parametric_umap(pbmc, **FAST)
    _unchanged(pbmc, snap)


def test_failures_leave_adata_untouched(fitted_pbmc):
    snap = _snapshot(fitted_pbmc)
    for call in [
        lambda: scelm.tl.parametric_umap(fitted_pbmc, **FAST, layer="missing"),
        lambda: scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", reference="nope"),
        lambda: scelm.tl.transform(fitted_pbmc, fitted_pbmc, elm_key="missing"),
    ]:
        with pytest.raises((KeyError, ValueError)):
            call()
        _unchanged(fitted_pbmc, snap)


def test_corrupted_or_foreign_model(fitted_pbmc):
    fitted_pbmc.uns["bad"] = {"params": {}}
    with pytest.raises(ValueError, match="not a scelm model"):
        scelm.get.jacobian(fitted_pbmc, elm_key="bad")
    fitted_pbmc.uns["elm"]["encoders"]["0"]["W0"] = fitted_pbmc.uns["elm"]["encoders"]["0"]["W0"][:, :3]
    with pytest.raises(ValueError, match="corrupted"):
        scelm.get.contributions(fitted_pbmc)
    fitted_pbmc.uns["neighbors_model"] = fitted_pbmc.uns["neighbors"]
    with pytest.raises(ValueError, match="not a scelm model"):
        scelm.tl.transform(fitted_pbmc, fitted_pbmc, elm_key="neighbors_model")


def test_nan_weights_are_rejected(fitted_pbmc):
    fitted_pbmc.uns["elm"]["encoders"]["0"]["W1"] = np.full_like(fitted_pbmc.uns["elm"]["encoders"]["0"]["W1"], np.nan)
    with pytest.raises(ValueError, match="NaN"):
        scelm.get.jacobian(fitted_pbmc)


def test_sc_pp_neighbors_graph_with_other_key(pbmc):
    sc.pp.neighbors(pbmc, n_neighbors=5, key_added="nn5")
    scelm.tl.parametric_umap(pbmc, **FAST, neighbors_key="nn5")
    assert pbmc.uns["elm"]["params"]["graph"] == "uns:nn5"


def test_a_pca_front_end_past_the_budget_is_refused(sim, monkeypatch):
    from scelm._settings import settings

    monkeypatch.setattr(settings, "dense_max_gb", 1e-4)  # 300 genes: 3 x 300^2 float64 = 2 MB
    with pytest.raises(ValueError, match="highly_variable_genes"):
        scelm.tl.parametric_umap(sim, **FAST)
    assert "X_elm" not in sim.obsm
    scelm.tl.parametric_umap(sim, **FAST, n_pcs=None)  # the identity front end needs no covariance


def test_gene_space_sums_equal_input_space_sums(fitted_pbmc, monkeypatch):
    """A wide front end (n_in ~ genes) sums the members' contributions in gene space, a few
    rows at a time: the same ranking as the input-space product."""
    import scelm._core.ranking as ranking

    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", key_added="input_space")
    monkeypatch.setattr(ranking, "INPUT_SPACE_MAX_BYTES", 1)
    scelm.tl.rank_genes_elm(fitted_pbmc, "bulk_labels", key_added="gene_space")
    for g in fitted_pbmc.uns["input_space"]["names"].dtype.names:
        np.testing.assert_array_equal(fitted_pbmc.uns["gene_space"]["names"][g], fitted_pbmc.uns["input_space"]["names"][g])
        assert rel_err(fitted_pbmc.uns["gene_space"]["scores"][g], fitted_pbmc.uns["input_space"]["scores"][g]) < 1e-6


@pytest.mark.parametrize(
    ("value", "exc"), [("0", TypeError), (True, TypeError), (1.5, TypeError), (-1, ValueError)]
)
def test_random_state_refused_clearly(pbmc, value, exc):
    snap = _snapshot(pbmc)
    with pytest.raises(exc, match="random_state"):
        scelm.tl.parametric_umap(pbmc, **FAST, random_state=value)
    _unchanged(pbmc, snap)


def test_random_state_takes_scanpys_random_objects(pbmc):
    """An int, a RandomState or a Generator (scanpy's AnyRandom): one seed is drawn from a
    random object and stored, and the stored seed draws the same map again."""
    a, b = pbmc.copy(), pbmc.copy()
    scelm.tl.parametric_umap(a, **FAST, random_state=np.random.RandomState(3))
    seed = a.uns["elm"]["params"]["random_state"]
    assert seed == np.random.RandomState(3).randint(2**31 - 1)
    scelm.tl.parametric_umap(b, **FAST, random_state=seed)
    np.testing.assert_array_equal(a.obsm["X_elm"], b.obsm["X_elm"])
    scelm.tl.parametric_umap(b, **FAST, random_state=np.random.default_rng(3))
    assert b.uns["elm"]["params"]["random_state"] == np.random.default_rng(3).integers(2**31 - 1)


def test_chunk_size_and_random_state_refused_clearly(fitted_pbmc):
    adata = fitted_pbmc
    calls = [
        lambda: scelm.get.contributions(adata, chunk_size=0),
        lambda: scelm.get.jacobian(adata, chunk_size=-5),
        lambda: scelm.tl.rank_genes_elm(adata, "bulk_labels", chunk_size=0),
        lambda: scelm.tl.transform(adata[:20].copy(), adata, chunk_size=0),
        lambda: scelm.tl.explain_embedding(adata, "umap", chunk_size=0),
        lambda: scelm.tl.deletion_curve(adata, random_state="a"),
    ]
    for call in calls:
        with pytest.raises((ValueError, TypeError), match="chunk_size|random_state"):
            call()
