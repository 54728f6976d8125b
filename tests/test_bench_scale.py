"""benchmarks/bench_scale.py's block-by-block writer of atlas-sized simulated data."""

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import scelm

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_scale  # noqa: E402


def test_lean_writer_gives_simulate_markers_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_scale, "PCA_FIT_CELLS", 800)
    path = tmp_path / "lean.h5ad"
    bench_scale.write_lean(path, 20_000, 300)  # 2 blocks of simulate_markers' 16,384 cells
    lean = ad.read_h5ad(path)
    ref, _ = scelm.datasets.simulate_markers(20_000, 300, n_types=8, random_state=0)
    assert (lean.X != ref.X).nnz == 0
    assert lean.obs_names.equals(ref.obs_names) and lean.var_names.equals(ref.var_names)
    assert (lean.obs["cell_type"] == ref.obs["cell_type"]).all()
    # X_pca: the PCA of a subsample applied to every cell, so its leading axis carries
    # most of the variance and the cell types separate on it as on scanpy's own PCA.
    pcs = lean.obsm["X_pca"]
    assert pcs.shape == (20_000, 50) and np.isfinite(pcs).all()
    assert np.var(pcs[:, 0]) > np.var(pcs[:, 10])


def test_interrupted_simulation_leaves_no_cached_file(tmp_path, monkeypatch):
    def interrupted(path, n_cells, n_genes):
        Path(path).write_bytes(b"truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_scale, "LEAN_ABOVE", 10)
    monkeypatch.setattr(bench_scale, "write_lean", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_scale.data_path(tmp_path, 20, 30)
    assert not (tmp_path / "sim_20x30.h5ad").exists()  # the next run simulates again
