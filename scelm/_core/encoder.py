"""Bias-free MLP encoders with piecewise-linear activations, and their consensus.

With no biases and activations phi(u) = u for u > 0, s * u otherwise, an encoder is
positively homogeneous, f(a z) = a f(z) for a > 0, hence f(z) = J(z) z exactly (Euler).
So is the consensus of an ensemble, f̄(z) = (1/M) sum_m R_m f_m(z) with fixed d x d matrices
R_m: a sum of homogeneous maps, each composed with a linear one. Its Jacobian is
(1/M) sum_m R_m J_m(z) and f̄(z) = J̄(z) z holds exactly as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .options import ACTIVATIONS, Activation


def activate(u: torch.Tensor, activation: str, slope: torch.Tensor) -> torch.Tensor:
    """phi(u) = u for u > 0, ``slope * u`` otherwise (``slope`` broadcasts against ``u``)."""
    if activation == "relu":
        return torch.relu(u)
    return torch.where(u > 0, u, slope * u)


class StackedEncoder(nn.Module):
    """M encoders ``z -> W_L phi(W_{L-1} ... phi(W_1 z))`` of one shape (no biases, no
    normalisation), evaluated as one batched network: ``z (b, n_in) -> (M, b, d)``.

    An ensemble is trained through this, so each optimizer step, loss evaluation and Python
    loop iteration is paid once for all members (one batched matmul per layer).

    Parameters
    ----------
    weights
        One ``(M, d_out, d_in)`` tensor per layer, input layer first.
    slopes
        ``(M, n_hidden)`` negative-side slopes (learned for ``'prelu'``, fixed otherwise).
    activation
        ``'relu'``, ``'leaky_relu'`` or ``'prelu'``.
    """

    def __init__(self, weights: Sequence[torch.Tensor], slopes: torch.Tensor, activation: Activation = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        for i, (w_in, w_out) in enumerate(zip(weights[:-1], weights[1:])):
            if w_in.dim() != 3 or w_out.shape[0] != w_in.shape[0] or w_out.shape[2] != w_in.shape[1]:
                raise ValueError(f"Encoder weights {i} and {i + 1} do not chain: {[tuple(w.shape) for w in weights]}.")
        if tuple(slopes.shape) != (weights[0].shape[0], len(weights) - 1):
            raise ValueError(f"slopes must have shape (members, hidden layers), got {tuple(slopes.shape)}.")
        self.activation = activation
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)
        if activation == "prelu":
            self.slopes = nn.Parameter(slopes)
        else:
            self.register_buffer("slopes", slopes)

    @classmethod
    def random(
        cls, n_in: int, hidden: Sequence[int], n_out: int, *, seeds: Sequence[int], activation: Activation = "relu",
        negative_slope: float = 0.01,
    ) -> StackedEncoder:
        """One member per seed, each with He-initialised weights drawn from its own stream."""
        dims = [n_in, *hidden, n_out]
        layers: list[list[torch.Tensor]] = [[] for _ in dims[1:]]
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
                gain = 2.0 if i < len(hidden) else 1.0  # He before an activation, unit gain at the output
                layers[i].append(torch.randn(d_out, d_in, generator=gen) * (gain / d_in) ** 0.5)
        slope0 = 0.0 if activation == "relu" else float(negative_slope)
        return cls([torch.stack(w) for w in layers], torch.full((len(seeds), len(hidden)), slope0), activation)

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    @property
    def n_in(self) -> int:
        return self.weights[0].shape[2]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.unsqueeze(0) if z.dim() == 2 else z  # (1, b, n_in) broadcast over members, or (M, b, n_in)
        for i, w in enumerate(self.weights[:-1]):
            h = activate(h @ w.transpose(1, 2), self.activation, self.slopes[:, i, None, None])
        return h @ self.weights[-1].transpose(1, 2)

    @torch.no_grad()
    def forward_with_jacobian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(M, b, d)`` and exact Jacobians ``(M, b, d, n_in)`` of a batch.

        Closed form ``J = W_L D_{L-1} W_{L-1} ... D_1 W_1`` where ``D_l`` is the diagonal of
        activation slopes at the cell's pre-activations: d rows propagated at once, which is
        the same work as d backward passes, with no per-cell loop.
        """
        h = z.unsqueeze(0)
        gates = []
        for i, w in enumerate(self.weights[:-1]):
            u = h @ w.transpose(1, 2)
            gate = torch.where(u > 0, torch.ones_like(u), self.slopes[:, i, None, None].expand_as(u))
            gates.append(gate)
            h = gate * u
        y = h @ self.weights[-1].transpose(1, 2)
        # rows[m, b, k, :] = d y_k / d h_l for member m, walked from the output to the input.
        rows = self.weights[-1].unsqueeze(1).expand(-1, z.shape[0], -1, -1)
        for i in range(len(gates) - 1, -1, -1):
            rows = (rows * gates[i].unsqueeze(2)) @ self.weights[i].unsqueeze(1)
        return y, rows

    def member_states(self) -> list[dict[str, np.ndarray]]:
        """Each member's weights and slopes as float32 arrays (for ``adata.uns``)."""
        return [
            {**{f"W{i}": w[m].detach().cpu().numpy().astype(np.float32) for i, w in enumerate(self.weights)},
             "slopes": self.slopes[m].detach().cpu().numpy().astype(np.float32)}
            for m in range(self.n_members)
        ]

    @classmethod
    def from_states(cls, states: Sequence[dict[str, np.ndarray]], activation: Activation) -> StackedEncoder:
        """Inverse of :meth:`member_states` (no random numbers are drawn)."""
        shapes = [{k: np.shape(v) for k, v in s.items() if k.startswith("W")} for s in states]
        n_layers = len(shapes[0])
        if any(s != shapes[0] for s in shapes):
            raise ValueError("The members of an ensemble must share their layer shapes.")
        weights = [torch.as_tensor(np.stack([np.asarray(s[f"W{i}"], dtype=np.float32) for s in states])) for i in range(n_layers)]
        slopes = torch.as_tensor(np.stack([np.asarray(s["slopes"], dtype=np.float32).reshape(n_layers - 1) for s in states]))
        return cls(weights, slopes, activation)


