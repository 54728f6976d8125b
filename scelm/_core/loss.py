"""UMAP's cross-entropy in the embedding, with its low-dimensional kernel.

q(d) = 1 / (1 + a d^(2b)), with a, b fitted from ``min_dist`` and ``spread`` exactly as
umap-learn does. The fuzzy cross-entropy between the graph weights w and q is, up to a
constant, sum_ij -w_ij log q_ij - (1 - w_ij) log(1 - q_ij). Like umap-learn we estimate the
second (repulsive) sum with uniform negative samples: each edge (i, j) sampled in proportion
to w_ij brings ``negative_sample_rate`` negatives for i, so node i is repelled with total
weight ``negative_sample_rate * deg(i)``. This is not the Keras/parametric-UMAP form, which
uses a sigmoid of a shifted distance and caps q.
"""

from __future__ import annotations

import torch

# umap-learn adds 0.001 to d^2 in its repulsive gradient; we add it in the same place.
REPULSION_EPS = 1e-3


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """umap-learn's curve fit of (a, b) from ``spread`` and ``min_dist``."""
    from umap.umap_ import find_ab_params as _find

    a, b = _find(spread, min_dist)
    return float(a), float(b)


def attraction(d2: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """-log q(d) = log(1 + a d^(2b)) for squared distances ``d2``."""
    return torch.log1p(a * d2.clamp_min(1e-12).pow(b))


def repulsion(d2: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """-log(1 - q(d)) = log(1 + 1 / (a d^(2b))), softened at d = 0 like umap-learn."""
    return torch.log1p(1.0 / (a * (d2 + REPULSION_EPS).pow(b)))


def umap_loss_and_gradient(
    y: torch.Tensor,
    head: torch.Tensor,
    tail: torch.Tensor,
    weight: torch.Tensor,
    neg_head: torch.Tensor,
    neg_tail: torch.Tensor,
    neg_weight: torch.Tensor,
    *,
    a: float,
    b: float,
    repulsion_strength: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per unit of edge weight and its gradient with respect to ``y``.

    ``y`` is ``(n, d)``, or ``(n, M, d)`` for M embeddings of the same cells (an ensemble
    trained together): the loss is then one value per member, ``(M,)``. ``head, tail,
    weight``: each undirected edge once; ``neg_*``: negative pairs and their weights, where
    ``neg_tail`` may be ``(pairs, M)`` to give each member its own negatives. The
    gradient is in closed form, cheaper than autograd through the gathers:
    d/d(d2) log(1 + a d2^b) = a b d2^(b-1) / (1 + a d2^b) for attraction and
    d/d(d2) log(1 + 1/(a x^b)) = -b / (x (1 + a x^b)), x = d2 + eps, for repulsion;
    each pair moves both of its ends, with d(d2)/dy_i = 2 (y_i - y_j).
    """
    y = y.detach()
    per_pair = (-1,) + (1,) * (y.dim() - 2)  # pair weights broadcast over members
    weight, neg_weight = weight.view(per_pair), neg_weight.view(per_pair)
    total = weight.sum()
    # index_select and 1-D index_add_ rather than advanced indexing: 2-4x faster on CPU.
    diff = y.index_select(0, head) - y.index_select(0, tail)
    d2 = diff.pow(2).sum(-1).clamp_min(1e-12)
    d2b = d2.pow(b)
    coef = weight * (2.0 * a * b) * d2b / (d2 * (1.0 + a * d2b))
    per_member = neg_tail.dim() == 2  # (pairs, M): each member draws its own negatives
    if per_member:  # row neg_tail[p, m] of member m is row neg_tail[p, m] * M + m of y as (n * M, d)
        n_members = y.shape[1]
        flat_tail = (neg_tail * n_members + torch.arange(n_members, device=y.device)).view(-1)
        ndiff = y.index_select(0, neg_head) - y.flatten(0, 1).index_select(0, flat_tail).view(len(neg_head), n_members, -1)
    else:
        ndiff = y.index_select(0, neg_head) - y.index_select(0, neg_tail)
    nd2 = ndiff.pow(2).sum(-1)
    x = nd2 + REPULSION_EPS
    xb = x.pow(b)
    ncoef = -(repulsion_strength * 2.0 * b) * neg_weight / (x * (1.0 + a * xb))
    pair = coef.unsqueeze(-1) * diff
    npair = ncoef.unsqueeze(-1) * ndiff
    grad = torch.zeros_like(y)
    grad.index_add_(0, head, pair).index_add_(0, tail, -pair)
    grad.index_add_(0, neg_head, npair)
    if per_member:
        grad.view(-1, y.shape[-1]).index_add_(0, flat_tail, -npair.reshape(-1, y.shape[-1]))
    else:
        grad.index_add_(0, neg_tail, -npair)
    attract = (weight * attraction(d2, a, b)).sum(0)
    repel = (neg_weight * repulsion(nd2, a, b)).sum(0)
    loss = (attract + repulsion_strength * repel) / total
    return loss, grad / total
