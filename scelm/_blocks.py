"""Loops over blocks of cells: in this process, or as Dask tasks when the matrix is Dask.

In memory or backed, a Python loop reads one block of rows at a time. When a
:class:`scelm._input.GeneColumns` reads a Dask array (e.g. from
``anndata.experimental.read_lazy``), every block becomes a task, so on a
``dask.distributed`` cluster the expression never leaves the workers: only each block's
result travels (a sum that Dask adds up, or the block's rows of a narrow output).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._input import GeneColumns, is_dask

CHUNK = 8192


def dense64(block) -> np.ndarray:
    """A block of rows (dense or sparse) as a dense float64 array."""
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    return block.astype(np.float64, copy=False)


def iter_row_chunks(X, chunk: int = CHUNK):
    """Yield ``(start, stop, dense float64 rows)`` of anything sliced by rows into dense
    or sparse blocks (arrays, sparse matrices, :class:`GeneColumns`), in this process."""
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        yield start, stop, dense64(X[start:stop])


def rows_as_dask(X, chunk: int):
    """``X`` as a Dask array chunked over rows only (``chunk`` rows unless already Dask)."""
    import dask.array as da

    if is_dask(X):
        return X.rechunk({1: -1})
    meta = X[0:1][:0]  # an empty block of the type slicing returns (dense, CSR, ...)
    return da.from_array(X, chunks=(chunk, X.shape[1]), asarray=False, meta=meta)


def reads_dask(X) -> bool:
    """Whether ``X`` is a :class:`GeneColumns` over a Dask array (its blocks become tasks)."""
    return isinstance(X, GeneColumns) and is_dask(X.X)


def reduce_rows(X, fn, size: int, *, chunk: int = CHUNK, code: np.ndarray | None = None) -> np.ndarray:
    """Sum over blocks of ``chunk`` rows of ``fn(block, its codes) -> float64 (size,)``.

    ``block`` is what ``X[a:b]`` returns (float32, dense or CSR, for :class:`GeneColumns`);
    ``code`` is an optional per-row integer array handed along block by block.
    """
    code = np.zeros(X.shape[0], dtype=np.int64) if code is None else code
    if not reads_dask(X):
        total = np.zeros(size)
        for start in range(0, X.shape[0], chunk):
            rows = slice(start, start + chunk)
            total += fn(X[rows], code[rows])
        return total
    import dask.array as da

    src = rows_as_dask(X.X, chunk)
    codes = da.from_array(code[:, None], chunks=(src.chunks[0], 1))
    parts = da.map_blocks(
        lambda rows, c: fn(GeneColumns(rows, X.idx)[:], c[:, 0])[None, :],
        src, codes, dtype=np.float64, chunks=((1,) * len(src.chunks[0]), (size,)),
    )
    return parts.sum(0).compute()


def map_rows(X, fn, n_cols: int, *, chunk: int = CHUNK) -> np.ndarray:
    """``fn(block) -> (rows, n_cols)`` for every block of rows, stacked as float32."""
    if not reads_dask(X):
        out = np.empty((X.shape[0], n_cols), dtype=np.float32)
        for start in range(0, X.shape[0], chunk):
            stop = min(start + chunk, X.shape[0])
            out[start:stop] = fn(X[start:stop])
        return out
    import dask.array as da

    src = rows_as_dask(X.X, chunk)
    out = da.map_blocks(
        lambda rows: fn(GeneColumns(rows, X.idx)[:]).astype(np.float32),
        src, dtype=np.float32, chunks=(src.chunks[0], (n_cols,)),
    )
    return out.compute()
