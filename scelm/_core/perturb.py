"""Re-embedding cells with some genes replaced: perturbations and deletion curves.

Setting gene g of a cell to ``v_g`` changes the encoder input by ``-(x_g - v_g) W_g`` (W_g:
the gene's row of front-end loadings), so deleting the top-k genes one after the other is k
rank-one updates of ``z``, each followed by one forward pass. Only the encoder inputs and the
expression of the genes set are needed: never the cells' whole expression.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import ELMModel


def _tensors(model: ELMModel, z: np.ndarray, x: np.ndarray, genes: np.ndarray, values: np.ndarray, device):
    """``z``, the expression ``x`` of ``genes`` minus what they are set to, and those genes'
    rows of the loadings, on ``device``."""
    idx = np.maximum(np.asarray(genes), 0)  # -1: a gene the model does not read (never moved)
    z = torch.as_tensor(np.asarray(z, dtype=np.float32), device=device)
    delta = torch.as_tensor(np.asarray(x, dtype=np.float32) - values[idx], device=device)
    return z, delta, torch.as_tensor(model.front_end.loadings[idx], device=device)


@torch.no_grad()
def perturbed_embedding(model: ELMModel, z: np.ndarray, x: np.ndarray, genes: np.ndarray, values: np.ndarray, *, device) -> np.ndarray:
    """Consensus embedding of cells with encoder inputs ``z`` when the model genes ``genes``
    (positions; ``x`` their expression, one column each) are set to ``values[genes]``."""
    z, delta, W = _tensors(model, z, x, genes, values, device)
    return model.encoder().to(device)(z - delta @ W).cpu().numpy()


@torch.no_grad()
def deletion_curve(model: ELMModel, group: tuple, ref: tuple, order: np.ndarray, values: np.ndarray, *, both: bool, device) -> np.ndarray:
    """Share of the group's separation from its reference removed by deleting the genes
    ``order[:k]`` (model-gene positions; -1 for a gene the model does not read, which moves
    nothing), for k = 1 .. len(order). ``group`` and ``ref`` are ``(z, x)``: encoder inputs
    of their cells and their expression of the genes of ``order``, one column each.

    Separation is the distance between the two centroids; after deletion it is measured
    along the original direction ``u`` between them, so the share is
    ``1 - (c_g' - c_r') . u / |c_g - c_r|`` (0: nothing moved, 1: the group sits on its
    reference, > 1: pushed past it). Genes are deleted in the group's cells, and also in
    the reference's when ``both``.
    """
    encoder = model.encoder().to(device)
    zg, dg, W = _tensors(model, *group, order, values, device)
    zr, dr, _ = _tensors(model, *ref, order, values, device)
    cg, cr = encoder(zg).mean(0), encoder(zr).mean(0)
    dist = torch.linalg.vector_norm(cg - cr)
    u = (cg - cr) / dist.clamp_min(1e-30)
    removed = np.empty(len(order))
    for k, gene in enumerate(np.asarray(order).tolist()):
        if gene >= 0:
            zg -= torch.outer(dg[:, k], W[k])
            if both:
                zr -= torch.outer(dr[:, k], W[k])
                cr = encoder(zr).mean(0)
        removed[k] = float(1.0 - ((encoder(zg).mean(0) - cr) @ u) / dist)
    return removed
