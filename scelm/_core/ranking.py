"""Per-group moments of contributions, streamed, and the ELM ranking scores from them.

Per cell i and gene k, the contribution vector c_ik (length d, or M*d stacked over the M
models of an ensemble) is reduced per cell group into

    n[c], S1[c] = sum c_i, S2[c] = sum c_i c_i^T, SJ[c] = sum J_i, SY[c] = sum y_i

so the memory is O(groups x (M d)^2 x genes), never cells x d x genes. Every direction u
can be applied after the pass: the mean of (c_i . u) is S1 . u / n and its second moment
u^T S2 u / n, which is what the per-cell t-test needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class GroupMoments:
    """Accumulates the sums above for ``n_groups`` cell groups on ``device`` (float64)."""

    FIELDS = ("n", "s1", "s2", "sj", "sy")

    def __init__(self, n_groups: int, dim: int, n_genes: int, *, device: torch.device):
        f64 = dict(dtype=torch.float64, device=device)
        self.n = torch.zeros(n_groups, **f64)
        self.s1 = torch.zeros(n_groups, dim, n_genes, **f64)
        self.s2 = torch.zeros(n_groups, dim, dim, n_genes, **f64)
        self.sj = torch.zeros(n_groups, dim, n_genes, **f64)
        self.sy = torch.zeros(n_groups, dim, **f64)

    def update(self, onehot: torch.Tensor, contrib: torch.Tensor, jac: torch.Tensor, y: torch.Tensor) -> None:
        """``onehot (b, G)``; ``contrib, jac (b, dim, genes)``; ``y (b, dim)``."""
        oh = onehot.to(torch.float64)
        c = contrib.to(torch.float64)
        self.n += oh.sum(0)
        self.s1 += torch.einsum("bg,bik->gik", oh, c)
        self.sj += torch.einsum("bg,bik->gik", oh, jac.to(torch.float64))
        self.sy += oh.T @ y.to(torch.float64)
        dim = c.shape[1]
        for i in range(dim):
            for j in range(i, dim):
                block = oh.T @ (c[:, i, :] * c[:, j, :])
                self.s2[:, i, j] += block
                if i != j:
                    self.s2[:, j, i] += block

    def to_flat(self) -> np.ndarray:
        """Every sum in one float64 vector (what a Dask task returns)."""
        return np.concatenate([getattr(self, k).cpu().numpy().ravel() for k in self.FIELDS])

    @classmethod
    def from_flat(cls, flat: np.ndarray, n_groups: int, dim: int, n_genes: int, *, device: torch.device) -> GroupMoments:
        """Inverse of :meth:`to_flat`."""
        acc = cls(n_groups, dim, n_genes, device=device)
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
class GroupScores:
    """Scores of every gene for one group against its reference, averaged over models."""

    separation: np.ndarray
    position: np.ndarray
    magnitude: np.ndarray
    weight: np.ndarray
    spread: dict[str, np.ndarray]  # standard error over models of each score (zeros for M=1)
    per_model: dict[str, np.ndarray]  # each score of each model, (M, genes)
    t: np.ndarray  # Welch t of the per-cell projected contribution, group vs reference
    dof: np.ndarray
    distance: float  # mean over models of |centroid_g - centroid_ref|


def group_scores(g: dict, r: dict, n_models: int, d: int) -> GroupScores:
    """Scores of group sums ``g`` against reference sums ``r`` (from :meth:`GroupMoments.pooled`).

    With u_m the unit vector from the reference centroid to the group centroid in model m:
    separation = (mean c_g - mean c_ref) . u_m sums over genes to the centroid distance;
    position = mean c_g . u_m sums to the group centroid's coordinate along u_m; magnitude
    = |mean c_g| (unsigned); weight = mean J_g . u_m (the Jacobian alone, no expression).
    """
    ng, nr = g["n"], r["n"]
    mu_g = (g["sy"] / ng).reshape(n_models, d)
    mu_r = (r["sy"] / nr).reshape(n_models, d)
    delta = mu_g - mu_r
    dist = delta.norm(dim=1)
    u = delta / dist.clamp_min(1e-30).unsqueeze(1)  # (M, d)
    mc_g = (g["s1"] / ng).reshape(n_models, d, -1)
    mc_r = (r["s1"] / nr).reshape(n_models, d, -1)
    mj_g = (g["sj"] / ng).reshape(n_models, d, -1)
    per_model = {
        "separation": torch.einsum("mdk,md->mk", mc_g - mc_r, u),
        "position": torch.einsum("mdk,md->mk", mc_g, u),
        "magnitude": mc_g.norm(dim=1),
        "weight": torch.einsum("mdk,md->mk", mj_g, u),
    }
    mean = {k: v.mean(0).cpu().numpy() for k, v in per_model.items()}
    spread = {
        k: (v.std(0, unbiased=True) / np.sqrt(n_models)).cpu().numpy() if n_models > 1 else np.zeros(v.shape[1])
        for k, v in per_model.items()
    }
    # Per-cell score s_i = mean_m c_i^m . u_m = c_i . w with w the stacked u_m / M.
    w = (u / n_models).reshape(-1)

    def moments(s: dict, n: torch.Tensor):
        m1 = torch.einsum("ik,i->k", s["s1"], w) / n
        m2 = torch.einsum("ijk,i,j->k", s["s2"], w, w) / n
        var = (m2 - m1**2).clamp_min(0) * n / (n - 1).clamp_min(1)
        return m1, var

    m_g, v_g = moments(g, ng)
    m_r, v_r = moments(r, nr)
    se2_g, se2_r = v_g / ng, v_r / nr
    se = (se2_g + se2_r).sqrt()
    t = torch.where(se > 0, (m_g - m_r) / se.clamp_min(1e-300), torch.zeros_like(se))
    dof_den = se2_g**2 / (ng - 1).clamp_min(1) + se2_r**2 / (nr - 1).clamp_min(1)
    dof = torch.where(dof_den > 0, (se2_g + se2_r) ** 2 / dof_den.clamp_min(1e-300), torch.ones_like(se))
    return GroupScores(
        separation=mean["separation"], position=mean["position"], magnitude=mean["magnitude"],
        weight=mean["weight"], spread=spread, per_model={k: v.cpu().numpy() for k, v in per_model.items()},
        t=t.cpu().numpy(), dof=dof.cpu().numpy(),
        distance=float(dist.mean()),
    )


def rank_order(values: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Gene order of a ranking: genes not lower in the group first, each part by
    decreasing score (``values`` may be ``(M, genes)``: one order per row)."""
    if values.ndim == 1:
        return np.lexsort((-values, lower))
    return np.stack([np.lexsort((-v, lower)) for v in values])


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
    tops = [set(o[:n_top].tolist()) for o in orders]
    pairs = [len(a & b) / len(a | b) for i, a in enumerate(tops) for b in tops[i + 1 :]]
    return float(np.mean(pairs)), ranks.std(0, ddof=1)


