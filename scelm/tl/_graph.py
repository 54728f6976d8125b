"""Choosing the fuzzy graph: scanpy's neighbors when present, else scelm's own."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._core.blocks import is_dask
from .._core.graph import EdgeList, edges_from_connectivities, fuzzy_graph, knn_method


def stored_connectivities(adata: AnnData, neighbors_key: str | None):
    """``(matrix, key)`` of a ``sc.pp.neighbors`` graph, or ``(None, None)`` if there is none.

    An explicit ``neighbors_key`` that is missing is an error; the default ``None`` looks
    for ``'neighbors'`` and falls back silently.
    """
    key = "neighbors" if neighbors_key is None else neighbors_key
    if key not in adata.uns:
        if neighbors_key is not None:
            raise KeyError(f"neighbors_key={neighbors_key!r} not found in adata.uns; run sc.pp.neighbors(adata, key_added=...) first.")
        return None, None
    conn_key = adata.uns[key].get("connectivities_key", "connectivities")
    if conn_key not in adata.obsp:
        raise KeyError(f"adata.uns[{key!r}] points to obsp[{conn_key!r}], which does not exist.")
    C = adata.obsp[conn_key]
    if is_dask(C):  # lazy AnnData: the graph is small enough to hold
        C = C.compute()
    if C.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"obsp[{conn_key!r}] has shape {C.shape}, expected ({adata.n_obs}, {adata.n_obs}).")
    return C, key


def graph_edges(
    adata: AnnData, z: np.ndarray, *, neighbors_key, n_neighbors: int, knn: str, random_state: int, device
) -> tuple[EdgeList, str, int]:
    """Edges to train on, where they came from, and the graph's number of neighbours
    (-1 when a stored graph does not record it)."""
    C, key = stored_connectivities(adata, neighbors_key)
    if C is None:
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)):
            raise ValueError(f"n_neighbors must be an integer, got {n_neighbors!r}.")
        k = min(int(n_neighbors), adata.n_obs)
        method = knn_method(adata.n_obs, knn, device)
        logg.info(f"    building the UMAP graph ({k} neighbours, {method} kNN on {z.shape[1]} PCs of the input)")
        C = fuzzy_graph(z, n_neighbors=k, random_state=random_state, device=device, method=method)
        source = f"scelm:{k}:{method}"
    else:
        logg.info(f"    using the graph in adata.uns[{key!r}]")
        source = f"uns:{key}"
        k = int(np.ravel(adata.uns[key].get("params", {}).get("n_neighbors", -1))[0])
    edges = edges_from_connectivities(C)
    if len(edges.weight) == 0:
        raise ValueError("The neighbourhood graph has no edges between distinct cells.")
    return edges, source, k
