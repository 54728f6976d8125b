"""Bias-free MLP encoder with piecewise-linear activations.

With no biases and activations phi(u) = u for u > 0, s * u otherwise, the encoder is
positively homogeneous, f(a z) = a f(z) for a > 0, hence f(z) = J(z) z exactly (Euler).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("relu", "leaky_relu", "prelu")


class ELMEncoder(nn.Module):
    """``z -> W_L phi(W_{L-1} ... phi(W_1 z))``, no biases, no normalisation.

    Parameters
    ----------
    n_in
        Input dimension.
    hidden
        Widths of the hidden layers.
    n_out
        Embedding dimension.
    activation
        ``'relu'``, ``'leaky_relu'`` (fixed ``negative_slope``) or ``'prelu'`` (one learned
        slope per hidden layer, initialised at ``negative_slope``).
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        *,
        activation: str = "relu",
        negative_slope: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        self.activation = activation
        dims = [n_in, *hidden, n_out]
        self.weights = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            # He initialisation before an activation, unit gain for the output layer.
            gain = 2.0 if i < len(hidden) else 1.0
            w = torch.randn(d_out, d_in, generator=generator) * (gain / d_in) ** 0.5
            self.weights.append(nn.Parameter(w))
        slope0 = 0.0 if activation == "relu" else float(negative_slope)
        slopes = torch.full((len(hidden),), slope0)
        if activation == "prelu":
            self.slopes = nn.Parameter(slopes)
        else:
            self.register_buffer("slopes", slopes)

    @property
    def n_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def hidden(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    def _act(self, u: torch.Tensor, layer: int) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(u)
        return torch.where(u > 0, u, self.slopes[layer] * u)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, w in enumerate(self.weights[:-1]):
            h = self._act(h @ w.T, i)
        return h @ self.weights[-1].T

    @torch.no_grad()
    def forward_with_jacobian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding ``(b, d)`` and exact Jacobian ``(b, d, n_in)`` of a batch.

        Closed form ``J = W_L D_{L-1} W_{L-1} ... D_1 W_1`` where ``D_l`` is the diagonal of
        activation slopes at the cell's pre-activations: d rows propagated at once, which is
        the same work as d backward passes, with no per-cell loop.
        """
        h = z
        gates = []
        for i, w in enumerate(self.weights[:-1]):
            u = h @ w.T
            slope = torch.where(u > 0, torch.ones_like(u), self.slopes[i].expand_as(u))
            gates.append(slope)
            h = slope * u
        y = h @ self.weights[-1].T
        # rows[b, k, :] = d y_k / d h_l, walked from the output down to the input.
        rows = self.weights[-1].unsqueeze(0).expand(z.shape[0], -1, -1)
        for i in range(len(gates) - 1, -1, -1):
            rows = (rows * gates[i].unsqueeze(1)) @ self.weights[i]
        return y, rows

    def state_to_numpy(self) -> dict[str, np.ndarray]:
        """Weights and slopes as float32 arrays (for ``adata.uns``)."""
        state = {f"W{i}": w.detach().cpu().numpy().astype(np.float32) for i, w in enumerate(self.weights)}
        state["slopes"] = self.slopes.detach().cpu().numpy().astype(np.float32)
        return state

    @classmethod
    def from_numpy(cls, state: dict[str, np.ndarray], activation: str) -> ELMEncoder:
        """Rebuild an encoder from :meth:`state_to_numpy` output."""
        n_layers = sum(1 for k in state if k.startswith("W"))
        ws = [np.asarray(state[f"W{i}"], dtype=np.float32) for i in range(n_layers)]
        enc = cls(ws[0].shape[1], [w.shape[0] for w in ws[:-1]], ws[-1].shape[0], activation=activation)
        with torch.no_grad():
            for p, w in zip(enc.weights, ws):
                if p.shape != w.shape:
                    raise ValueError(f"Encoder weight shapes do not chain: {[w.shape for w in ws]}.")
                p.copy_(torch.from_numpy(w))
            enc.slopes.copy_(torch.as_tensor(np.asarray(state["slopes"], dtype=np.float32)))
        return enc
