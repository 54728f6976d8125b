"""Backed and Dask (``anndata.experimental.read_lazy``) input, and lazy Jacobians."""

import anndata as ad
import dask.array as da
import numpy as np
import pytest
import scanpy as sc
from helpers import FAST
from scipy import sparse

import scelm


@pytest.fixture(scope="module")
def h5ad_path(tmp_path_factory):
    adata = sc.datasets.pbmc68k_reduced()
    adata.layers["lognorm"] = sparse.csr_matrix(adata.raw.X)
    path = tmp_path_factory.mktemp("ooc") / "pbmc.h5ad"
    adata.write_h5ad(path)
    return path


def test_lazy_anndata_fits_and_ranks_like_in_memory(h5ad_path):
    mem = ad.read_h5ad(h5ad_path)
    lazy = ad.experimental.read_lazy(h5ad_path)
    assert isinstance(lazy.layers["lognorm"], da.Array)
    for adata in (mem, lazy):
        scelm.tl.parametric_umap(adata, layer="lognorm", use_raw=False, store_jacobian=False, **FAST)
        scelm.tl.rank_genes_elm(adata, "bulk_labels")
    np.testing.assert_array_equal(lazy.obsm["X_elm"], mem.obsm["X_elm"])
    ours, theirs = lazy.uns["rank_genes_elm"], mem.uns["rank_genes_elm"]
    for g in theirs["names"].dtype.names:
        np.testing.assert_array_equal(ours["names"][g], theirs["names"][g])
        np.testing.assert_allclose(ours["scores"][g], theirs["scores"][g], rtol=1e-6)
        np.testing.assert_allclose(ours["pvals"][g], theirs["pvals"][g], rtol=1e-9)
    assert isinstance(lazy.layers["lognorm"], da.Array)  # the input stays lazy


@pytest.mark.parametrize("fn", [scelm.get.jacobian, scelm.get.contributions])
def test_lazy_values_equal_eager(fitted_pbmc, fn):
    eager = fn(fitted_pbmc)
    lazy = fn(fitted_pbmc, lazy=True, chunk_size=128)
    assert isinstance(lazy, da.Array) and lazy.chunks[0][0] == 128
    np.testing.assert_array_equal(lazy.compute(), eager)


def test_lazy_contributions_sum_to_embedding_and_write_to_zarr(fitted_pbmc, tmp_path):
    lazy = scelm.get.contributions(fitted_pbmc, lazy=True, chunk_size=200)
    Y = fitted_pbmc.obsm["X_elm"]
    assert np.abs(lazy.sum(-1).compute() - Y).max() <= 1e-5 * np.abs(Y).max()
    lazy.to_zarr(tmp_path / "contrib.zarr")
    np.testing.assert_array_equal(da.from_zarr(tmp_path / "contrib.zarr").compute(), lazy.compute())


def test_backed_and_lazy_files_explain_like_in_memory(h5ad_path, fitted_pbmc):
    eager = scelm.get.contributions(fitted_pbmc, genes=["MS4A1", "NKG7"])  # fitted on .raw
    for adata in (ad.read_h5ad(h5ad_path, backed="r"), ad.experimental.read_lazy(h5ad_path)):
        adata.uns["elm"] = fitted_pbmc.uns["elm"]
        lazy = scelm.get.contributions(adata, genes=["MS4A1", "NKG7"], lazy=True, chunk_size=300)
        np.testing.assert_array_equal(lazy.compute(), eager)


def test_dask_fit_reads_blocks_in_tasks_not_in_the_client(monkeypatch):
    """With a Dask X of many chunks, the front end's Gram matrix and projection are Dask
    tasks (only the counts check reads one block in the client), and they give the
    in-memory numbers up to float64 summation order."""
    from scelm._core.blocks import GeneColumns, is_dask
    from scelm._core.frontend import fit_front_end

    sim, _ = scelm.datasets.simulate_markers(1200, 200, n_types=4, random_state=0)
    X = sparse.csr_matrix(sim.X)
    cols_mem = GeneColumns(X, np.arange(200))
    cols_dask = GeneColumns(da.from_array(X.toarray(), chunks=(250, 200)), np.arange(200))
    fe_mem, fe_dask = (fit_front_end(c, n_pcs=10, center=False) for c in (cols_mem, cols_dask))
    np.testing.assert_allclose(fe_dask.loadings, fe_mem.loadings, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fe_dask.project(cols_dask), fe_mem.project(cols_mem), rtol=1e-5, atol=1e-5)

    client_reads = []
    original = GeneColumns.__getitem__

    def spy(self, rows):
        client_reads.append(is_dask(self.X))  # a Dask source here means a block read by the client
        return original(self, rows)

    monkeypatch.setattr(GeneColumns, "__getitem__", spy)
    lazy = ad.AnnData(da.from_array(X.toarray(), chunks=(250, 200)), obs=sim.obs, var=sim.var)
    scelm.tl.parametric_umap(lazy, **FAST, store_jacobian=False)
    assert sum(client_reads) == 1  # the raw-counts check on the first rows
    assert np.all(np.isfinite(lazy.obsm["X_elm"]))


def test_get_refuses_arrays_past_the_budget_and_names_the_ways_out():
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, n_epochs=5, hidden=(8,), n_models=1, store_jacobian=False)
    budget = scelm.settings.dense_max_gb
    scelm.settings.dense_max_gb = 0.001  # 700 x 2 x 765 float32 is 4.3 MB
    try:
        with pytest.raises(ValueError, match="lazy=True") as err:
            scelm.get.contributions(adata)
        assert "genes=" in str(err.value) and "dense_max_gb" in str(err.value)
        assert scelm.get.contributions(adata, genes=["LYZ"]).shape == (700, 2, 1)
        lazy = scelm.get.contributions(adata, lazy=True)
        np.testing.assert_allclose(lazy[:5].compute().sum(-1), adata.obsm["X_elm"][:5], rtol=1e-5, atol=1e-5)
    finally:
        scelm.settings.dense_max_gb = budget
