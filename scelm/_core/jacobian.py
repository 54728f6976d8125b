"""Batched exact embeddings and Jacobians in gene space.

For ``z = (x - x_ref) @ W`` and a homogeneous encoder f, the gene-space Jacobian is
``J = J_z(z) @ W.T`` and ``sum_g J[:, g] * (x - x_ref)[g] = J_z z = f(z)`` exactly. Memory
is bounded by one batch of ``batch_size x d x n_genes``; callers reduce or store each batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .blocks import BLOCK_ROWS, iter_row_chunks, map_rows
from .encoder import ELMEncoder
from .frontend import LinearFrontEnd


@dataclass
class Batch:
    start: int
    stop: int
    embedding: torch.Tensor  # (b, d)
    jacobian: torch.Tensor | None  # (b, d, n_genes) in gene space
    centred: torch.Tensor  # (b, n_genes): x - x_ref

    def contributions(self) -> torch.Tensor:
        """``J * (x - x_ref)``: (b, d, n_genes); sums over genes to the embedding."""
        return self.jacobian * self.centred.unsqueeze(1)


def iter_batches(
    front_end: LinearFrontEnd,
    encoder: ELMEncoder,
    X,
    *,
    device: torch.device,
    batch_size: int = BLOCK_ROWS,
    jacobian: bool = True,
) -> Iterator[Batch]:
    """Embed the rows of ``X`` (cells x model genes, dense or sparse) batch by batch."""
    encoder = encoder.to(device).eval()
    W = torch.as_tensor(front_end.loadings, device=device)
    ref = torch.as_tensor(front_end.reference, device=device)
    for start, stop, rows in iter_row_chunks(X, batch_size, dtype=np.float32):
        centred = torch.as_tensor(rows, device=device) - ref
        z = centred @ W
        if jacobian:
            y, jz = encoder.forward_with_jacobian(z)
            jg = jz @ W.T
        else:
            with torch.no_grad():
                y = encoder(z)
            jg = None
        yield Batch(start, stop, y, jg, centred)


def embed(front_end: LinearFrontEnd, encoder: ELMEncoder, X, *, device: torch.device, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """Embedding of every row of ``X`` as float32 ``(n, d)``, a block of ``batch_size`` rows
    at a time (Dask tasks when ``X`` reads a Dask array)."""

    def block(rows) -> np.ndarray:
        batches = iter_batches(front_end, encoder, rows, device=device, batch_size=batch_size, jacobian=False)
        return np.concatenate([b.embedding.cpu().numpy() for b in batches])

    return map_rows(X, block, encoder.n_out, chunk=batch_size)
