"""Choosing the fuzzy graph: scanpy's neighbors when present, else scelm's own."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._core.blocks import is_dask
from .._core.graph import EdgeList, edges_from_connectivities, fuzzy_graph, knn_method


def stored_connectivities(adata: AnnData, neighbors_key: str | None | bool):
    """``(matrix, key)`` of a ``sc.pp.neighbors`` graph, or ``(None, None)`` if there is none
    or ``neighbors_key`` is False.

    An explicit ``neighbors_key`` that is missing is an error; the default ``None`` looks
    for ``'neighbors'`` and falls back to scelm's own graph.
    """
    if neighbors_key is False:
        return None, None
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
    _warn_if_sliced(C, key, stored_n_neighbors(adata, key))
    return C, key


def stored_graph_params(adata: AnnData, key: str) -> dict:
    """The params ``sc.pp.neighbors`` (or BBKNN) stored with the graph in ``adata.uns[key]``."""
    return adata.uns[key].get("params", {})


def stored_n_neighbors(adata: AnnData, key: str) -> int:
    """The ``n_neighbors`` a stored graph records in its params, or -1."""
    return int(np.ravel(stored_graph_params(adata, key).get("n_neighbors", -1))[0])


def _warn_if_sliced(C, key: str, k: int) -> None:
    """A kNN graph of k neighbours gives every cell at least k - 1 edges. ``adata[cells]``
    keeps only the edges among the chosen cells, so a subset of a fifth of the cells is left
    with about a fifth of them, some cells with none: a map trained on it falls apart."""
    from scipy import sparse

    if k < 2 or C.shape[0] == 0:
        return
    per_cell = np.diff(sparse.csr_matrix(C).indptr)
    if (median := float(np.median(per_cell))) < (k - 1) / 2:
        logg.warning(
            f"the graph in adata.uns[{key!r}] gives its cells a median of {median:g} neighbours (it was built with "
            f"n_neighbors={k}; {int(np.sum(per_cell == 0))} cells have none): it looks cut down with the cells, as "
            "adata[cells] keeps only the edges among them. Rerun sc.pp.neighbors on these cells, or pass "
            "neighbors_key=False to build scelm's own graph."
        )


def _warn_overridden(p, key: str, k: int) -> None:
    """A stored graph wins over explicit graph arguments: say so, and how to get them."""
    asked = ", ".join(f"{name}={getattr(p, name)!r}" for name in sorted(p.explicit))
    if asked:
        logg.warning(
            f"{asked} ignored: scelm trains on the graph in adata.uns[{key!r}] ({k if k > 0 else 'unknown'} neighbours), "
            "as sc.tl.umap would. Pass neighbors_key=False to build scelm's own graph with them."
        )


def graph_edges(adata: AnnData, z: np.ndarray, space_name: str, p, *, device) -> tuple[EdgeList, str, int]:
    """Edges to train on (for the :class:`~scelm.tl._fit_params.UMAPParams` ``p``), where they
    came from, and the graph's number of neighbours (-1 when a stored graph does not record it).
    A graph scelm builds itself is the kNN graph of ``z`` (described by ``space_name``)."""
    C, key = stored_connectivities(adata, p.neighbors_key)
    if C is None:
        k = min(p.n_neighbors, adata.n_obs)
        if k < p.n_neighbors:
            (logg.warning if "n_neighbors" in p.explicit else logg.info)(
                f"    n_neighbors={p.n_neighbors} exceeds the {adata.n_obs} cells; using {k}"
            )
        method = knn_method(adata.n_obs, p.knn, device)
        logg.info(f"    building the UMAP graph ({k} neighbours, {method} kNN on {space_name})")
        C = fuzzy_graph(z, n_neighbors=k, random_state=p.random_state, device=device, method=method)
        source = f"scelm:{k}:{method}"
    else:
        built_on = stored_graph_params(adata, key).get("use_rep", "X_pca or X")
        logg.info(f"    training on the graph in adata.uns[{key!r}] (built on {built_on})")
        source = f"uns:{key}"
        k = stored_n_neighbors(adata, key)
        _warn_overridden(p, key, k)
    return edges_from_connectivities(C), source, k


def stored_graph_space(adata: AnnData, graph_source: str) -> tuple[str | None, dict | None]:
    """What a stored graph was built on, for the starting layout: the ``obsm`` key of an
    integrated representation without gene loadings (``sc.pp.neighbors(use_rep='X_pca_harmony')``
    records it in its params) or None (scelm's own graph, or one built on the genes' PCs), and
    the parameters BBKNN recorded where it is BBKNN's batch-balanced graph (a kNN graph of no
    single space), else None."""
    from .._input import rep_loadings

    if not graph_source.startswith("uns:"):
        return None, None
    params = stored_graph_params(adata, graph_source.removeprefix("uns:"))
    if "bbknn" in params:
        recorded = params["bbknn"]
        return None, dict(recorded) if isinstance(recorded, Mapping) else {}
    use_rep = params.get("use_rep")
    if not isinstance(use_rep, str) or use_rep not in adata.obsm:
        return None, None
    try:
        linear = rep_loadings(adata, use_rep) is not None
    except ValueError:  # loadings of another shape: still a linear representation of the genes
        linear = True
    return (None if linear else use_rep), None
