"""Batched exact embeddings and Jacobians in gene space.

For ``z = (x - x_ref) @ W`` and a homogeneous encoder f, the gene-space Jacobian is
``J = J_z(z) @ W.T`` and ``sum_g J[:, g] * (x - x_ref)[g] = J_z z = f(z)`` exactly. Memory
is bounded by one batch of ``batch_size x d x n_genes``; callers reduce or store each
batch (:class:`Batch`). The members of an ensemble come with their Jacobians ``J_z`` in the
encoder's input space (:class:`MemberBatch`, ``batch_size x M x d x n_in``): their sums over
cells are mapped to genes after.
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
    """Consensus embedding, its exact Jacobian in gene space and the centred expression of
    cells ``start:stop``."""

    start: int
    stop: int
    embedding: torch.Tensor  # (b, d)
    jacobian: torch.Tensor | None  # (b, d, n_genes)
    centred: torch.Tensor  # (b, n_genes): x - x_ref

    def contributions(self) -> torch.Tensor:
        """``J * (x - x_ref)`` ``(b, d, n_genes)``; sums over genes to the embedding."""
        return self.jacobian * self.centred[:, None, :]


@dataclass
class MemberBatch:
    """Every aligned member's embedding and Jacobian in the encoder's input space, and the
    centred expression of cells ``start:stop``; gene-space Jacobians are ``jacobian_z @ W^T``."""

    start: int
    stop: int
    embedding: torch.Tensor  # (b, M, d)
    jacobian_z: torch.Tensor  # (b, M, d, n_in)
    centred: torch.Tensor  # (b, n_genes)


def _encoder_inputs(model: ELMModel, X, device: torch.device, batch_size: int):
    """``(start, stop, centred, z)`` over batches of the rows of ``X``."""
    W = torch.as_tensor(model.front_end.loadings, device=device)
    ref = torch.as_tensor(model.front_end.reference, device=device)
    for start, stop, rows in iter_row_chunks(X, batch_size, dtype=np.float32):
        centred = torch.as_tensor(rows, device=device) - ref
        yield start, stop, centred, centred @ W


def iter_batches(model: ELMModel, X, *, device: torch.device, batch_size: int = BLOCK_ROWS, jacobian: bool = True) -> Iterator[Batch]:
    """Embed the rows of ``X`` (cells x model genes, dense or sparse) batch by batch with the
    consensus, with its Jacobians in gene space unless ``jacobian=False``."""
    encoder = model.encoder().to(device).eval()
    W = torch.as_tensor(model.front_end.loadings, device=device)
    for start, stop, centred, z in _encoder_inputs(model, X, device, batch_size):
        with torch.no_grad():
            if jacobian:
                y, jz = encoder.forward_with_jacobian(z)
                yield Batch(start, stop, y, jz @ W.T, centred)
            else:
                yield Batch(start, stop, encoder(z), None, centred)


def iter_member_batches(model: ELMModel, X, *, device: torch.device, batch_size: int = BLOCK_ROWS) -> Iterator[MemberBatch]:
    """Each aligned member's embedding and input-space Jacobian over batches of the rows of ``X``."""
    encoder = model.encoder().to(device).eval()
    for start, stop, centred, z in _encoder_inputs(model, X, device, batch_size):
        with torch.no_grad():
            y, jz = encoder.aligned_with_jacobian(z)
        yield MemberBatch(start, stop, y.transpose(0, 1), jz.transpose(0, 1), centred)


def embed(model: ELMModel, X, *, device: torch.device, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """Consensus embedding of every row of ``X`` as float32 ``(n, d)``, a block of
    ``batch_size`` rows at a time (Dask tasks when ``X`` reads a Dask array)."""

    def block(rows) -> np.ndarray:
        batches = iter_batches(model, rows, device=device, batch_size=batch_size, jacobian=False)
        return np.concatenate([b.embedding.cpu().numpy() for b in batches])

    return map_rows(X, block, model.n_components, chunk=batch_size)
