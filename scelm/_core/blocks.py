"""Reading a cells x genes matrix block of rows by block of rows, and loops over those
blocks: in this process, or as Dask tasks when the matrix is Dask.

In memory or backed, a Python loop reads one block of rows at a time. When a
:class:`GeneColumns` reads a Dask array (e.g. from
``anndata.experimental.read_lazy``), every block becomes a task, so on a
``dask.distributed`` cluster the expression never leaves the workers: only each block's
result travels (a sum that Dask adds up, or the block's rows of a narrow output).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

# Rows per block everywhere: reading, sums, embeddings and Jacobians (memory of one block of
# Jacobians: BLOCK_ROWS x d x n_genes float32).
BLOCK_ROWS = 4096


def is_dask(X) -> bool:
    """Whether ``X`` is a Dask array (checked without importing Dask, an optional extra)."""
    return type(X).__module__.split(".")[0] == "dask"


def check_finite(X, what: str) -> None:
    data = X.data if sparse.issparse(X) else np.asarray(X)
    if not np.issubdtype(data.dtype, np.number) or data.dtype == bool:
        raise TypeError(f"{what} must be numeric, got dtype {data.dtype}.")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{what} contains NaN or inf values; remove or impute them first.")


class GeneColumns:
    """Some columns of a cells x genes matrix, read block of rows by block of rows.

    ``X`` may be dense, sparse, backed (h5py/zarr) or a Dask array (e.g. from
    ``anndata.experimental.read_lazy``): nothing is copied up front, so memory stays at one
    block however large ``X`` is. Each block is checked numeric and finite and comes back
    as float32, dense or CSR. ``rows[a:b]`` is the only indexing supported.
    """

    def __init__(self, X, idx: np.ndarray):
        dtype = np.dtype(X.dtype)
        if not np.issubdtype(dtype, np.number) or dtype.kind == "b":
            raise TypeError(f"The input matrix must be numeric, got dtype {dtype}.")
        self.X = X
        self.idx = np.asarray(idx)
        self.shape = (X.shape[0], len(self.idx))

    def __getitem__(self, rows: slice):
        if not isinstance(rows, slice):
            raise TypeError("GeneColumns is read by slices of rows.")
        block = self.X[rows]
        if is_dask(block):  # materialise this block only
            block = block.compute()
        if sparse.issparse(block):
            block = sparse.csr_matrix(block)[:, self.idx]
        else:
            block = np.asarray(block)[:, self.idx]
        check_finite(block, "The input matrix")
        return block.astype(np.float32) if block.dtype != np.float32 else block


def dense(block, dtype=np.float64) -> np.ndarray:
    """A block of rows (dense or sparse) as a dense array of ``dtype`` (float64 for sums,
    float32 for the encoder, which then needs no copy of a float32 block)."""
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    return block.astype(dtype, copy=False)


def iter_row_chunks(X, chunk: int = BLOCK_ROWS, dtype=np.float64):
    """Yield ``(start, stop, dense rows of dtype)`` of anything sliced by rows into dense
    or sparse blocks (arrays, sparse matrices, :class:`GeneColumns`), in this process."""
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        yield start, stop, dense(X[start:stop], dtype)


def iter_selected_rows(X, rows: np.ndarray, chunk: int = BLOCK_ROWS, dtype=np.float64):
    """Yield ``(lo, hi, dense rows of dtype)`` for the sorted row positions ``rows`` of ``X``,
    ``rows[lo:hi]`` at a time, reading one block of ``chunk`` rows of ``X`` at a time (blocks
    holding none of them are not read): memory stays at one block, however many rows."""
    rows = np.asarray(rows)
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            block = X[start:stop]
            yield int(lo), int(hi), dense(block[rows[lo:hi] - start], dtype)


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


def reduce_rows(X, fn, size: int, *, chunk: int = BLOCK_ROWS, code: np.ndarray | None = None) -> np.ndarray:
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


def map_rows(X, fn, n_cols: int, *, chunk: int = BLOCK_ROWS) -> np.ndarray:
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
