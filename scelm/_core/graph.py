"""UMAP's fuzzy kNN graph: reused from a connectivities matrix, or built here.

Built graphs avoid ``sc.pp.neighbors``: with pynndescent 0.7 and scipy >= 1.17 it fails
from 8,192 cells on (``csr_array`` has no ``getnnz``). We compute the kNN ourselves
(exact chunked torch matmul, the same code on CPU and GPU, up to ``EXACT_MAX`` cells of
the device, pynndescent above, or either by choice) and hand it to umap-learn's
``fuzzy_simplicial_set``, which is what scanpy does after its own kNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass
class EdgeList:
    """Undirected edges ``head < tail`` of a symmetric fuzzy graph, each pair once."""

    head: np.ndarray  # int64
    tail: np.ndarray  # int64
    weight: np.ndarray  # float32
    n_nodes: int

    def to_csr(self) -> sparse.csr_matrix:
        """The symmetric weighted adjacency matrix."""
        upper = sparse.coo_matrix((self.weight, (self.head, self.tail)), shape=(self.n_nodes,) * 2)
        return sparse.csr_matrix(upper + upper.T)


def symmetric_graph(C) -> sparse.csr_matrix:
    """A connectivities matrix symmetrised, ``(C + C^T) / 2``, with self-loops dropped, as
    float64 CSR (a no-op for UMAP's graph, apart from the dtype). Refuses a matrix that is
    not square, holds NaN or inf, or joins no two distinct cells."""
    if not sparse.issparse(C):
        C = sparse.csr_matrix(np.asarray(C))
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"Connectivities must be square, got shape {C.shape}.")
    C = sparse.csr_matrix(C, dtype=np.float64)
    if not np.all(np.isfinite(C.data)):
        raise ValueError("Connectivities contain NaN or inf.")
    S = sparse.csr_matrix((C + C.T) * 0.5)
    S.setdiag(0)
    S.eliminate_zeros()
    if not np.any(S.data > 0):
        raise ValueError("The neighbourhood graph has no edges between distinct cells.")
    return S


def edges_from_connectivities(C) -> EdgeList:
    """Edges of a connectivities matrix (:func:`symmetric_graph`), zeros dropped."""
    return upper_edges(symmetric_graph(C))


def upper_edges(S: sparse.spmatrix) -> EdgeList:
    """Edges of a matrix already symmetric without self-loops (:func:`symmetric_graph`,
    :func:`joint_probabilities`, :func:`perplexity_affinities`), zeros dropped."""
    upper = sparse.triu(S, k=1).tocoo()
    keep = upper.data > 0
    return EdgeList(
        upper.row[keep].astype(np.int64), upper.col[keep].astype(np.int64),
        upper.data[keep].astype(np.float32), upper.shape[0],
    )


def joint_probabilities(C) -> sparse.csr_matrix:
    """A graph's connectivities as t-SNE's joint probabilities: :func:`symmetric_graph`,
    summing to 1 over all entries (as :func:`perplexity_affinities` returns)."""
    P = symmetric_graph(C)
    return P / P.sum()


# Distances held at once by the exact kNN: 256 MB on CPU, 4 GB on a GPU (whose top-k over
# few, long rows is slow: 64 rows of 5 million cells would take some 80,000 chunks).
KNN_CHUNK_BYTES = {"cpu": 2**28, "cuda": 2**32}


def knn_chunk(n: int, device_type: str) -> int:
    """Query rows per chunk of the exact kNN over ``n`` cells."""
    budget = KNN_CHUNK_BYTES.get(device_type, KNN_CHUNK_BYTES["cpu"])
    return int(min(2048 if device_type == "cpu" else 8192, max(64, budget // (4 * n))))


def exact_knn(x: np.ndarray, k: int, *, device) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN (self included, first) by chunked matmul and top-k."""
    import torch

    chunk = knn_chunk(x.shape[0], torch.device(device).type)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    sq = (xt * xt).sum(1)
    idx_out, dist_out = [], []
    for start in range(0, xt.shape[0], chunk):
        q = xt[start : start + chunk]
        d2 = sq[start : start + chunk, None] - 2.0 * (q @ xt.T) + sq[None, :]
        rows = torch.arange(q.shape[0], device=device)
        d2[rows, rows + start] = -1.0  # a cell is its own first neighbour, as in scanpy
        vals, idx = torch.topk(d2, k, dim=1, largest=False)
        dist_out.append(vals.clamp_min(0).sqrt().cpu())
        idx_out.append(idx.cpu())
    return torch.cat(idx_out).numpy().astype(np.int64), torch.cat(dist_out).numpy().astype(np.float32)


# Exact kNN costs n^2 distances: 19 s on 2 CPU cores at 50,000 cells (bench_scale.py); a
# GPU affords it up to about 2 million cells (not measured: no GPU was available).
EXACT_MAX = {"cpu": 50_000, "cuda": 2_000_000}


def knn_method(n_obs: int, method: str, device) -> str:
    """``'exact'`` or ``'nndescent'``: ``method`` itself, or for ``'auto'`` exact up to
    ``EXACT_MAX`` cells of ``device``'s type. The only place the device picks the code path."""
    if method != "auto":
        return method
    return "exact" if n_obs <= EXACT_MAX.get(device.type, EXACT_MAX["cpu"]) else "nndescent"


def nearest_neighbors(x: np.ndarray, k: int, *, random_state: int | None, device, method: str = "auto"):
    """Indices and distances ``(n, k)`` of each row's ``k`` nearest rows of ``x``, itself
    first, by ``method`` (see :func:`knn_method`)."""
    if knn_method(x.shape[0], method, device) == "exact":
        return exact_knn(x, k, device=device)
    from pynndescent import NNDescent

    return NNDescent(x, n_neighbors=k, random_state=random_state, n_jobs=-1).neighbor_graph


def fuzzy_graph(x: np.ndarray, *, n_neighbors: int, random_state: int | None, device, method: str = "auto"):
    """UMAP fuzzy simplicial set of the rows of ``x`` (cells x features), as CSR."""
    from .umap_import import quiet_umap_import

    with quiet_umap_import():
        from umap.umap_ import fuzzy_simplicial_set

    knn_idx, knn_dist = nearest_neighbors(x, n_neighbors, random_state=random_state, device=device, method=method)
    rs = np.random.RandomState(0 if random_state is None else random_state)
    graph, _, _ = fuzzy_simplicial_set(
        x, n_neighbors, rs, "euclidean", knn_indices=knn_idx, knn_dists=knn_dist
    )
    return sparse.csr_matrix(graph)


def conditional_probabilities(d2: np.ndarray, perplexity: float) -> np.ndarray:
    """Each row's Gaussian conditional distribution over its neighbours (squared distances
    ``d2``, ``(n, k)``) whose entropy is ``log(perplexity)``: the precision is bisected for
    all rows at once."""
    d2 = np.asarray(d2, dtype=np.float64)
    d2 = d2 - d2.min(1, keepdims=True)  # shifts cancel in the normalisation; keeps exp() in range
    target = np.log(perplexity)
    lo, hi = np.zeros(len(d2)), np.full(len(d2), np.inf)
    beta = 1.0 / np.maximum(d2.mean(1), 1e-12)
    for _ in range(100):
        w = np.exp(-d2 * beta[:, None])
        total = w.sum(1)
        entropy = np.log(total) + beta * (d2 * w).sum(1) / total
        flat = entropy > target  # too flat: raise the precision
        lo, hi = np.where(flat, beta, lo), np.where(flat, hi, beta)
        beta = np.where(np.isfinite(hi), (lo + hi) / 2, beta * 2)
    w = np.exp(-d2 * beta[:, None])
    return w / w.sum(1, keepdims=True)


def perplexity_affinities(x: np.ndarray, perplexity: float, *, random_state: int | None, device, method: str = "auto"):
    """t-SNE's joint probabilities ``P`` (symmetric CSR, summing to 1) on the ``3 perplexity``
    nearest neighbours of each row, as openTSNE and FIt-SNE compute them:
    ``P = (P_{j|i} + P_{i|j}) / 2n`` with :func:`conditional_probabilities`."""
    n = x.shape[0]
    k = int(min(n - 1, np.ceil(3 * perplexity)))
    idx, dist = nearest_neighbors(x, k + 1, random_state=random_state, device=device, method=method)
    conditional = conditional_probabilities(dist[:, 1:].astype(np.float64) ** 2, perplexity)  # without the cell itself
    P = sparse.csr_matrix((conditional.ravel(), idx[:, 1:].ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    return sparse.csr_matrix((P + P.T) / (2 * n))
