"""Linear front end: genes -> encoder input ``z = (x - x_ref) @ W``.

``W`` holds PC loadings (or the identity) divided by one positive scale, so the map stays
linear and the chained Jacobian in gene space is ``J_z @ W.T``. The reference ``x_ref`` is
the mean cell when the fit centres its input (``center=True``, the default): a gene then
contributes its deviation from its mean. With ``x_ref = 0`` PC loadings are applied to
*uncentred* expression, and a gene a cell does not express contributes exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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

    @cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The loadings in float64 and the reference's projection, formed once."""
        W = self.loadings.astype(np.float64)
        return W, self.reference.astype(np.float64) @ W

    def project_rows(self, rows) -> np.ndarray:
        """Encoder input of rows of expression held in memory (dense or sparse), float64."""
        W, shift = self._affine
        return dense(rows) @ W - shift

    def project(self, X) -> np.ndarray:
        """Encoder input for the rows of ``X`` (read in row blocks, or as Dask tasks),
        float32 ``(n, n_in)``."""
        return map_rows(X, self.project_rows, self.n_in)


def column_moments(X, W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Means of the columns of ``X`` and variances of the columns of ``X @ W`` (of ``X``
    without ``W``), in one pass of per-block sums: linear memory in the columns."""
    n, g = X.shape
    width = g if W is None else W.shape[1]

    def sums(block, _) -> np.ndarray:
        rows = dense(block)
        projected = rows if W is None else rows @ W
        return np.concatenate([rows.sum(0), projected.sum(0), (projected**2).sum(0)])

    flat = reduce_rows(X, sums, g + 2 * width)
    mean, projected_mean = flat[:g] / n, flat[g : g + width] / n
    return mean, np.clip(flat[g + width :] - n * projected_mean**2, 0, None) / max(n - 1, 1)


def covariance_gb(n_genes: int) -> float:
    """Memory of a PCA front end's covariance and eigendecomposition (three g x g float64)."""
    return 3 * n_genes**2 * 8 / 2**30


def fit_front_end(X, *, n_pcs: int | None, center: bool, loadings: np.ndarray | None = None) -> LinearFrontEnd:
    """Given ``loadings``, PCA loadings, or the identity (``n_pcs=None``), scaled so the
    encoder sees inputs of unit RMS.

    PCA loadings come from the centred covariance as in ``sc.tl.pca``; whether they are
    applied to centred expression is the separate choice ``center``. Only PCA forms the
    ``g x g`` covariance (:func:`covariance_gb`).
    """
    n, g = X.shape
    if loadings is not None:
        mean, variances = column_moments(X, np.asarray(loadings, dtype=np.float64))
    elif n_pcs is None:
        loadings = np.eye(g)
        mean, variances = column_moments(X)
    else:
        mean, cov = mean_and_covariance(X)
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
