"""Per-group moments of every cell's contributions for ``rank_genes_elm``.

Each block of cells recomputes its exact Jacobians (cheaper than reading layers for an
ensemble, whose other members have none) and returns its partial sums; ``reduce_rows``
adds them, in this process or, when the source matrix is a Dask array, as Dask tasks: on a
``dask.distributed`` cluster the expression never leaves the workers, only
``groups x (M d)^2 x genes`` numbers per block do.
"""

from __future__ import annotations

import numpy as np

from .._core.blocks import GeneColumns, reduce_rows
from .._core.ranking import GroupMoments
from .._model import StoredModel


def _add(acc: GroupMoments, streams, code: np.ndarray) -> GroupMoments:
    """Add aligned batches of every model (``streams``) with cell group codes (-1: none)."""
    import torch

    dev = acc.n.device
    for batches in zip(*streams):
        b0 = batches[0]
        rows = torch.as_tensor(code[b0.start : b0.stop], device=dev, dtype=torch.long)
        onehot = torch.zeros(len(rows), acc.n.shape[0], device=dev)
        keep = rows >= 0
        onehot[keep.nonzero().squeeze(1), rows[keep]] = 1.0
        acc.update(
            onehot,
            torch.cat([b.contributions() for b in batches], dim=1),
            torch.cat([b.jacobian for b in batches], dim=1),
            torch.cat([b.embedding for b in batches], dim=1),
        )
    return acc


def group_means(X: GeneColumns, code: np.ndarray, n_groups: int, *, chunk: int) -> np.ndarray:
    """Mean expression per group ``(n_groups, n_genes)``."""
    from scipy import sparse

    def sums(block, block_code: np.ndarray) -> np.ndarray:
        keep = np.flatnonzero(block_code >= 0)
        onehot = sparse.csr_matrix((np.ones(len(keep)), (block_code[keep], keep)), shape=(n_groups, len(block_code)))
        total = onehot @ block
        total = total.toarray() if sparse.issparse(total) else total
        return np.concatenate([total.ravel(), np.bincount(block_code[keep], minlength=n_groups)])

    flat = reduce_rows(X, sums, n_groups * (X.shape[1] + 1), chunk=chunk, code=code)
    return flat[: -n_groups].reshape(n_groups, -1) / flat[-n_groups:, None]


def group_moments(
    adata, encoders: list[tuple[StoredModel, int]], code: np.ndarray, n_groups: int, *, device, batch_size: int
) -> GroupMoments:
    """Moments of the contributions of every ``(model, member)`` encoder per group;
    ``code`` gives each cell's group (-1: left out). Each block of cells recomputes its
    exact Jacobians (a Dask task when the input is Dask) and returns its partial sums."""
    from .._core.jacobian import iter_batches

    model = encoders[0][0]
    X = model.input_matrix(adata)
    dim, n_genes = len(encoders) * model.n_components, len(model.genes)

    def empty() -> GroupMoments:
        return GroupMoments(n_groups, dim, n_genes, device=device)

    def moments(block, block_code: np.ndarray) -> np.ndarray:
        streams = [iter_batches(m.front_end, m.encoder(i), block, device=device, batch_size=batch_size) for m, i in encoders]
        return _add(empty(), streams, block_code).to_flat()

    flat = reduce_rows(X, moments, empty().to_flat().size, chunk=batch_size, code=code)
    return GroupMoments.from_flat(flat, n_groups, dim, n_genes, device=device)
