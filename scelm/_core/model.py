"""The fitted model as one object: the function the map shows.

Front end, ensemble members and each member's alignment onto the common frame; the
consensus ``f̄(x) = (1/M) sum_m R_m f_m((x - x_ref) W)`` is the embedding and what every
explanation is exact for. Held as numpy arrays (what ``adata.uns`` stores); the torch
module is built on demand, so importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frontend import LinearFrontEnd


@dataclass
class ELMModel:
    front_end: LinearFrontEnd
    member_states: list[dict[str, np.ndarray]]  # weights and slopes of each member, float32
    alignment: np.ndarray  # (M, d, d) orthogonal; member m's map in the common frame is R_m f_m
    activation: str
    member_r2: np.ndarray | None = None  # (M,) each aligned member's fit to the consensus, where measured

    def __post_init__(self):
        if not self.member_states:
            raise ValueError("A model needs at least one encoder.")
        self.alignment = np.asarray(self.alignment, dtype=np.float32)
        d = self.n_components
        if self.alignment.shape != (self.n_members, d, d):
            raise ValueError(f"alignment must have shape ({self.n_members}, {d}, {d}), got {self.alignment.shape}.")

    @property
    def n_members(self) -> int:
        return len(self.member_states)

    @property
    def n_components(self) -> int:
        last = sum(1 for k in self.member_states[0] if k.startswith("W")) - 1
        return int(np.shape(self.member_states[0][f"W{last}"])[0])

    @classmethod
    def from_members(cls, front_end: LinearFrontEnd, members, *, align_on: np.ndarray | None) -> ELMModel:
        """The model of trained members (a :class:`~scelm._core.encoder.StackedEncoder`),
        aligned by Procrustes on their maps of the encoder inputs ``align_on`` (``(n, n_in)``),
        or left in their own frames (identity) when ``align_on`` is None, e.g. when they
        were all fitted to one target map."""
        import torch

        from .alignment import member_r2, procrustes_alignment

        d, n_members = members.n_out, members.n_members
        if align_on is None or n_members == 1:
            return cls(front_end, members.member_states(), np.broadcast_to(np.eye(d), (n_members, d, d)), members.activation)
        device = members.weights[0].device
        with torch.no_grad():
            blocks = [torch.as_tensor(align_on[i : i + 8192], device=device) for i in range(0, len(align_on), 8192)]
            maps = torch.cat([members(block) for block in blocks], 1).cpu().numpy()
        alignment = procrustes_alignment(maps)
        return cls(front_end, members.member_states(), alignment, members.activation, member_r2(maps, alignment))

    def encoder(self):
        """The consensus as a torch module (:class:`~scelm._core.encoder.ConsensusEncoder`)."""
        import torch

        from .encoder import ConsensusEncoder, StackedEncoder

        return ConsensusEncoder(StackedEncoder.from_states(self.member_states, self.activation), torch.as_tensor(self.alignment))
