"""Linear front end: genes -> encoder input ``z = (x - x_ref) @ W``.

``W`` holds PC loadings (or the identity) divided by one positive scale, so the map stays
linear and the chained Jacobian in gene space is ``J_z @ W.T``. By default ``x_ref = 0``:
PC loadings are applied to *uncentred* expression, so a gene a cell does not express
contributes exactly zero to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

CHUNK = 8192


def iter_row_chunks(X, chunk: int = CHUNK):
    """Yield ``(start, stop, dense float64 rows)`` of anything sliced by rows into dense
    or sparse blocks (arrays, sparse matrices, :class:`scelm._input.GeneColumns`)."""
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        block = X[start:stop]
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        yield start, stop, block.astype(np.float64, copy=False)


def mean_and_covariance(X) -> tuple[np.ndarray, np.ndarray]:
    """Gene means and covariance, streamed over row chunks (``g x g`` memory only)."""
    n, g = X.shape
    total = np.zeros(g)
    gram = np.zeros((g, g))
    for _, _, rows in iter_row_chunks(X):
        total += rows.sum(0)
        gram += rows.T @ rows
    mean = total / n
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
        """Encoder input for the rows of ``X`` (read in row chunks), float32 ``(n, n_in)``."""
        W = self.loadings.astype(np.float64)
        shift = self.reference.astype(np.float64) @ W
        z = np.empty((X.shape[0], self.n_in), dtype=np.float32)
        for start, stop, rows in iter_row_chunks(X):
            z[start:stop] = rows @ W - shift
        return z


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
