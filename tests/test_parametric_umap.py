"""scelm.tl.parametric_umap / transform and scelm.get on real and simulated data."""

import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from helpers import FAST, rel_err, scaled_about_reference
from scipy import sparse

import scelm
from scelm._core.graph import edges_from_connectivities, fuzzy_graph, joint_probabilities
from scelm._model import StoredModel


def _exact(adata, key="elm"):
    C = scelm.get.contributions(adata, elm_key=key)
    Y = adata.obsm[f"X_{key}"]
    assert C.shape == (adata.n_obs, Y.shape[1], C.shape[2])
    return rel_err(C.sum(-1), Y)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(use_raw=True),  # sparse log-normalised input, PCA front end (default)
        dict(use_raw=False),  # dense scaled input (negative values)
        dict(use_raw=True, n_pcs=None),  # genes fed directly
        dict(use_raw=True, center=False),  # uncentred front end, x_ref = 0
        dict(use_raw=True, activation="leaky_relu", n_components=3),
        dict(use_raw=True, activation="prelu"),
        dict(use_raw=True, precision="bfloat16"),  # trained under autocast, Jacobians float32
    ],
)
def test_contributions_sum_to_embedding(pbmc, kwargs):
    scelm.tl.parametric_umap(pbmc, **FAST, **kwargs)
    assert _exact(pbmc) < 1e-5


def test_sparse_and_dense_input_agree(sim):
    dense = sim.copy()
    dense.X = sim.X.toarray()
    for a in (sim, dense):
        scelm.tl.parametric_umap(a, **FAST)
    np.testing.assert_allclose(sim.obsm["X_elm"], dense.obsm["X_elm"], rtol=1e-4, atol=1e-4)
    assert _exact(sim) < 1e-5


def test_jacobian_matches_autograd_in_gene_space(fitted_pbmc):
    model = StoredModel.from_adata(fitted_pbmc, "elm")
    enc = model.model.encoder().double()
    W = torch.as_tensor(model.model.front_end.loadings, dtype=torch.float64)
    ref = torch.as_tensor(model.model.front_end.reference, dtype=torch.float64)
    X = model.input_matrix(fitted_pbmc)[:].toarray()
    J = scelm.get.jacobian(fitted_pbmc)
    pos = fitted_pbmc.raw.var_names.get_indexer(model.genes)

    def f(x):
        return enc(((x - ref) @ W)[None])[0]

    for i in [0, 17, 350, 699]:
        x = torch.as_tensor(X[i], dtype=torch.float64)
        Ja = torch.autograd.functional.jacobian(f, x).numpy()
        np.testing.assert_allclose(J[i][:, pos], Ja, rtol=1e-4, atol=1e-5 * np.abs(Ja).max())
    mask = np.ones(J.shape[2], bool)
    mask[pos] = False
    assert np.all(J[:, :, mask] == 0)  # genes the model does not read


@pytest.mark.parametrize("center", [True, False])
def test_integrated_gradients_from_the_reference_equal_contributions(pbmc, center):
    fitted = pbmc.copy()
    scelm.tl.parametric_umap(fitted, **FAST, center=center)
    model = StoredModel.from_adata(fitted, "elm")
    ref = model.model.front_end.reference
    assert np.any(ref != 0) if center else np.all(ref == 0)  # the mean cell, or zero
    enc = model.model.encoder().double()
    W = torch.as_tensor(model.model.front_end.loadings, dtype=torch.float64)
    X = model.input_matrix(fitted)[:].toarray()
    C = scelm.get.contributions(fitted)
    pos = fitted.raw.var_names.get_indexer(model.genes)
    x_ref = torch.as_tensor(ref, dtype=torch.float64)
    for i in [3, 123]:
        dx = torch.as_tensor(X[i], dtype=torch.float64) - x_ref
        alphas = (torch.arange(64, dtype=torch.float64) + 0.5) / 64  # midpoint Riemann sum
        path = (x_ref + alphas[:, None] * dx[None, :]).requires_grad_(True)  # from the reference to x
        ig = np.zeros((model.n_components, len(dx)))
        for k in range(model.n_components):
            (g,) = torch.autograd.grad(enc((path - x_ref) @ W)[:, k].sum(), path)
            ig[k] = (g.mean(0) * dx).numpy()
        np.testing.assert_allclose(C[i][:, pos], ig, rtol=1e-4, atol=1e-5 * np.abs(ig).max())


