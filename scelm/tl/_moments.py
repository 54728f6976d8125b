"""Per-group moments of every cell's contributions for ``rank_genes_elm``.

Each block of cells recomputes the exact Jacobians of every aligned member (the layers
hold only the consensus's) and returns its partial sums; ``reduce_rows``
adds them, in this process or, when the source matrix is a Dask array, as Dask tasks: on a
``dask.distributed`` cluster the expression never leaves the workers, only
``groups x (M d + d^2) x genes`` numbers per block do.
"""

from __future__ import annotations

import numpy as np

from .._core.blocks import GeneColumns, reduce_rows
from .._core.ranking import GroupMoments
from .._model import StoredModel


def _add(acc: GroupMoments, batches, code: np.ndarray, loadings) -> GroupMoments:
    """Add batches of the aligned members with cell group codes (-1: none)."""
    import torch

    for b in batches:
        rows = torch.as_tensor(code[b.start : b.stop], device=acc.n.device, dtype=torch.long)
        acc.update(rows, b.centred, b.jacobian_z, b.embedding, loadings)
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


def group_moments(adata, model: StoredModel, code: np.ndarray, n_groups: int, *, device, batch_size: int) -> GroupMoments:
    """Moments of the contributions of every aligned member of ``model`` per group (the
    consensus's follow from them); ``code`` gives each cell's group (-1: left out). Each
    block of cells recomputes its exact Jacobians (a Dask task when the input is Dask) and
    returns its partial sums; a batch holds ``batch_size`` cells."""
    import torch

    from .._core.jacobian import iter_member_batches

    X = model.input_matrix(adata)
    shape = (n_groups, model.n_members, model.n_components, len(model.genes))
    loadings = torch.as_tensor(model.model.front_end.loadings, device=device)

    def moments(block, block_code: np.ndarray) -> np.ndarray:
        batches = iter_member_batches(model.model, block, device=device, batch_size=batch_size)
        return _add(GroupMoments(*shape, device=device), batches, block_code, loadings).to_flat()

    size = GroupMoments(*shape, device=device).to_flat().size
    return GroupMoments.from_flat(reduce_rows(X, moments, size, chunk=batch_size, code=code), *shape, device=device)
