"""What an interactive page holds, computed from the model: no plotting library here.

Hovering a cell shows its top genes per axis: computed once per cell (indices and signed
float32 values), so the page never holds every gene of every cell. Selecting cells ranks
genes by the ``separation`` score of :func:`scelm.tl.rank_genes_elm` for that ad-hoc group
against the rest, which needs every cell's contributions to the map (the consensus's, with
an ensemble) and its expression (genes lower in the selection than in the rest are ranked
after the others, as there): the page holds them for the ``K`` genes whose contributions
vary most over cells (a gene whose contribution is the same in every cell separates
nothing), with ``K`` as large as ``budget_bytes`` allows; all genes on data of ordinary size.

With an ensemble, the page also says which of a selection's top genes are settled, as
:func:`scelm.tl.rank_genes_elm`'s ``top_frequency`` does for a group: it repeats
:func:`scelm._core.ranking.seed_agreement` on the members' own maps. For that it holds every
member's embedding and, for the ``T`` candidates that vary most (``T`` as large as
``confidence_bytes`` allows), each member's deviation from the consensus's contribution,
stored as int16 with one scale per gene (an error below 2e-5 of the gene's largest
deviation; the members' deviations sum to zero, as the consensus is their mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._core.jacobian import iter_batches, iter_member_batches
from .._model import StoredModel


@dataclass
class PageData:
    genes: np.ndarray  # (G,) the model's genes
    embedding: np.ndarray  # (n, d) float32, the map
    top_genes: np.ndarray  # (n, d, k) gene indices, by |contribution| per axis
    top_values: np.ndarray  # (n, d, k) float32 signed contributions of those genes
    candidates: np.ndarray  # (K,) gene indices the selection panel ranks
    contributions: np.ndarray  # (n, d, K) float32 contributions of the candidates
    expression: np.ndarray  # (n, K) float32 the candidates' expression, as the model reads it
    members: MemberDeviations | None = None  # with an ensemble and a confidence budget

    @property
    def all_genes_ranked(self) -> bool:
        return len(self.candidates) == len(self.genes)


@dataclass
class MemberDeviations:
    """Each aligned member's map and its contributions' deviation from the consensus's, for
    the ``T`` assessed candidates: member m's contribution is ``consensus + deviation * scale``."""

    embedding: np.ndarray  # (n, M, d) float32, each aligned member's map
    assessed: np.ndarray  # (T,) positions in PageData.candidates
    deviation: np.ndarray  # (n, M, d, T) int16
    scale: np.ndarray  # (T,) float32 per gene: the largest |deviation| / 32767

    @property
    def n_members(self) -> int:
        return self.embedding.shape[1]


