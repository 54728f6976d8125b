"""UMAP's cross-entropy and t-SNE's KL divergence in the embedding, with closed-form gradients.

q(d) = 1 / (1 + a d^(2b)), with a, b fitted from ``min_dist`` and ``spread`` exactly as
umap-learn does. The fuzzy cross-entropy between the graph weights w and q is, up to a
constant, sum_ij -w_ij log q_ij - (1 - w_ij) log(1 - q_ij). Like umap-learn we estimate the
second (repulsive) sum with uniform negative samples. This is not the Keras/parametric-UMAP
form, which uses a sigmoid of a shifted distance and caps q.

Weighting, per edge as umap-learn applies it. umap-learn lists each undirected edge in both
directions; sampled in proportion to w_ij, a directed edge (i, j) attracts both ends and
repels its head i from ``negative_sample_rate`` = m uniform cells. So each end of an edge is
attracted with weight 2 w_ij and cell i is repelled with total weight m deg(i). We list each
undirected edge once (attracting both ends with w_ij) and give each cell m uniform negatives
of weight deg(i) / 2 that move it (the head) only: every cell gets umap-learn's ratio of
repulsion to its own attraction. Tried and measured worse: a weight symmetric in the two ends,
(deg(i) + deg(j)) / 4, whose expected forces are the gradient of one loss (trustworthiness
0.853 against 0.884 at 10,000 simulated cells, one model, 3 seeds: cells of low degree are
over-repelled, dense ones under-repelled). As in umap-learn, the forces are then not the
gradient of one loss: their sum over all cells, the negatives' net push, is not zero.
When a step encodes the whole map (full batch), that net push is removed: a shift common to
every cell is a translation of the map, which changes no distance and so no term of the
objective, but a bias-free encoder would spend its weights following it (Adam turns the
steady push into a drift: trustworthiness 0.68 against 0.75 at 2,000 cells). In a block the
same common shift moves the block against the other cells. On uncentred input the encoder
follows it along the mean cell's direction, moving every cell alike, and removing it cost
0.025 of trustworthiness at 10,000 cells; on centred input (``center=True``) the encoder
cannot shift every cell alike, the push bends the map instead, and removing it in every
block lifted trustworthiness from 0.874 to 0.884 (``sc.tl.umap`` 0.886; 3 seeds). So it is
removed at full batch and, on centred input, in every block (``Pairs.remove_net_push``).
Each block cell otherwise gets the forces full-batch training gives it, and full batch and
blocks optimise one objective up to translations (``scelm._core.train``).

Every function here reads rows of one flat ``(N, d)`` array: the cells of one map, or the
cells of M maps stacked (row ``i * M + m`` is cell i in member m). ``Pairs`` names the rows
of each attracting edge and each negative pair, and which member each pair belongs to, so
one call evaluates every member of an ensemble, each on its own block and its own negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# umap-learn adds 0.001 to d^2 in its repulsive gradient; we add it in the same place.
REPULSION_EPS = 1e-3


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """umap-learn's curve fit of (a, b) from ``spread`` and ``min_dist``."""
    from .umap_import import quiet_umap_import

    with quiet_umap_import():
        from umap.umap_ import find_ab_params as _find

    a, b = _find(spread, min_dist)
    return float(a), float(b)


def attraction(d2b: torch.Tensor, a: float) -> torch.Tensor:
    """-log q(d) = log(1 + a d^(2b)), from ``d2b`` = d^(2b) (d^2 clamped above 0)."""
    return torch.log1p(a * d2b)


def repulsion(xb: torch.Tensor, a: float) -> torch.Tensor:
    """-log(1 - q(d)) = log(1 + 1 / (a d^(2b))), softened at d = 0 like umap-learn: from
    ``xb`` = (d^2 + ``REPULSION_EPS``)^b."""
    return torch.log1p(1.0 / (a * xb))


# Each of a cell's m negatives repels it with weight NEGATIVE_WEIGHT * deg(cell) and moves it
# only (see the module's docstring).
NEGATIVE_WEIGHT = 0.5


def negative_weight(head_degree: torch.Tensor) -> torch.Tensor:
    return NEGATIVE_WEIGHT * head_degree


