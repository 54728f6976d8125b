"""Linear front end: genes -> encoder input ``z = (x - x_ref) @ W``.

``W`` holds PC loadings (or the identity) divided by one positive scale, so the map stays
linear and the chained Jacobian in gene space is ``J_z @ W.T``. By default ``x_ref = 0``:
PC loadings are applied to *uncentred* expression, so a gene a cell does not express
contributes exactly zero to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import dense, map_rows, reduce_rows


def mean_and_covariance(X) -> tuple[np.ndarray, np.ndarray]:
    """Gene means and covariance from per-block sums (``g x g`` memory only; Dask tasks
    when ``X`` reads a Dask array)."""
    n, g = X.shape

    def sums(block, _) -> np.ndarray:
        rows = dense(block)
        return np.concatenate([rows.sum(0), (rows.T @ rows).ravel()])

    flat = reduce_rows(X, sums, g + g * g)
    mean, gram = flat[:g] / n, flat[g:].reshape(g, g)
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    return mean, cov


@dataclass
class LinearFrontEnd:
    """``z = (x - reference) @ loadings`` over the model's genes."""

    loadings: np.ndarray  # (n_genes, n_in) float32
    reference: np.ndarray  # (n_genes,) float32

    @property
    def n_genes(self) -> int:
        return self.loadings.shape[0]

    @property
    def n_in(self) -> int:
        return self.loadings.shape[1]

    def project(self, X) -> np.ndarray:
        """Encoder input for the rows of ``X`` (read in row blocks, or as Dask tasks),
        float32 ``(n, n_in)``."""
        W = self.loadings.astype(np.float64)
        shift = self.reference.astype(np.float64) @ W
        return map_rows(X, lambda block: dense(block) @ W - shift, self.n_in)


def fit_front_end(X, *, n_pcs: int | None, center: bool, loadings: np.ndarray | None = None) -> LinearFrontEnd:
    """Given ``loadings``, PCA loadings, or the identity (``n_pcs=None``), scaled so the
    encoder sees inputs of unit RMS.

    PCA loadings come from the centred covariance as in ``sc.tl.pca``; whether they are
    applied to centred expression is the separate choice ``center``.
    """
    n, g = X.shape
    mean, cov = mean_and_covariance(X)
    if loadings is not None:
        variances = np.einsum("gp,gh,hp->p", loadings, cov, loadings)
    elif n_pcs is None:
        loadings = np.eye(g)
        variances = np.diag(cov)
    else:
        n_pcs = int(min(n_pcs, g, max(n - 1, 1)))
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:n_pcs]
        loadings, variances = evecs[:, order], evals[order]
        # Fix the sign like scanpy's svd_flip: largest-|loading| entry positive.
        signs = np.sign(loadings[np.abs(loadings).argmax(0), np.arange(n_pcs)])
        loadings = loadings * np.where(signs == 0, 1, signs)
    # One positive scale keeps the map linear: the network sees inputs of RMS ~1.
    scale = float(np.sqrt(max(np.mean(np.clip(variances, 0, None)), 1e-12)))
    reference = mean if center else np.zeros(g)
    return LinearFrontEnd(
        loadings=(loadings / scale).astype(np.float32), reference=reference.astype(np.float32)
    )
