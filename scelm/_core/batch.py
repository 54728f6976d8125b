"""Batch shifts taken out of the front end, so the encoder cannot read them.

On a graph built from an integrated representation (harmony, scVI, BBKNN), an edge between
two batches joins cells of one type, so the difference of their encoder inputs is the batch
shift plus noise, free of the batches' different type compositions (which a difference of
batch means would mix in). For each batch, the weighted mean of ``z_i - z_j`` over its edges
to other batches estimates its shift against the rest; the ``n_batches - 1`` leading
directions of those shifts are projected out of the front end's loadings:
``W' = W (I - Q Q^T)``. The front end stays linear and the encoder homogeneous, so every
explanation stays exact, now of a model that reads no batch shift: a batch gene keeps only
the part of its signal that is not the shift.
"""

from __future__ import annotations

import numpy as np

from .frontend import LinearFrontEnd
from .graph import EdgeList

# A batch needs at least this many edges to other batches for its shift to be estimated.
MIN_CROSS_EDGES = 20


def batch_shifts(z: np.ndarray, codes: np.ndarray, edges: EdgeList) -> np.ndarray:
    """``(n_batches, n_in)``: each batch's mean shift against the others, from the graph's
    cross-batch edges (weighted by edge weight). ``codes``: each cell's batch, 0..B-1."""
    n_batches = int(codes.max()) + 1
    head, tail = edges.head, edges.tail
    cross = codes[head] != codes[tail]
    h, t, w = head[cross], tail[cross], edges.weight[cross].astype(np.float64)
    diff = (np.asarray(z[h], dtype=np.float64) - np.asarray(z[t], dtype=np.float64)) * w[:, None]
    sums = np.zeros((n_batches, z.shape[1]))
    np.add.at(sums, codes[h], diff)  # z_h - z_t is batch(h)'s shift against batch(t)
    np.add.at(sums, codes[t], -diff)
    weights = np.bincount(codes[h], w, n_batches) + np.bincount(codes[t], w, n_batches)
    counts = np.bincount(codes[h], minlength=n_batches) + np.bincount(codes[t], minlength=n_batches)
    if (few := np.flatnonzero(counts < MIN_CROSS_EDGES)).size:
        raise ValueError(
            f"batches {few.tolist()} have fewer than {MIN_CROSS_EDGES} graph edges to other batches, so their shift "
            "cannot be estimated: the graph is not integrated. Build it on an integrated representation first "
            "(harmony, scVI, BBKNN; sc.pp.neighbors(adata, use_rep=...)), or pass use_rep= for scelm's own graph."
        )
    return sums / weights[:, None]


def shift_directions(shifts: np.ndarray) -> np.ndarray:
    """Orthonormal ``(n_in, n_batches - 1)`` basis of the batches' shifts (which sum to about
    zero, so one fewer direction than batches spans them)."""
    _, _, vt = np.linalg.svd(shifts, full_matrices=False)
    return vt[: shifts.shape[0] - 1].T


def project_out(A: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The rows of ``A`` with their components along the orthonormal ``directions`` removed
    (same dtype): ``A (I - Q Q^T)``."""
    return (A - (A @ directions) @ directions.T).astype(A.dtype)


def without_directions(front_end: LinearFrontEnd, directions: np.ndarray) -> LinearFrontEnd:
    """The front end with ``directions`` (in its output space) projected out of its loadings."""
    W = project_out(front_end.loadings.astype(np.float64), directions)
    return LinearFrontEnd(loadings=W.astype(np.float32), reference=front_end.reference)