@dataclass
class Pairs:
    """The pairs of one step, as rows of the flat embedding.

    ``head, tail, weight``: attracting edges (each undirected edge once; ``ends`` the share of
    its loss this step counts: 1, or 1/2 when only one end's gradient is used);
    ``neg_head, neg_tail, neg_weight``: negative pairs (only the head moves). ``edge_member``,
    ``neg_member``: each pair's member, or None with one member. ``scale`` ``(M,)``: what
    each member's sums are divided by (its edges' total weight, times the block's share of
    the cells in block steps). ``n_cells``: cells per map (t-SNE's normaliser).
    ``remove_net_push``: subtract each member's mean negative force from its negatives (a
    shift common to the step's heads: at full batch a translation of the map)."""

    head: torch.Tensor
    tail: torch.Tensor
    weight: torch.Tensor
    neg_head: torch.Tensor
    neg_tail: torch.Tensor
    neg_weight: torch.Tensor
    scale: torch.Tensor
    n_cells: int
    negative_sample_rate: int
    edge_member: torch.Tensor | None = None
    neg_member: torch.Tensor | None = None
    ends: torch.Tensor | float = 1.0
    remove_net_push: bool = False

    @property
    def n_members(self) -> int:
        return self.scale.shape[0]

    def per_member(self, values: torch.Tensor, member: torch.Tensor | None) -> torch.Tensor:
        """``(M,)`` sums of per-pair ``values`` by member."""
        if member is None:
            return values.sum().reshape(1)
        return torch.zeros(self.n_members, dtype=values.dtype, device=values.device).index_add_(0, member, values)

    def of_member(self, per_member: torch.Tensor, member: torch.Tensor | None) -> torch.Tensor:
        """A per-member value ``(M,)`` at each pair."""
        return per_member[0] if member is None else per_member.index_select(0, member)