def test_homogeneity_through_the_model(fitted_pbmc):
    query = fitted_pbmc.copy()
    query.raw = scaled_about_reference(fitted_pbmc, 2.5)  # x_ref + 2.5 (x - x_ref)
    scelm.tl.transform(query, fitted_pbmc, store_jacobian=False)
    np.testing.assert_allclose(query.obsm["X_elm"], 2.5 * fitted_pbmc.obsm["X_elm"], rtol=1e-4, atol=1e-4)


def test_stored_layers_equal_recomputed(fitted_pbmc, pbmc):
    scelm.tl.parametric_umap(pbmc, **FAST, store_jacobian=False)
    assert not any(k.startswith("elm_jacobian") for k in pbmc.layers)
    np.testing.assert_allclose(scelm.get.jacobian(pbmc), scelm.get.jacobian(fitted_pbmc), rtol=1e-5, atol=1e-6)
    J_layers = np.stack([fitted_pbmc.layers[f"elm_jacobian_{k}"] for k in range(2)], axis=1)
    np.testing.assert_array_equal(scelm.get.jacobian(fitted_pbmc), J_layers)


def test_graph_reuse_is_scanpys(pbmc):
    C = pbmc.obsp["connectivities"]
    e = edges_from_connectivities(C)
    rebuilt = sparse.coo_matrix((e.weight, (e.head, e.tail)), shape=C.shape)
    np.testing.assert_allclose((rebuilt + rebuilt.T).toarray(), C.toarray(), rtol=1e-6)
    scelm.tl.parametric_umap(pbmc, **FAST)
    assert pbmc.uns["elm"]["params"]["graph"] == "uns:neighbors"
    assert pbmc.uns["elm"]["params"]["n_neighbors"] == 10  # the stored graph's, not the default


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (sparse.diags(np.ones(5)), "no edges between distinct cells"),  # self-loops only
        (sparse.csr_matrix((5, 4)), "must be square"),
        (sparse.csr_matrix(np.full((3, 3), np.nan)), "NaN or inf"),
    ],
)
def test_bad_graphs_refused_alike_by_umap_and_tsne(graph, message):
    for read in (edges_from_connectivities, joint_probabilities):
        with pytest.raises(ValueError, match=message):
            read(graph)


def test_builds_own_graph_without_neighbors(sim):
    scelm.tl.parametric_umap(sim, **FAST, n_neighbors=10)
    assert sim.uns["elm"]["params"]["graph"] == "scelm:10:exact"  # 'auto' below 50,000 cells on CPU


def test_knn_chunks_follow_the_device():
    from scelm._core.graph import knn_chunk

    assert knn_chunk(10_000, "cpu") == 2048 and knn_chunk(1_000_000, "cpu") == 67 and knn_chunk(10**8, "cpu") == 64
    assert knn_chunk(1_000_000, "cuda") == 1073 and knn_chunk(100_000, "cuda") == 8192  # 4 GB of distances at most


def test_knn_methods_are_selectable_and_agree():
    """The exact kNN (what 'auto' runs on a GPU up to 2 million cells) and pynndescent (what
    it runs on CPU above 50,000) are both reachable by parameter, and find the same graph."""
    from scelm._core.graph import knn_method

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert knn_method(60_000, "auto", cpu) == "nndescent" and knn_method(60_000, "auto", cuda) == "exact"
    assert knn_method(100, "nndescent", cuda) == "nndescent" and knn_method(10**7, "exact", cpu) == "exact"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 10)).astype(np.float32)
    x[:700] += 3.0
    graphs = {m: fuzzy_graph(x, n_neighbors=15, random_state=0, device=cpu, method=m) for m in ("exact", "nndescent")}
    exact, approx = (edges_from_connectivities(g) for g in graphs.values())
    pairs = lambda e: set(zip(e.head.tolist(), e.tail.tolist()))  # noqa: E731
    assert len(pairs(exact) & pairs(approx)) / len(pairs(exact)) > 0.95


