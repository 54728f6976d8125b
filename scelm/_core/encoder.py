"""Bias-free MLP encoder with piecewise-linear activations.

With no biases and activations phi(u) = u for u > 0, s * u otherwise, the encoder is
positively homogeneous, f(a z) = a f(z) for a > 0, hence f(z) = J(z) z exactly (Euler).
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


def set_slopes(module: nn.Module, slopes: torch.Tensor) -> None:
    """Negative-side slopes: learned for PReLU, a fixed buffer otherwise."""
    if module.activation == "prelu":
        module.slopes = nn.Parameter(slopes)
    else:
        module.register_buffer("slopes", slopes)


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
        activation: Activation = "relu",
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
        set_slopes(self, torch.full((len(hidden),), slope0))

    @property
    def n_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def hidden(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, w in enumerate(self.weights[:-1]):
            h = activate(h @ w.T, self.activation, self.slopes[i])
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


class StackedEncoder(nn.Module):
    """Encoders of one shape evaluated as one batched network: ``z (b, n_in) -> (M, b, d)``.

    An ensemble is trained through this, so each optimizer step, loss evaluation and Python
    loop iteration is paid once for all M members (one batched matmul per layer).
    :meth:`unstack` gives the members back as independent :class:`ELMEncoder`.
    """

    def __init__(self, members: Sequence[ELMEncoder]):
        super().__init__()
        first = members[0]
        if any(m.activation != first.activation or [w.shape for w in m.weights] != [w.shape for w in first.weights] for m in members):
            raise ValueError("StackedEncoder members must share activation and layer shapes.")
        self.activation = first.activation
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m.weights[i].detach() for m in members])) for i in range(len(first.weights))
        )
        set_slopes(self, torch.stack([m.slopes.detach() for m in members]))  # (M, n_hidden)

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.unsqueeze(0)  # (1, b, n_in), broadcast over members
        for i, w in enumerate(self.weights[:-1]):
            h = activate(h @ w.transpose(1, 2), self.activation, self.slopes[:, i, None, None])
        return h @ self.weights[-1].transpose(1, 2)

    def unstack(self) -> list[ELMEncoder]:
        """Each member as its own encoder (weights copied)."""
        out = []
        for m in range(self.n_members):
            state = {f"W{i}": w[m].detach().cpu().numpy() for i, w in enumerate(self.weights)}
            state["slopes"] = self.slopes[m].detach().cpu().numpy()
            out.append(ELMEncoder.from_numpy(state, self.activation))
        return out
