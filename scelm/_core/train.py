"""Training of the encoder on UMAP's cross-entropy, one block of cells per step.

Cells are shuffled once and cut into blocks of ``batch_size``. A step encodes one block,
evaluates the loss and its closed-form gradient on the embedding over the graph edges
that touch the block (weighted, so no repeated edge list is built) plus
``negative_sample_rate`` uniform negatives per block cell, backpropagates the block's part
of that gradient through the encoder once and takes one Adam step. The other ends of those
pairs are read from a cache of the latest embedding of every cell, refreshed block by
block; every pair moves the ends that lie in the block.

One block (``batch_size >= n``) is exact full-batch gradient descent. Several blocks cost
about the same per epoch (each cell is encoded once) but take one Adam step per block, and
activations are held for one block only. At 100,000 cells, 200 epochs of 20 blocks reach
trustworthiness 0.937 in 62 s where 300 full-batch steps reach 0.911 in 107 s (2 CPU cores).

Everything stays on ``device``; the host reads the loss only when the progress bar is
refreshed. With ``bfloat16`` the encoder's forward and backward run under autocast (for
GPUs); the weights stay float32, so the Jacobians computed afterwards are exact either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .encoder import StackedEncoder
from .graph import EdgeList
from .loss import TSNEObjective, UMAPObjective

PROGRESS_EVERY = 25
# Defaults measured on simulated data from 1,000 to 200,000 cells (bench_scale.py): blocks
# do not help below a few thousand cells and only add per-step overhead; above, about 20
# steps per epoch beat both full batch and 3 blocks.
FULL_BATCH_MAX = 4096
MIN_BLOCK = 1024
BLOCKS_PER_EPOCH = 20
# Adam steps regressing the encoder onto its starting layout before the UMAP phase (100 and
# 300 gave the same stability and quality on pbmc68k_reduced; 100 costs a third).
LAYOUT_STEPS = 100
# Cells per step of that regression: a smooth low-dimensional target needs no full batch.
LAYOUT_BATCH = 1024


def default_batch_size(n_obs: int) -> int:
    """Cells per training step: all of them up to ``FULL_BATCH_MAX`` cells, else about
    ``BLOCKS_PER_EPOCH`` blocks per epoch of at least ``MIN_BLOCK`` cells."""
    if n_obs <= FULL_BATCH_MAX:
        return n_obs
    return max(MIN_BLOCK, math.ceil(n_obs / BLOCKS_PER_EPOCH))


@dataclass
class TrainConfig:
    n_epochs: int
    learning_rate: float
    negative_sample_rate: int
    objective: UMAPObjective | TSNEObjective  # the loss on the embedding, with its closed-form gradient
    batch_size: int
    weight_decay: float = 0.0  # AdamW's decoupled decay during the UMAP phase
    layout_steps: int = 0  # Adam steps regressing the encoder onto the starting layout
    bfloat16: bool = False  # autocast the encoder's matmuls; distances and loss stay float32


@dataclass
class BlockPlan:
    """Cells renumbered so that each block is a contiguous range, and every edge listed
    under each block it touches (once if both ends share a block)."""

    bounds: list[int]  # block k holds cells bounds[k]:bounds[k + 1]
    edge_bounds: list[int]  # its edges are head[edge_bounds[k]:edge_bounds[k + 1]], ...
    head: torch.Tensor
    tail: torch.Tensor
    weight: torch.Tensor
    degree: torch.Tensor  # per renumbered cell
    order: torch.Tensor  # renumbered cell i is original cell order[i]


def plan_blocks(edges: EdgeList, batch_size: int, generator: torch.Generator, device: torch.device) -> BlockPlan:
    n = edges.n_nodes
    n_blocks = max(1, math.ceil(n / batch_size))
    # int32 ids (n < 2**31): the plan lists most edges twice, so its indices are most of
    # training's memory at a million cells.
    order = torch.randperm(n, generator=generator).int() if n_blocks > 1 else torch.arange(n, dtype=torch.int32)
    new_id = torch.empty(n, dtype=torch.int32)
    new_id[order.long()] = torch.arange(n, dtype=torch.int32)
    head = new_id[torch.as_tensor(edges.head)]
    tail = new_id[torch.as_tensor(edges.tail)]
    weight = torch.as_tensor(edges.weight)
    degree = torch.zeros(n).index_add_(0, head, weight).index_add_(0, tail, weight)
    size = math.ceil(n / n_blocks)
    block_h, block_t = head // size, tail // size
    cross = torch.nonzero(block_h != block_t).squeeze(1).int()
    # Each edge under its head's block, and again under its tail's block when that differs.
    idx = torch.cat([torch.arange(head.shape[0], dtype=torch.int32), cross])
    key = torch.cat([block_h, block_t[cross]])
    del block_h, block_t, cross
    key, perm = torch.sort(key, stable=True)
    idx = idx[perm]
    del perm
    edge_bounds = torch.searchsorted(key, torch.arange(n_blocks + 1, dtype=torch.int32)).tolist()
    return BlockPlan(
        bounds=[min(k * size, n) for k in range(n_blocks + 1)],
        edge_bounds=edge_bounds,
        head=head[idx].to(device), tail=tail[idx].to(device), weight=weight[idx].to(device),
        degree=degree.to(device), order=order.long().to(device),
    )


def adamw(stack: StackedEncoder, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    # The fused kernel (CPU and CUDA) updates every tensor in one call: a quarter of the
    # per-step optimizer time of the default on CPU, and no per-parameter kernel launches.
    return torch.optim.AdamW(stack.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=True)


def fit_to_layout(
    stack: StackedEncoder, zt: torch.Tensor, layout: torch.Tensor, steps: int, *, learning_rate: float,
    batch_size: int, generator: torch.Generator, weight_decay: float = 0.0,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None, check_every: int = 50, patience: int = 8,
) -> np.ndarray:
    """Regress every member onto ``layout`` (n x d) by mean squared error: up to ``steps``
    AdamW steps, each on all cells or on ``batch_size`` random ones.

    With ``validation=(z, layout)`` of held-out cells, their MSE (mean over members) is
    checked every ``check_every`` steps; training stops after ``patience`` checks without
    improvement and the best weights are restored. Returns the held-out MSE of every check
    (empty without validation)."""
    optimizer = adamw(stack, learning_rate, weight_decay)
    n, checks = zt.shape[0], []
    best, since_best = None, 0
    for step in range(1, steps + 1):
        rows = torch.randint(0, n, (batch_size,), generator=generator, device=zt.device) if batch_size < n else slice(None)
        # Summed over members, so each member gets the gradient of its own MSE.
        loss = (stack(zt[rows]) - layout[rows]).pow(2).mean((1, 2)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if validation is None or step % check_every:
            continue
        with torch.no_grad():
            checks.append(float((stack(validation[0]) - validation[1]).pow(2).mean()))
        if best is None or checks[-1] < best[0]:
            best, since_best = (checks[-1], {k: v.detach().clone() for k, v in stack.state_dict().items()}), 0
        elif (since_best := since_best + 1) >= patience:
            break
    if best is not None:
        stack.load_state_dict(best[1])
    return np.asarray(checks, dtype=np.float32)


def member_threads(device: torch.device, n_members: int) -> int:
    """How many members train at once, each group in its own thread: one batched stack on a
    GPU; on CPU, one thread per core (torch's thread count), since one member's small
    matrix products keep one core busy and intra-op threads gain almost nothing there
    (measured on 2 cores at 10,000 cells: 2 threads 7.4 s, 1 thread 7.7 s per member, and
    2 members in 2 threads 7.4 s). The only place the device picks this."""
    return 1 if device.type == "cuda" else max(1, min(n_members, torch.get_num_threads()))


def train_members(
    stack: StackedEncoder, z: np.ndarray, edges: EdgeList, config: TrainConfig, *, progress: bool, threads: int = 1, **fit
) -> tuple[StackedEncoder, np.ndarray]:
    """Fit every member of ``stack`` as :func:`train_encoder` does (``fit``: its ``layout``,
    ``device`` and ``seed``). Members differ by their initial weights
    and negative samples; with ``threads > 1`` they are dealt round-robin into that many
    stacks, each trained in its own thread with one intra-op thread, on one shared plan of
    blocks visited in each thread's own order. Returns the trained
    stack (members in their order) and the mean block loss of every epoch,
    ``(n_members, n_epochs)`` float32."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    n_members = stack.n_members
    bar = tqdm(total=config.n_epochs * n_members, desc="parametric UMAP", unit="epoch", disable=not progress,
               mininterval=1.0)
    if threads <= 1:
        history = train_encoder(stack, z, edges, config, bar=bar, **fit)
        bar.close()
        return stack, history
    groups = [list(range(i, n_members, threads)) for i in range(threads)]
    states = stack.member_states()
    parts = [StackedEncoder.from_states([states[m] for m in g], stack.activation) for g in groups]
    intra = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            # Each group its own streams of blocks and negatives, independent of other seeds'.
            seed = fit.pop("seed")
            seeds = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(threads)]
            # One plan of blocks for all groups (its edge lists are training's largest arrays).
            plan = plan_blocks(edges, config.batch_size, torch.Generator().manual_seed(seed), fit["device"])
            futures = [
                pool.submit(train_encoder, part, z, edges, config, seed=s, bar=bar, plan=plan, **fit) for part, s in zip(parts, seeds)
            ]
            histories = [f.result() for f in futures]
    finally:
        torch.set_num_threads(intra)
        bar.close()
    trained = [None] * n_members
    history = np.empty((n_members, config.n_epochs), dtype=np.float32)
    for g, part, h in zip(groups, parts, histories):
        for j, m in enumerate(g):
            trained[m] = part.member_states()[j]
            history[m] = h[j]
    return StackedEncoder.from_states(trained, stack.activation).to(fit["device"]), history


