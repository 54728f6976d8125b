"""Jacobians and contributions as Dask arrays: one task per block of cells.

The source matrix (in memory, backed or already Dask) becomes a Dask array chunked over
cells only; each task reads its block, keeps the model's genes and recomputes the exact
Jacobian there. Nothing is computed until the caller asks (``.compute()``, ``.to_zarr()``,
a reduction), and on a ``dask.distributed`` cluster the tasks run on the workers.
"""

from __future__ import annotations

import numpy as np

from .._core.blocks import GeneColumns, rows_as_dask
from .._model import StoredModel


def fill(out: np.ndarray, batches, pos: np.ndarray, *, contributions: bool) -> np.ndarray:
    """Write each batch's Jacobian (or contributions) into ``out (n, d, len(pos))``, where
    ``pos`` gives each output gene's position among the model's genes (-1: zero)."""
    read = pos >= 0
    for b in batches:
        values = b.contributions() if contributions else b.jacobian
        out[b.start : b.stop][:, :, read] = values[:, :, pos[read]].cpu().numpy()
    return out


def lazy_values(model: StoredModel, X: GeneColumns, pos: np.ndarray, *, contributions: bool, device, batch_size: int):
    """Dask array ``(n_obs, d, len(pos))`` of Jacobians or contributions, chunked over cells."""
    import dask.array as da

    from .._core.jacobian import iter_batches

    src = rows_as_dask(X.X, batch_size)
    idx, d, elm = X.idx, model.n_components, model.model

    def block(rows):
        out = np.zeros((rows.shape[0], d, len(pos)), dtype=np.float32)
        batches = iter_batches(elm, GeneColumns(rows, idx), device=device, batch_size=batch_size)
        return fill(out, batches, pos, contributions=contributions)

    return da.map_blocks(
        block, src, dtype=np.float32, chunks=(src.chunks[0], (d,), (len(pos),)), drop_axis=1, new_axis=[1, 2]
    )