@pytest.mark.parametrize("knn", ["exact", "nndescent"])
def test_parametric_umap_knn_parameter(sim, knn):
    adata = sim.copy()
    scelm.tl.parametric_umap(adata, **FAST, knn=knn, store_jacobian=False)
    assert adata.uns["elm"]["params"]["graph"] == f"scelm:15:{knn}"
    assert np.all(np.isfinite(adata.obsm["X_elm"]))


def test_own_graph_at_scanpy_breaking_size():
    """sc.pp.neighbors fails from 8,192 cells with pynndescent 0.7 + scipy 1.17; ours must not."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8300, 10)).astype(np.float32)
    x[:4000] += 4.0
    G = fuzzy_graph(x, n_neighbors=15, random_state=0, device=torch.device("cpu"))
    assert G.shape == (8300, 8300) and abs(G - G.T).max() < 1e-6
    # neighbours stay within the two blobs
    e = edges_from_connectivities(G)
    assert np.mean((e.head < 4000) == (e.tail < 4000)) > 0.99


@pytest.fixture(scope="module")
def every_key(tmp_path_factory):
    """pbmc68k_reduced holding every key scelm writes: a 3-member model with Jacobian layers,
    a sparse-layer model, a ranking, a deletion curve, a perturbation and an explained map."""
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, **dict(FAST, n_models=3))
    scelm.tl.parametric_umap(adata, **FAST, key_added="some", jacobian_genes=["LYZ", "NKG7"])
    scelm.tl.rank_genes_elm(adata, "bulk_labels")
    scelm.tl.deletion_curve(adata, n_genes=3)
    scelm.tl.perturb(adata, ["LYZ"], groupby="bulk_labels", groups="CD14+ Monocyte")
    scelm.tl.explain_embedding(adata, "umap", n_models=2, max_steps=100, store_jacobian=False)
    return adata


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_every_key_round_trips_and_the_model_still_explains(every_key, tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    getattr(every_key, f"write_{fmt}")(path)
    back = getattr(ad, f"read_{fmt}")(path)
    for key in ("elm", "some", "elm_umap"):
        assert _exact(back, key) < 1e-5, key
    np.testing.assert_array_equal(scelm.get.jacobian(back, genes=["LYZ", "NKG7"], elm_key="some"),
                                  scelm.get.jacobian(every_key, genes=["LYZ", "NKG7"], elm_key="some"))
    pd.testing.assert_frame_equal(sc.get.rank_genes_groups_df(back, None, key="rank_genes_elm"),
                                  sc.get.rank_genes_groups_df(every_key, None, key="rank_genes_elm"))
    pd.testing.assert_frame_equal(pd.DataFrame(back.uns["rank_genes_elm_deletion"]["removed"]),
                                  pd.DataFrame(every_key.uns["rank_genes_elm_deletion"]["removed"]))
    np.testing.assert_array_equal(back.uns["elm_perturbation"]["embedding"], every_key.uns["elm_perturbation"]["embedding"])
    scelm.tl.rank_genes_elm(back, "bulk_labels", key_added="again")  # the read model ranks as before
    for g in back.uns["again"]["names"].dtype.names:
        np.testing.assert_array_equal(back.uns["again"]["names"][g], every_key.uns["rank_genes_elm"]["names"][g])
    scelm.pl.training(back, elm_key="elm_umap", show=False)
    scelm.pl.fidelity(back, "elm_umap", show=False)
    query = back.copy()
    del query.uns["elm"], query.obsm["X_elm"]
    scelm.tl.transform(query, back)
    scale = np.abs(every_key.obsm["X_elm"]).max()
    np.testing.assert_allclose(query.obsm["X_elm"], every_key.obsm["X_elm"], rtol=1e-5, atol=1e-5 * scale)
    assert _exact(query) < 1e-5


def test_transform_aligns_genes_by_name(fitted_pbmc):
    raw = fitted_pbmc.raw.to_adata()
    order = np.random.default_rng(0).permutation(raw.n_vars)
    shuffled = raw[:, order].copy()
    extra = ad.AnnData(np.ones((raw.n_obs, 2), np.float32), obs=raw.obs[[]], var=dict(index=["NEWGENE1", "NEWGENE2"]))
    query = ad.concat([shuffled, extra], axis=1, merge="same")
    query.obs = raw.obs.copy()
    scelm.tl.transform(query, fitted_pbmc, use_raw=False)
    np.testing.assert_allclose(query.obsm["X_elm"], fitted_pbmc.obsm["X_elm"], rtol=1e-5, atol=1e-4)
    C = scelm.get.contributions(query)
    assert C.shape[2] == query.n_vars
    assert rel_err(C.sum(-1), query.obsm["X_elm"]) < 1e-5


def test_transform_names_missing_genes(fitted_pbmc):
    query = fitted_pbmc.raw.to_adata()
    genes = StoredModel.from_adata(fitted_pbmc, "elm").genes
    query = query[:, ~query.var_names.isin(genes[:3])].copy()
    with pytest.raises(KeyError, match=genes[0]):
        scelm.tl.transform(query, fitted_pbmc, use_raw=False)


def test_copy_semantics(pbmc):
    before = pbmc.copy()
    out = scelm.tl.parametric_umap(pbmc, **FAST, copy=True)
    assert out is not None and "X_elm" in out.obsm
    assert set(pbmc.obsm) == set(before.obsm) and set(pbmc.uns) == set(before.uns) and set(pbmc.layers) == set(before.layers)
    np.testing.assert_array_equal(pbmc.X, before.X)
    assert scelm.tl.parametric_umap(pbmc, **FAST) is None
    assert set(pbmc.obsm) - set(before.obsm) == {"X_elm"}
    assert set(pbmc.uns) - set(before.uns) == {"elm"}
    assert set(pbmc.layers) - set(before.layers) == {"elm_jacobian_0", "elm_jacobian_1"}
    assert set(pbmc.obs) == set(before.obs) and set(pbmc.var) == set(before.var) and set(pbmc.obsp) == set(before.obsp)
    np.testing.assert_array_equal(pbmc.X, before.X)


def test_rerun_same_key_overwrites_cleanly(pbmc):
    scelm.tl.parametric_umap(pbmc, **FAST, n_components=3)
    scelm.tl.parametric_umap(pbmc, **FAST, n_components=2)
    assert pbmc.obsm["X_elm"].shape[1] == 2
    assert sorted(k for k in pbmc.layers if k.startswith("elm_")) == ["elm_jacobian_0", "elm_jacobian_1"]


def test_reproducible_with_seed(sim):
    a, b = sim.copy(), sim.copy()
    for x in (a, b):
        scelm.tl.parametric_umap(x, **FAST, random_state=7)
    np.testing.assert_array_equal(a.obsm["X_elm"], b.obsm["X_elm"])
    c = sim.copy()
    scelm.tl.parametric_umap(c, **FAST, random_state=8)
    assert not np.allclose(a.obsm["X_elm"], c.obsm["X_elm"])


def test_scanpy_plots_read_our_keys(fitted_pbmc):
    import matplotlib

    matplotlib.use("Agg")
    sc.pl.embedding(fitted_pbmc, basis="elm", color="bulk_labels", show=False)
    sc.pl.embedding(fitted_pbmc, basis="elm", color="MS4A1", layer="elm_jacobian_0", use_raw=False, show=False)


def test_import_does_not_import_torch():
    code = "import sys, scelm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(layer="nope", use_raw=False), KeyError, "layer 'nope'"),
        (dict(layer="x", use_raw=True), ValueError, "either layer"),
        (dict(neighbors_key="nope"), KeyError, "neighbors_key='nope'"),
        (dict(activation="tanh"), ValueError, "activation"),
        (dict(n_components=0), ValueError, "n_components"),
        (dict(min_dist=-1.0), ValueError, "min_dist"),
        (dict(mask_var="nope"), KeyError, "mask_var"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(precision="float16"), ValueError, "precision"),
        (dict(knn="annoy"), ValueError, "knn"),
    ],
)
def test_bad_arguments(pbmc, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        scelm.tl.parametric_umap(pbmc, **FAST, **kwargs)
    assert "elm" not in pbmc.uns and "X_elm" not in pbmc.obsm


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error(pbmc):
    with pytest.raises(ValueError, match="CUDA"):
        scelm.tl.parametric_umap(pbmc, **FAST, device="cuda")


def test_nan_input_is_rejected(sim):
    sim.X = sim.X.toarray()
    sim.X[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scelm.tl.parametric_umap(sim, **FAST)


def test_use_raw_without_raw(sim):
    with pytest.raises(ValueError, match="raw"):
        scelm.tl.parametric_umap(sim, **FAST, use_raw=True)


def test_not_anndata():
    with pytest.raises(TypeError, match="AnnData"):
        scelm.tl.parametric_umap(np.zeros((5, 5)))


def test_get_without_model(pbmc):
    with pytest.raises(KeyError, match="parametric_umap"):
        scelm.get.contributions(pbmc)


def test_store_jacobian_float16_and_gene_subset(pbmc):
    ref = pbmc.copy()
    scelm.tl.parametric_umap(ref, **FAST)
    J = scelm.get.jacobian(ref)
    half = pbmc.copy()
    scelm.tl.parametric_umap(half, **FAST, store_jacobian="float16")
    assert half.layers["elm_jacobian_0"].dtype == np.float16
    np.testing.assert_allclose(half.layers["elm_jacobian_0"], ref.layers["elm_jacobian_0"], rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(scelm.get.jacobian(half), J)  # exact: recomputed, not read from float16
    some = pbmc.copy()
    scelm.tl.parametric_umap(some, **FAST, jacobian_genes=["LYZ", "NKG7"])
    stored = np.flatnonzero(np.abs(some.layers["elm_jacobian_0"]).sum(0))
    assert set(some.var_names[stored]) <= {"LYZ", "NKG7"}
    assert list(some.uns["elm"]["jacobian_genes"]) == ["LYZ", "NKG7"]
    np.testing.assert_array_equal(scelm.get.jacobian(some), J)
    with pytest.raises(KeyError, match="NOTAGENE"):
        scelm.tl.parametric_umap(pbmc.copy(), **FAST, jacobian_genes=["NOTAGENE"])
    with pytest.raises(ValueError, match="store_jacobian"):
        scelm.tl.parametric_umap(pbmc.copy(), **FAST, store_jacobian="float8")
    with pytest.raises(ValueError, match="store_jacobian"):
        scelm.tl.parametric_umap(pbmc.copy(), **FAST, store_jacobian=["LYZ"])  # genes go to jacobian_genes
    with pytest.raises(ValueError, match="jacobian_genes"):
        scelm.tl.parametric_umap(pbmc.copy(), **FAST, store_jacobian=False, jacobian_genes=["LYZ"])


@pytest.mark.slow
def test_bfloat16_training_keeps_quality(sim):
    from sklearn.manifold import trustworthiness

    scores = {}
    for precision in ("float32", "bfloat16"):
        adata = sim.copy()
        scelm.tl.parametric_umap(adata, precision=precision, n_epochs=100, store_jacobian=False)
        assert adata.uns["elm"]["params"]["precision"] == precision
        scores[precision] = trustworthiness(adata.X.toarray(), adata.obsm["X_elm"], n_neighbors=15)
    assert abs(scores["bfloat16"] - scores["float32"]) < 0.02


def test_store_jacobian_auto_follows_the_memory_budget(pbmc):
    scelm.tl.parametric_umap(pbmc, **FAST)  # 700 x 765 x 2 float32 layers: 4.3 MB, under 1 GB
    assert pbmc.layers["elm_jacobian_0"].dtype == np.float32
    budget = scelm.settings.jacobian_layers_max_gb
    scelm.settings.jacobian_layers_max_gb = 0.001
    try:
        scelm.tl.parametric_umap(pbmc, **FAST, key_added="big")
        assert not any(k.startswith("big_jacobian") for k in pbmc.layers)
        np.testing.assert_array_equal(scelm.get.jacobian(pbmc, elm_key="big"), scelm.get.jacobian(pbmc))  # recomputed
        scelm.tl.parametric_umap(pbmc, **FAST, key_added="some", jacobian_genes=["LYZ"])  # genes asked for: stored
        assert "some_jacobian_0" in pbmc.layers
    finally:
        scelm.settings.jacobian_layers_max_gb = budget
    with pytest.raises(ValueError, match="jacobian_layers_max_gb"):
        scelm.settings.jacobian_layers_max_gb = -1
