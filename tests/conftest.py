import pytest
import scanpy as sc
from helpers import FAST

import scelm

sc.settings.verbosity = 0


@pytest.fixture
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="session")
def _fitted_pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, **FAST)
    return adata


@pytest.fixture
def fitted_pbmc(_fitted_pbmc):
    return _fitted_pbmc.copy()


@pytest.fixture(scope="session")
def _ensemble_pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, **dict(FAST, n_models=3))
    return adata


@pytest.fixture
def ensemble_pbmc(_ensemble_pbmc):
    """pbmc68k_reduced with a 3-model consensus (tiny, briefly trained members)."""
    return _ensemble_pbmc.copy()


@pytest.fixture
def sim():
    adata, markers = scelm.datasets.simulate_markers(400, 300, n_types=4, random_state=1)
    return adata
