"""Re-embedding cells with some genes replaced: perturbations and deletion curves.

Setting gene g of a cell to ``v_g`` changes the encoder input by ``-(x_g - v_g) W_g`` (W_g:
the gene's row of front-end loadings), so deleting the top-k genes one after the other is k
rank-one updates of ``z``, each followed by one forward pass: no copy of the expression.
"""

from __future__ import annotations

import numpy as np
import torch

from .frontend import LinearFrontEnd
from .model import ELMModel


def _inputs(front_end: LinearFrontEnd, X: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, W, z)`` on ``device`` for dense rows ``X`` over the model's genes."""
    x = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    W = torch.as_tensor(front_end.loadings, device=device)
    z = (x - torch.as_tensor(front_end.reference, device=device)) @ W
    return x, W, z


@torch.no_grad()
def perturbed_embedding(model: ELMModel, X: np.ndarray, genes: np.ndarray, values: np.ndarray, *, device) -> np.ndarray:
    """Consensus embedding of the rows of ``X`` with model genes ``genes`` (positions) set to ``values``."""
    x, W, z = _inputs(model.front_end, X, device)
    idx = torch.as_tensor(genes, device=device, dtype=torch.long)
    shift = x[:, idx] - torch.as_tensor(values, device=device, dtype=torch.float32)
    return model.encoder().to(device)(z - shift @ W[idx]).cpu().numpy()


@torch.no_grad()
def deletion_curve(
    model: ELMModel,
    X_group: np.ndarray,
    X_ref: np.ndarray,
    order: np.ndarray,
    values: np.ndarray,
    *,
    both: bool,
    device,
) -> np.ndarray:
    """Share of the group's separation from its reference removed by deleting the genes
    ``order[:k]`` (model-gene positions; -1 for a gene the model does not read, which moves
    nothing), for k = 1 .. len(order).

    Separation is the distance between the two centroids; after deletion it is measured
    along the original direction ``u`` between them, so the share is
    ``1 - (c_g' - c_r') . u / |c_g - c_r|`` (0: nothing moved, 1: the group sits on its
    reference, > 1: pushed past it). Genes are deleted in the group's cells, and also in
    the reference's when ``both``.
    """
    encoder = model.encoder().to(device)
    xg, W, zg = _inputs(model.front_end, X_group, device)
    xr, _, zr = _inputs(model.front_end, X_ref, device)
    vals = torch.as_tensor(values, device=device, dtype=torch.float32)
    cg, cr = encoder(zg).mean(0), encoder(zr).mean(0)
    dist = torch.linalg.vector_norm(cg - cr)
    u = (cg - cr) / dist.clamp_min(1e-30)
    removed = np.empty(len(order))
    for k, gene in enumerate(np.asarray(order).tolist()):
        if gene >= 0:
            zg -= torch.outer(xg[:, gene] - vals[gene], W[gene])
            if both:
                zr -= torch.outer(xr[:, gene] - vals[gene], W[gene])
                cr = encoder(zr).mean(0)
        removed[k] = float(1.0 - ((encoder(zg).mean(0) - cr) @ u) / dist)
    return removed