def train_encoder(
    stack: StackedEncoder,
    z: np.ndarray,
    edges: EdgeList,
    config: TrainConfig,
    *,
    layout: np.ndarray | None = None,
    device: torch.device,
    seed: int,
    bar=None,
    plan: BlockPlan | None = None,
) -> np.ndarray:
    """Fit every member of one ``stack`` in place: first onto ``layout`` (if given, for
    ``config.layout_steps``), then on UMAP's loss; all of them see the same blocks (those of
    ``plan``, else drawn from ``seed``), in an order drawn from ``seed``. ``bar``: a tqdm bar
    advanced by one per member and epoch."""
    stack.to(device).train()
    host_gen = torch.Generator().manual_seed(seed)  # partition and block order (host-side ints)
    gen = torch.Generator(device=device).manual_seed(seed)  # layout rows and negatives, drawn where used
    n = edges.n_nodes
    zt = torch.as_tensor(z, dtype=torch.float32).to(device)  # copied to the device once
    if layout is not None and config.layout_steps > 0:
        fit_to_layout(
            stack, zt, torch.as_tensor(layout, dtype=torch.float32).to(device), config.layout_steps,
            learning_rate=config.learning_rate, batch_size=min(n, config.batch_size, LAYOUT_BATCH), generator=gen,
        )
    plan = plan if plan is not None else plan_blocks(edges, config.batch_size, host_gen, device)
    n_blocks = len(plan.bounds) - 1
    zt = zt[plan.order]
    cache = torch.empty(n, stack.n_members, stack.n_out, device=device)  # latest embedding, per member
    with torch.no_grad():
        for lo, hi in zip(plan.bounds[:-1], plan.bounds[1:]):
            cache[lo:hi] = stack(zt[lo:hi]).transpose(0, 1)

    optimizer = adamw(stack, config.learning_rate, config.weight_decay)
    (group,) = optimizer.param_groups
    # Linear decay to zero over all steps, as umap-learn anneals its SGD step (set by hand:
    # a LambdaLR scheduler cost a tenth of each step on CPU).
    total_steps, step = config.n_epochs * n_blocks, 0
    history = torch.zeros(config.n_epochs, stack.n_members, device=device)
    for epoch in range(config.n_epochs):
        for k in torch.randperm(n_blocks, generator=host_gen).tolist():
            optimizer.zero_grad(set_to_none=True)
            loss = _block_step(stack, zt, cache, plan, k, config, gen)
            optimizer.step()
            step += 1
            group["lr"] = config.learning_rate * (1.0 - step / total_steps)
            history[epoch] += loss.detach() / n_blocks
        if bar is not None and not bar.disable:
            bar.update(stack.n_members)
            if epoch % PROGRESS_EVERY == 0 or epoch == config.n_epochs - 1:
                bar.set_postfix(loss=f"{history[epoch].mean().item():.4f}", refresh=False)
    stack.eval()
    hist = history.T.cpu().numpy()
    if not np.all(np.isfinite(hist)):
        raise ValueError(
            f"The {config.objective.name} became NaN/inf during training; lower learning_rate or check the input."
        )
    return hist


