"""Full-batch training of the encoder on UMAP's cross-entropy.

Each step encodes every cell once, evaluates the loss and its closed-form gradient on the
embedding over all graph edges (weighted, so no repeated edge list is built) plus
``negative_sample_rate`` uniform negatives per cell, backpropagates that gradient through
the encoder once and takes one Adam step. Everything stays on ``device``; the host reads
the loss only when the progress bar is refreshed. With ``bfloat16`` the encoder's forward
and backward run under autocast (for GPUs); the weights stay float32, so the Jacobians
computed afterwards are exact in float32 either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .encoder import ELMEncoder
from .graph import EdgeList
from .loss import umap_loss_and_gradient

PROGRESS_EVERY = 25


@dataclass
class TrainConfig:
    n_epochs: int
    learning_rate: float
    negative_sample_rate: int
    repulsion_strength: float
    a: float
    b: float
    bfloat16: bool = False  # autocast the encoder's matmuls; distances and loss stay float32


def train_encoder(
    encoder: ELMEncoder,
    z: np.ndarray,
    edges: EdgeList,
    config: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    progress: bool,
) -> np.ndarray:
    """Fit ``encoder`` in place; returns the loss of every epoch (float32)."""
    from tqdm import tqdm

    encoder.to(device).train()
    zt = torch.as_tensor(z, dtype=torch.float32, device=device)
    head = torch.as_tensor(edges.head, device=device)
    tail = torch.as_tensor(edges.tail, device=device)
    weight = torch.as_tensor(edges.weight, device=device)
    n = edges.n_nodes
    degree = torch.zeros(n, device=device).index_add_(0, head, weight).index_add_(0, tail, weight)
    m = config.negative_sample_rate
    neg_head = torch.arange(n, device=device).repeat_interleave(m)
    neg_weight = degree.repeat_interleave(m) * 0.5  # undirected edges: half the repulsion weight
    gen = torch.Generator(device=device).manual_seed(seed)

    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.learning_rate)
    # Linear decay to zero, as umap-learn anneals its SGD step.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 - e / config.n_epochs)
    history = torch.zeros(config.n_epochs, device=device)
    bar = tqdm(range(config.n_epochs), desc="parametric UMAP", unit="epoch", disable=not progress, mininterval=1.0)
    for epoch in bar:
        neg_tail = torch.randint(0, n, (n * m,), device=device, generator=gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bfloat16):
            y = encoder(zt)
        y_loss = y.float()  # UMAP's distances, kernel and loss in float32
        loss, grad_y = umap_loss_and_gradient(
            y_loss, head, tail, weight, neg_head, neg_tail, neg_weight,
            a=config.a, b=config.b, repulsion_strength=config.repulsion_strength,
        )
        optimizer.zero_grad(set_to_none=True)
        y_loss.backward(grad_y)  # one backward through the encoder
        optimizer.step()
        schedule.step()
        history[epoch] = loss.detach()
        if progress and (epoch % PROGRESS_EVERY == 0 or epoch == config.n_epochs - 1):
            bar.set_postfix(loss=f"{history[epoch].item():.4f}", refresh=False)
    encoder.eval()
    hist = history.cpu().numpy()
    if not np.all(np.isfinite(hist)):
        raise ValueError(
            "The UMAP loss became NaN/inf during training; lower learning_rate or check the input."
        )
    return hist
