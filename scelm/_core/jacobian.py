"""Batched exact embeddings and Jacobians in gene space.

For ``z = (x - x_ref) @ W`` and a homogeneous encoder f, the gene-space Jacobian is
``J = J_z(z) @ W.T`` and ``sum_g J[:, g] * (x - x_ref)[g] = J_z z = f(z)`` exactly. Memory
is bounded by one batch of ``batch_size x d x n_genes``; callers reduce or store each
batch. The members of an ensemble come with their Jacobians ``J_z`` in the encoder's input
space (``batch_size x M x d x n_in``): their sums over cells are mapped to genes after.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .blocks import BLOCK_ROWS, iter_row_chunks, map_rows
from .model import ELMModel


@dataclass
class Batch:
    start: int
    stop: int
    embedding: torch.Tensor  # (b, d), or (b, M, d) for the aligned members
    jacobian: torch.Tensor | None  # (b, d, n_genes) in gene space, or the members' (b, M, d, n_in) J_z
    centred: torch.Tensor  # (b, n_genes): x - x_ref

    def contributions(self) -> torch.Tensor:
        """``J * (x - x_ref)`` ``(b, d, n_genes)``; sums over genes to the embedding."""
        if self.embedding.dim() != 2:
            raise ValueError("Contributions are per consensus batch; the members' Jacobians are in input space.")
        return self.jacobian * self.centred[:, None, :]


def iter_batches(
    model: ELMModel,
    X,
    *,
    device: torch.device,
    batch_size: int = BLOCK_ROWS,
    jacobian: bool = True,
    members: bool = False,
) -> Iterator[Batch]:
    """Embed the rows of ``X`` (cells x model genes, dense or sparse) batch by batch with
    the consensus (Jacobians in gene space), or with each aligned member (``members=True``:
    Jacobians in the encoder's input space)."""
    encoder = model.encoder().to(device).eval()
    W = torch.as_tensor(model.front_end.loadings, device=device)
    ref = torch.as_tensor(model.front_end.reference, device=device)
    for start, stop, rows in iter_row_chunks(X, batch_size, dtype=np.float32):
        centred = torch.as_tensor(rows, device=device) - ref
        z = centred @ W
        jg = None
        with torch.no_grad():
            if members and jacobian:
                y, jz = encoder.aligned_with_jacobian(z)
                y, jg = y.transpose(0, 1), jz.transpose(0, 1)
            elif members:
                y = encoder.aligned(z).transpose(0, 1)
            elif jacobian:
                y, jz = encoder.forward_with_jacobian(z)
                jg = jz @ W.T
            else:
                y = encoder(z)
        yield Batch(start, stop, y, jg, centred)


def embed(model: ELMModel, X, *, device: torch.device, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """Consensus embedding of every row of ``X`` as float32 ``(n, d)``, a block of
    ``batch_size`` rows at a time (Dask tasks when ``X`` reads a Dask array)."""

    def block(rows) -> np.ndarray:
        batches = iter_batches(model, rows, device=device, batch_size=batch_size, jacobian=False)
        return np.concatenate([b.embedding.cpu().numpy() for b in batches])

    return map_rows(X, block, model.n_components, chunk=batch_size)
