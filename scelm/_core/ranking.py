"""Per-group moments of contributions, streamed, and the ELM ranking scores from them.

Per cell i and gene k, with c^m_ik (length d) the contribution vector of the aligned member
m of an ensemble and c̄_ik their mean (the consensus's), the cells are reduced per group into

    n[g], S1[g] = sum c^m_i (stacked over m), SJ[g] = sum J^m_i, SY[g] = sum y^m_i,
    S2[g] = sum c̄_i c̄_i^T, SX[g] = sum (x_i - x_ref)

so the memory is O(groups x M d x genes + groups x d^2 x genes), never cells x d x genes.
Every direction u can be applied after the pass: the consensus's mean of (c̄_i . u) follows
from S1 and its second moment is u^T S2 u / n, which is what the per-cell t-test needs;
the members' sums give every member's, and any subset's, scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ROWS_F64 = 1024  # rows of one group turned to float64 at a time (bounds a batch's copies)
# Above this many float64 bytes for the input-space product (genes x M d n_in: quadratic in
# genes when the front end is the identity), the members' sums are formed in gene space,
# from each cell's contributions, a few rows at a time: the same products, bounded memory.
INPUT_SPACE_MAX_BYTES = 2**28


def _member_sums(x: torch.Tensor, j: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``(M d, genes)``: the members' contributions summed over the rows, from their
    expression ``x (rows, genes)``, input-space Jacobians ``j (rows, M, d, n_in)`` and the
    loadings ``W (genes, n_in)`` (all float64)."""
    genes, n_in = W.shape
    md = j.shape[1] * j.shape[2]
    if genes * md * n_in * 8 <= INPUT_SPACE_MAX_BYTES:
        xj = x.T @ j.flatten(1)  # (genes, M d n_in)
        return (xj.view(genes, md, n_in) * W[:, None, :]).sum(-1).T
    step = max(1, INPUT_SPACE_MAX_BYTES // (md * genes * 8))
    total = torch.zeros(md, genes, dtype=x.dtype, device=x.device)
    for lo in range(0, x.shape[0], step):  # each row's (M d, genes) contributions, a few rows at a time
        total += ((j[lo : lo + step].flatten(1, 2) @ W.T) * x[lo : lo + step, None, :]).sum(0)
    return total


class GroupMoments:
    """Accumulates the sums above for ``n_groups`` cell groups of an ensemble of
    ``n_members`` members with ``d`` axes, on ``device`` (float64)."""

    FIELDS = ("n", "s1", "s2", "sj", "sy", "sx")

    def __init__(self, n_groups: int, n_members: int, d: int, n_genes: int, *, device: torch.device):
        f64 = dict(dtype=torch.float64, device=device)
        self.n_members, self.d = n_members, d
        self.n = torch.zeros(n_groups, **f64)
        self.s1 = torch.zeros(n_groups, n_members * d, n_genes, **f64)
        self.s2 = torch.zeros(n_groups, d, d, n_genes, **f64)
        self.sj = torch.zeros(n_groups, n_members * d, n_genes, **f64)
        self.sy = torch.zeros(n_groups, n_members * d, **f64)
        self.sx = torch.zeros(n_groups, n_genes, **f64)

    def update(self, code: torch.Tensor, centred: torch.Tensor, jz: torch.Tensor, y: torch.Tensor, loadings: torch.Tensor) -> None:
        """Add a batch: ``code (b,)`` each cell's group (-1: left out), ``centred (b, genes)``
        its ``x - x_ref``, the aligned members' Jacobians in the encoder's input space
        ``jz (b, M, d, n_in)`` and embeddings ``y (b, M, d)``, and the loadings ``W (genes, n_in)``.

        With J = jz W^T, a member's contributions summed over a group's cells are, per gene
        k, ``sum_p W[k, p] (sum_i x_ik jz_i[:, p])``: one ``genes x (M d n_in)`` product per
        group, in float64, instead of every cell's ``M x d x genes`` contributions. Only the
        consensus's contributions (the members' mean) are formed, for S2.
        """
        f64 = torch.float64
        W = loadings.to(f64)
        for g in torch.unique(code[code >= 0]).tolist():
            for rows in torch.nonzero(code == g).squeeze(1).split(ROWS_F64):
                x, j = centred[rows], jz[rows]
                j64 = j.to(f64)
                self.n[g] += len(rows)
                self.s1[g] += _member_sums(x.to(f64), j64, W)
                self.sj[g] += j64.sum(0).flatten(0, 1) @ W.T
                self.sy[g] += y[rows].to(f64).sum(0).flatten()
                self.sx[g] += x.to(f64).sum(0)
                c = ((j.mean(1) @ loadings.T) * x[:, None, :]).to(f64)  # the consensus's (rows, d, genes)
                for a in range(self.d):
                    for e in range(a, self.d):
                        self.s2[g, a, e] += (c[:, a] * c[:, e]).sum(0)
                        if a != e:
                            self.s2[g, e, a] = self.s2[g, a, e]

    def to_flat(self) -> np.ndarray:
        """Every sum in one float64 vector (what a Dask task returns)."""
        return np.concatenate([getattr(self, k).cpu().numpy().ravel() for k in self.FIELDS])

    @classmethod
    def from_flat(cls, flat: np.ndarray, n_groups: int, n_members: int, d: int, n_genes: int, *, device) -> GroupMoments:
        """Inverse of :meth:`to_flat`."""
        acc = cls(n_groups, n_members, d, n_genes, device=device)
        start = 0
        for k in cls.FIELDS:
            t = getattr(acc, k)
            t.copy_(torch.as_tensor(flat[start : start + t.numel()].reshape(t.shape)))
            start += t.numel()
        return acc

    def pooled(self, groups: list[int]) -> dict[str, torch.Tensor]:
        """The sums over a set of groups (e.g. 'rest')."""
        idx = torch.as_tensor(groups, device=self.n.device)
        return {k: getattr(self, k)[idx].sum(0) for k in self.FIELDS}


@dataclass
class MemberMeans:
    """One group against its reference, per aligned member m of the ensemble: the
    differences of mean embedding ``delta_y (M, d)`` and of mean contributions
    ``delta_c (M, d, genes)``, the group's mean contributions ``mean_c`` and mean
    Jacobians ``mean_j``, and the expression part of ``delta_c``: ``delta_e = (mean J_group
    + mean J_ref) / 2 * (mean x_group - mean x_ref)``. The consensus is the members' mean, so
    every score of the consensus, of any weighted subset of members, and each member's part
    of the consensus score follow from these by :meth:`scores`."""

    delta_y: torch.Tensor
    delta_c: torch.Tensor
    mean_c: torch.Tensor
    mean_j: torch.Tensor
    delta_e: torch.Tensor

    @property
    def n_members(self) -> int:
        return self.delta_y.shape[0]

    def direction(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit vector from the reference's centroid to the group's in the map of the
        members weighted by ``weights`` (summing to 1), and the centroids' distance."""
        dy = weights @ self.delta_y
        dist = dy.norm()
        return dy / dist.clamp_min(1e-30), dist

    def scores(self, score: str, weights: torch.Tensor, *, along: torch.Tensor | None = None) -> torch.Tensor:
        """Every gene's ``score`` in the map of the members weighted by ``weights`` ``(M,)``
        (uniform: the consensus), or one row per row of ``weights`` ``(K, M)``.

        separation = (mean c_group - mean c_ref) . u sums over genes to the centroid
        distance; position = mean c_group . u to the group centroid's coordinate along u;
        magnitude = |mean c_group| (unsigned); weight = mean J_group . u (no expression);
        expression = delta_e . u, the part of the separation due to each gene's change of mean
        expression at the two groups' mean mapping. Exactly, mean c_g - mean c_r =
        J̄ Δx̄ + x̄ ΔJ̄ + ΔCov(J, x) with J̄, x̄ the two groups' midpoints (products
        per gene): the expression part is the first term.
        u is the weighted map's own direction, unless ``along`` gives the direction
        ``(d,)`` (``(d, genes)`` for magnitude): with the consensus's, the members' rows
        (``weights`` the identity) are their parts of the consensus score, whose mean it is.
        """
        if score == "magnitude":
            mean = torch.einsum("...m,mdk->...dk", weights, self.mean_c)
            return mean.norm(dim=-2) if along is None else (mean * along).sum(-2)
        field = {"separation": self.delta_c, "position": self.mean_c, "weight": self.mean_j, "expression": self.delta_e}[score]
        if along is None:
            if weights.dim() == 2:
                return torch.stack([self.scores(score, w) for w in weights])
            along, _ = self.direction(weights)
        return torch.einsum("...m,mdk,d->...k", weights, field, along)

    def member_parts(self, score: str) -> torch.Tensor:
        """``(M, genes)``: each member's part of the consensus score, whose mean it is: the
        member's field projected on the consensus direction (for magnitude, its mean
        contribution projected on the consensus's, per gene: the delta-method part)."""
        weights = uniform(self.n_members, self.delta_y)
        if score == "magnitude":
            mean = torch.einsum("m,mdk->dk", weights, self.mean_c)
            along = mean / mean.norm(dim=0).clamp_min(1e-300)
        else:
            along, _ = self.direction(weights)
        return self.scores(score, torch.eye(self.n_members, dtype=weights.dtype, device=weights.device), along=along)


def uniform(n_members: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n_members,), 1.0 / n_members, dtype=like.dtype, device=like.device)


def welch(m1, v1, n1, m2, v2, n2):
    """Welch's t and degrees of freedom from two samples' means, unbiased variances and
    sizes (tensors broadcasting together); t = 0 and dof = 1 where both variances are 0."""
    se2_1, se2_2 = v1 / n1, v2 / n2
    se = (se2_1 + se2_2).sqrt()
    t = torch.where(se > 0, (m1 - m2) / se.clamp_min(1e-300), torch.zeros_like(se))
    den = se2_1**2 / (n1 - 1).clamp_min(1) + se2_2**2 / (n2 - 1).clamp_min(1)
    dof = torch.where(den > 0, (se2_1 + se2_2) ** 2 / den.clamp_min(1e-300), torch.ones_like(se))
    return t, dof


def one_sample_t(m, v, n):
    """One-sample t against 0 and its degrees of freedom (t = 0 where the variance is 0)."""
    se = (v / n).sqrt()
    t = torch.where(se > 0, m / se.clamp_min(1e-300), torch.zeros_like(se))
    return t, (n - 1).clamp_min(1) * torch.ones_like(se)


@dataclass
class GroupScores:
    """Scores of every gene for one group against its reference, in the consensus map."""

    scores: dict[str, np.ndarray]  # each score of the consensus
    members: MemberMeans  # what resampled and per-member scores are computed from
    tests: dict[str, tuple[np.ndarray, np.ndarray]]  # per score with a test: t and its dof
    distance: float  # |centroid_group - centroid_ref| in the consensus map
    direction_agreement: float  # how far the members agree on the direction u (NaN for one)


def group_scores(g: dict, r: dict, n_members: int, d: int) -> GroupScores:
    """Scores of group sums ``g`` against reference sums ``r`` (from :meth:`GroupMoments.pooled`
    over the stacked contributions of the ``n_members`` aligned members)."""
    ng, nr = g["n"], r["n"]
    means = MemberMeans(
        delta_y=(g["sy"] / ng - r["sy"] / nr).reshape(n_members, d),
        delta_c=(g["s1"] / ng - r["s1"] / nr).reshape(n_members, d, -1),
        mean_c=(g["s1"] / ng).reshape(n_members, d, -1),
        mean_j=(g["sj"] / ng).reshape(n_members, d, -1),
        delta_e=((g["sj"] / ng + r["sj"] / nr) / 2).reshape(n_members, d, -1) * (g["sx"] / ng - r["sx"] / nr),
    )
    weights = uniform(n_members, means.delta_y)
    u, dist = means.direction(weights)

    def moments(s: dict, n: torch.Tensor):
        # Per-cell consensus score c̄_i . u: its mean from the members' sums, its unbiased
        # variance from the consensus's second moments.
        m1 = torch.einsum("mdk,d->k", s["s1"].reshape(n_members, d, -1), u) / n_members / n
        m2 = torch.einsum("ijk,i,j->k", s["s2"], u, u) / n
        return m1, (m2 - m1**2).clamp_min(0) * n / (n - 1).clamp_min(1)

    (m_g, v_g), (m_r, v_r) = moments(g, ng), moments(r, nr)
    tests = {"separation": welch(m_g, v_g, ng, m_r, v_r, nr), "position": one_sample_t(m_g, v_g, ng)}
    scores = {name: means.scores(name, weights).cpu().numpy() for name in ("separation", "position", "magnitude", "weight", "expression")}
    return GroupScores(scores=scores, members=means, tests={k: (t.cpu().numpy(), f.cpu().numpy()) for k, (t, f) in tests.items()},
                       distance=float(dist), direction_agreement=direction_agreement(means.delta_y))


def direction_agreement(delta_y: torch.Tensor) -> float:
    """The length of the mean of the members' unit directions from the reference's centroid
    to the group's (``delta_y (M, d)``, aligned): 1 when every member places the group on
    the same side of its reference, near 0 when they scatter around it. NaN for one member.
    Below about 0.8 (a circular spread of 38 degrees) the direction the scores project on
    depends on the seed, and so does the ranking."""
    if delta_y.shape[0] < 2:
        return float("nan")
    unit = delta_y / delta_y.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float(unit.mean(0).norm())


def rank_order(values: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Gene order of a ranking: genes not lower in the group first, each part by
    decreasing score (``values`` may be ``(M, genes)``: one order per row)."""
    if values.ndim == 1:
        return np.lexsort((-values, lower))
    return np.stack([np.lexsort((-v, lower)) for v in values])


def jaccard(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b)


def member_agreement(orders: np.ndarray, n_top: int) -> tuple[float, np.ndarray]:
    """How much the models of an ensemble agree on a group's ranking.

    ``orders`` ``(M, genes)``: each model's gene order. Returns the mean pairwise Jaccard
    index of the models' top-``n_top`` sets and, per gene, the standard deviation over
    models of its rank (0-based). With one model both are NaN.
    """
    n_models, n_genes = orders.shape
    if n_models < 2:
        return float("nan"), np.full(n_genes, np.nan)
    ranks = np.empty_like(orders)
    ranks[np.arange(n_models)[:, None], orders] = np.arange(n_genes)
    pairs = [jaccard(orders[i, :n_top], orders[j, :n_top]) for i in range(n_models) for j in range(i + 1, n_models)]
    return float(np.mean(pairs)), ranks.std(0, ddof=1)


def member_halvings(n_members: int, n_splits: int = 50) -> np.ndarray:
    """``(2 n_splits, n_members // 2)``: rows 2s and 2s + 1 are the members of two disjoint
    halves of split s, from a fixed stream (the interactive page repeats the estimate on
    the same halvings)."""
    k = n_members // 2
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n_members) for _ in range(n_splits)]
    return np.stack([half for p in perms for half in (p[:k], p[k : 2 * k])])


@dataclass
class SeedAgreement:
    """What a fit from another ``random_state`` is expected to keep of a group's ranking."""

    stability: float  # expected Jaccard index of the two fits' top-n genes
    top_frequency: np.ndarray  # (genes,) probability that each gene is in the other fit's top n


def seed_agreement(means: MemberMeans, score: str, lower: np.ndarray, n_top: int, *, n_splits: int = 50) -> SeedAgreement:
    """Expected top-``n_top`` agreement (Jaccard) of the consensus ranking with the one a fit
    from another ``random_state`` would give, from the members alone, and how often each
    gene would be in that fit's top ``n_top``. NaN for one member.

    Two disjoint halves of k = M // 2 members give two independent k-member consensus
    scores a and b. An M-member ensemble's seed noise is sqrt(k / M) times a k-member one's,
    so the rankings of c + h and c - h, with c = (a + b) / 2 and h = sqrt(k / M) (a - b) / 2,
    differ as two M-member fits do; their agreement is averaged over ``n_splits`` random
    halvings (a fixed stream: the estimate is reproducible), and each gene's frequency in
    the top ``n_top`` is counted over those 2 ``n_splits`` simulated fits. On simulated
    ensembles of independent members the agreement is within 0.03 of the true agreement
    from 0.2 to 0.85, where the bootstrap over members read up to 0.15 high
    (tests/test_trust.py). It sees only the randomness that differs between members: not a
    kNN graph that changes with the seed (NNDescent above the exact-kNN size), nor the
    cells' partition into blocks.
    """
    n = means.n_members
    n_genes = means.delta_c.shape[-1]
    if n < 2:
        return SeedAgreement(float("nan"), np.full(n_genes, np.nan))
    halves = member_halvings(n, n_splits)
    k = halves.shape[1]
    weights = torch.zeros(len(halves), n, dtype=means.delta_y.dtype, device=means.delta_y.device)
    weights.scatter_(1, torch.as_tensor(halves, device=weights.device), 1.0 / k)
    shrink = (k / n) ** 0.5
    s = means.scores(score, weights).cpu().numpy()
    a, b = s[0::2], s[1::2]
    c, h = (a + b) / 2, shrink * (a - b) / 2
    plus, minus = rank_order(c + h, lower)[:, :n_top], rank_order(c - h, lower)[:, :n_top]
    stability = float(np.mean([jaccard(x, y) for x, y in zip(plus, minus)]))
    frequency = np.bincount(np.concatenate([plus.ravel(), minus.ravel()]), minlength=n_genes) / (2 * n_splits)
    return SeedAgreement(stability, frequency)
