"""Starting layouts for training: the encoder is first regressed onto one, then UMAP's loss
takes over (as umap-learn starts its SGD from a spectral layout).

A layout that does not depend on the seed fixes the map's global arrangement, which the
random initial weights would otherwise decide (Kobak & Linderman, Nat Biotech 2021): the
rankings, which explain *this* arrangement, then agree across seeds.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

# Largest |coordinate| of a starting layout, as umap-learn expands its spectral init to 10.
LAYOUT_SCALE = 10.0


def scaled(layout: np.ndarray) -> np.ndarray:
    """Centred and scaled so the largest |coordinate| is ``LAYOUT_SCALE`` (aspect kept)."""
    layout = np.asarray(layout, dtype=np.float64)
    layout = layout - layout.mean(0)
    peak = np.abs(layout).max()
    if not np.isfinite(peak) or peak == 0:
        raise ValueError("The starting layout is constant or not finite.")
    return (layout * (LAYOUT_SCALE / peak)).astype(np.float32)


def pca_layout(z: np.ndarray, n_components: int) -> np.ndarray:
    """Top principal components of the encoder input ``z``, signs fixed as scanpy's
    ``svd_flip`` does (largest-|loading| entry positive), so no seed enters."""
    zc = np.asarray(z, dtype=np.float64)
    zc = zc - zc.mean(0)
    _, _, vt = np.linalg.svd(zc.T @ zc)  # n_in x n_in: cheap at any n
    axes = vt[:n_components].T
    axes = axes * np.sign(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])])
    return scaled(zc @ axes)


def spectral_layout(z: np.ndarray, graph: sparse.spmatrix, n_components: int, seed: int) -> np.ndarray:
    """umap-learn's spectral embedding of the fuzzy graph (its default initialisation)."""
    from .umap_import import quiet_umap_import

    with quiet_umap_import():
        from umap.spectral import spectral_layout as _spectral

    return scaled(_spectral(z, sparse.csr_matrix(graph), n_components, np.random.RandomState(seed)))