def _block_step(
    stack: StackedEncoder, zt: torch.Tensor, cache: torch.Tensor, plan: BlockPlan, k: int, config: TrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Encode block ``k``, refresh its rows of ``cache`` and accumulate the gradient of the
    objective in the encoder's parameters (one backward); returns the loss per member."""
    device, m, n_members = cache.device, config.negative_sample_rate, stack.n_members
    lo, hi = plan.bounds[k], plan.bounds[k + 1]
    e_lo, e_hi = plan.edge_bounds[k], plan.edge_bounds[k + 1]
    neg_head = torch.arange(lo, hi, device=device).repeat_interleave(m)
    # Each member its own negatives, so members' maps vary as independent fits would.
    neg_tail = torch.randint(0, cache.shape[0], (neg_head.shape[0], n_members), device=device, generator=gen)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bfloat16):
        y = stack(zt[lo:hi]).float()  # (members, block, d); distances and loss in float32
    cache[lo:hi] = y.detach().transpose(0, 1)
    loss, grad = config.objective(
        cache, plan.head[e_lo:e_hi], plan.tail[e_lo:e_hi], plan.weight[e_lo:e_hi], neg_head, neg_tail,
        head_degree=plan.degree[lo:hi].repeat_interleave(m), negative_sample_rate=m,
    )
    y.backward(grad[lo:hi].transpose(0, 1))  # one backward through the encoder, block ends only
    return loss