def _differences(y: torch.Tensor, pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_h - y_t`` of every attracting edge and of every negative pair."""
    # index_select and 1-D index_add_ (in _forces) rather than advanced indexing: 2-4x faster on CPU.
    return (
        y.index_select(0, pairs.head) - y.index_select(0, pairs.tail),
        y.index_select(0, pairs.neg_head) - y.index_select(0, pairs.neg_tail),
    )


def _forces(y, pairs: Pairs, diff, ndiff, coef: torch.Tensor, ncoef: torch.Tensor, *, centre: bool = False) -> torch.Tensor:
    """The gradient: each edge's ``coef (y_h - y_t)`` (``diff``) on its head and the opposite on
    its tail, each negative pair's ``ncoef (y_h - y_t)`` (``ndiff``) on its head; with
    ``centre``, less the mean of the latter over each member's negatives (their net push, zero
    in expectation)."""
    pair, npair = coef.unsqueeze(-1) * diff, ncoef.unsqueeze(-1) * ndiff
    if centre:
        count = pairs.per_member(torch.ones_like(ncoef), pairs.neg_member)
        net = torch.stack([pairs.per_member(npair[:, k], pairs.neg_member) for k in range(y.shape[1])], -1) / count[:, None]
        npair = npair - (net[0] if pairs.neg_member is None else net.index_select(0, pairs.neg_member))
    grad = torch.zeros_like(y)
    return grad.index_add_(0, pairs.head, pair).index_add_(0, pairs.tail, -pair).index_add_(0, pairs.neg_head, npair)


def umap_loss_and_gradient(y: torch.Tensor, pairs: Pairs, *, a: float, b: float, repulsion_strength: float):
    """Cross-entropy per member ``(M,)``, divided by ``pairs.scale``, and its gradient with
    respect to the flat embedding ``y`` ``(N, d)``.

    The gradient is in closed form, cheaper than autograd through the gathers:
    d/d(d2) log(1 + a d2^b) = a b d2^(b-1) / (1 + a d2^b) for attraction and
    d/d(d2) log(1 + 1/(a x^b)) = -b / (x (1 + a x^b)), x = d2 + eps, for repulsion,
    with d(d2)/dy_i = 2 (y_i - y_j). With ``pairs.remove_net_push`` the negatives' net push (at
    full batch a translation of the map) is removed.
    """
    y = y.detach()
    diff, ndiff = _differences(y, pairs)  # each gathered once, for the distances and the forces
    d2 = diff.pow(2).sum(-1).clamp_min(1e-12)
    d2b = d2.pow(b)
    w = pairs.weight / pairs.of_member(pairs.scale, pairs.edge_member)
    coef = w * (2.0 * a * b) * d2b / (d2 * (1.0 + a * d2b))
    x = ndiff.pow(2).sum(-1) + REPULSION_EPS
    xb = x.pow(b)
    nw = repulsion_strength * pairs.neg_weight / pairs.of_member(pairs.scale, pairs.neg_member)
    ncoef = -(2.0 * b) * nw / (x * (1.0 + a * xb))
    grad = _forces(y, pairs, diff, ndiff, coef, ncoef, centre=pairs.remove_net_push)
    loss = pairs.per_member(w * pairs.ends * attraction(d2b, a), pairs.edge_member)
    loss = loss + pairs.per_member(nw * repulsion(xb, a), pairs.neg_member)
    return loss, grad


def tsne_loss_and_gradient(y: torch.Tensor, pairs: Pairs, *, exaggeration: float, dof: float):
    """t-SNE's KL divergence per member (up to its constant) and its gradient with respect
    to ``y``, with the repulsion and the normaliser estimated from uniform negative samples.

    Kernel w = (1 + d^2 / dof)^-dof (Cauchy for dof = 1; heavier tails below). With
    q_ij = w_ij / Z the gradient is dKL/dy_i = 4 sum_j (rho p_ij - q_ij) w_ij^(1/dof) (y_i - y_j)
    (rho: the exaggeration). Attraction runs over the edges of ``P`` (each undirected pair
    once, ``weight`` its joint probability, moving both ends). Repulsion
    4 sum_j w_ij^(1+1/dof) (y_i - y_j) / Z is estimated for each negative's head as
    (n - 1) / m times the sum over its m = ``negative_sample_rate`` negatives, drawn uniformly
    from the *other* cells, and Z = sum_{i != j} w_ij as n (n - 1) times the mean w over every
    negative of the member's step (Damrich et al., ICLR 2023). The force of each negative is
    unbiased given Z; Z's estimate is a ratio, consistent but not unbiased at finite m.
    """
    y = y.detach()
    n = pairs.n_cells
    diff, ndiff = _differences(y, pairs)
    base = 1.0 + diff.pow(2).sum(-1) / dof
    coef = (4.0 * exaggeration) * pairs.weight / base
    nbase = 1.0 + ndiff.pow(2).sum(-1) / dof
    nw = nbase.pow(-dof)
    count = pairs.per_member(torch.ones_like(nw), pairs.neg_member)
    z = n * (n - 1) * pairs.per_member(nw, pairs.neg_member) / count  # (M,): each member's normaliser
    ncoef = -4.0 * (n - 1) / pairs.negative_sample_rate * nw / nbase / pairs.of_member(z, pairs.neg_member)
    grad = _forces(y, pairs, diff, ndiff, coef, ncoef)
    # KL(P || Q) = sum p log p - sum p log w + log Z, on this step's edges
    p = pairs.weight * pairs.ends
    loss = pairs.per_member(p * dof * torch.log(base), pairs.edge_member) / pairs.per_member(p, pairs.edge_member) + torch.log(z)
    return loss, grad


@dataclass(frozen=True)
class UMAPObjective:
    """UMAP's cross-entropy for the trainer: negatives weighted by half their head's degree,
    moving their heads only (see the module's docstring)."""

    a: float
    b: float
    repulsion_strength: float = 1.0
    name = "UMAP cross-entropy"

    def __call__(self, y: torch.Tensor, pairs: Pairs):
        return umap_loss_and_gradient(y, pairs, a=self.a, b=self.b, repulsion_strength=self.repulsion_strength)


@dataclass(frozen=True)
class TSNEObjective:
    """t-SNE's KL divergence for the trainer (edge weights: the joint probabilities P)."""

    exaggeration: float = 1.0
    dof: float = 1.0
    name = "t-SNE KL divergence"

    def __call__(self, y: torch.Tensor, pairs: Pairs):
        return tsne_loss_and_gradient(y, pairs, exaggeration=self.exaggeration, dof=self.dof)