def candidate_count(n_obs: int, d: int, n_genes: int, budget_bytes: float) -> int:
    """How many genes' contributions (every cell and axis) and expression, float32, fit
    ``budget_bytes``."""
    return int(min(n_genes, max(1, budget_bytes // (n_obs * (d + 1) * 4))))


def assessed_count(n_obs: int, n_members: int, d: int, n_candidates: int, budget_bytes: float) -> int:
    """How many genes' member deviations (int16, every cell, member and axis) fit ``budget_bytes``."""
    return int(min(n_candidates, budget_bytes // (n_obs * n_members * d * 2)))


def page_data(
    model: StoredModel, X, *, n_top: int, budget_bytes: float, device: torch.device, batch_size: int,
    confidence_bytes: float = 0.0,
) -> PageData:
    """Two passes over the cells: the tops and each gene's variance of contribution, then
    the chosen candidate genes' contributions and expression; with an ensemble and
    ``confidence_bytes``, a third for the members' deviations."""
    n, d, n_genes = X.shape[0], model.n_components, len(model.genes)
    k = min(n_top, n_genes)
    top_genes = np.empty((n, d, k), dtype=np.int32)
    top_values = np.empty((n, d, k), dtype=np.float32)
    embedding = np.empty((n, d), dtype=np.float32)
    s1 = torch.zeros(d, n_genes, dtype=torch.float64, device=device)
    s2 = torch.zeros(d, n_genes, dtype=torch.float64, device=device)
    for b in iter_batches(model.model, X, device=device, batch_size=batch_size):
        c = b.contributions()
        idx = c.abs().topk(k, dim=-1).indices
        top_genes[b.start : b.stop] = idx.cpu().numpy()
        top_values[b.start : b.stop] = c.gather(-1, idx).cpu().numpy()
        embedding[b.start : b.stop] = b.embedding.cpu().numpy()
        s1 += c.sum(0, dtype=torch.float64)
        s2 += c.to(torch.float64).pow(2).sum(0)
    variance = ((s2 - s1**2 / n) / max(n - 1, 1)).sum(0).cpu().numpy()  # summed over axes
    n_cand = candidate_count(n, d, n_genes, budget_bytes)
    candidates = np.sort(np.argsort(-variance, kind="stable")[:n_cand])
    cand = torch.as_tensor(candidates, device=device)
    contributions = np.empty((n, d, n_cand), dtype=np.float32)
    expression = np.empty((n, n_cand), dtype=np.float32)
    reference = torch.as_tensor(model.model.front_end.reference, dtype=torch.float32, device=device)[cand]
    for b in iter_batches(model.model, X, device=device, batch_size=batch_size):
        contributions[b.start : b.stop] = b.contributions().index_select(-1, cand).cpu().numpy()
        # (x - x_ref) + x_ref: the cell's expression
        expression[b.start : b.stop] = (b.centred.index_select(-1, cand) + reference).cpu().numpy()
    genes = np.asarray(model.genes).astype(str)
    members = None
    n_members = model.model.n_members
    if n_members > 1 and (n_assessed := assessed_count(n, n_members, d, n_cand, confidence_bytes)) > 0:
        # the candidates that vary most, in the candidates' order
        assessed = np.sort(np.argsort(-variance[candidates], kind="stable")[:n_assessed])
        members = member_deviations(model, X, candidates, assessed, contributions[:, :, assessed], device=device, batch_size=batch_size)
    return PageData(genes, embedding, top_genes, top_values, candidates, contributions, expression, members)


def member_deviations(
    model: StoredModel, X, candidates: np.ndarray, assessed: np.ndarray, consensus: np.ndarray, *,
    device: torch.device, batch_size: int,
) -> MemberDeviations:
    """Every aligned member's map and, for the genes ``candidates[assessed]``, its
    contributions less the ``consensus``'s ``(n, d, T)``, quantised to int16 per gene."""
    genes = candidates[assessed]
    n, d, t = consensus.shape
    n_members = model.model.n_members
    W = torch.as_tensor(model.model.front_end.loadings[genes], device=device)  # (T, n_in)
    idx = torch.as_tensor(genes, device=device)
    embedding = np.empty((n, n_members, d), dtype=np.float32)
    deviation = np.empty((n, n_members, d, t), dtype=np.float32)
    for b in iter_member_batches(model.model, X, device=device, batch_size=batch_size):
        # member m's gene-space Jacobian on these genes is J_z W^T; times x - x_ref
        c = torch.einsum("bmdp,tp->bmdt", b.jacobian_z, W) * b.centred.index_select(1, idx)[:, None, None, :]
        embedding[b.start : b.stop] = b.embedding.cpu().numpy()
        mean = torch.as_tensor(consensus[b.start : b.stop], device=device)  # the members' mean
        deviation[b.start : b.stop] = (c - mean[:, None]).cpu().numpy()
    peak = np.abs(deviation).max(axis=(0, 1, 2))
    scale = np.where(peak > 0, peak / 32767, 1.0).astype(np.float32)
    return MemberDeviations(embedding, assessed, np.rint(deviation / scale).astype(np.int16), scale)