class ConsensusEncoder(nn.Module):
    """The consensus of an ensemble, ``f̄(z) = (1/M) sum_m R_m f_m(z)``: the map scelm shows.

    ``alignment`` ``(M, d, d)`` holds the fixed ``R_m`` that bring each member into a common
    frame (see :mod:`scelm._core.alignment`); ``None`` means the identity. Every member
    method returns *aligned* members, whose mean is the consensus.
    """

    def __init__(self, members: StackedEncoder, alignment: torch.Tensor | None = None):
        super().__init__()
        d = members.n_out
        if alignment is None:
            alignment = torch.eye(d).expand(members.n_members, d, d).clone()
        if tuple(alignment.shape) != (members.n_members, d, d):
            raise ValueError(f"alignment must have shape ({members.n_members}, {d}, {d}), got {tuple(alignment.shape)}.")
        self.members = members
        self.register_buffer("alignment", alignment.to(members.weights[0].dtype))

    @property
    def n_members(self) -> int:
        return self.members.n_members

    @property
    def n_in(self) -> int:
        return self.members.n_in

    @property
    def n_out(self) -> int:
        return self.members.n_out

    def aligned(self, z: torch.Tensor) -> torch.Tensor:
        """Each member's map in the common frame, ``(M, b, d)``."""
        return torch.einsum("mkd,mbd->mbk", self.alignment, self.members(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.aligned(z).mean(0)

    @torch.no_grad()
    def aligned_with_jacobian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned members' embeddings ``(M, b, d)`` and exact Jacobians ``(M, b, d, n_in)``."""
        y, jac = self.members.forward_with_jacobian(z)
        return torch.einsum("mkd,mbd->mbk", self.alignment, y), torch.einsum("mkd,mbdi->mbki", self.alignment, jac)

    @torch.no_grad()
    def forward_with_jacobian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Consensus embedding ``(b, d)`` and its exact Jacobian ``(b, d, n_in)``."""
        y, jac = self.aligned_with_jacobian(z)
        return y.mean(0), jac.mean(0)