def split_half_agreement(values: np.ndarray, lower: np.ndarray, n_top: int, *, max_splits: int = 20) -> float:
    """How reproducible the ensemble's averaged ranking is: the members (rows of ``values``,
    ``(M, genes)``) are split into two disjoint halves, each half's scores averaged and
    ranked, and the halves' top-``n_top`` sets compared (Jaccard), averaged over splits (all
    of them, or ``max_splits`` drawn with a fixed seed). Each half is a smaller, independent
    ensemble, so this estimates what another seed would give, slightly pessimistically.
    NaN for fewer than 2 models."""
    from itertools import combinations

    n_models = values.shape[0]
    if n_models < 2:
        return float("nan")
    splits = list(combinations(range(n_models), n_models // 2))
    if len(splits) > max_splits:
        pick = np.random.default_rng(0).choice(len(splits), max_splits, replace=False)
        splits = [splits[i] for i in pick]
    scores = []
    for half in splits:
        inside = np.zeros(n_models, dtype=bool)
        inside[list(half)] = True
        a = set(rank_order(values[inside].mean(0), lower)[:n_top].tolist())
        b = set(rank_order(values[~inside].mean(0), lower)[:n_top].tolist())
        scores.append(len(a & b) / len(a | b))
    return float(np.mean(scores))
