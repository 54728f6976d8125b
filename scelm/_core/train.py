"""Training of the encoder members on the embedding objective, one block of cells per step.

Cells are shuffled once (seeded by ``random_state``) and cut into blocks of nearly equal size.
A member's step encodes one block, evaluates the objective and its closed-form gradient over
the graph edges that touch the block (each listed under every block it touches, so no
repeated edge list is built) plus ``negative_sample_rate`` uniform negatives per block cell,
backpropagates the block's rows of that gradient once and takes one AdamW step. The other
ends of those pairs are read from a cache of the member's latest embedding of every cell,
refreshed block by block. Each block cell gets every force full-batch training would give it
(see :mod:`scelm._core.loss`), divided by the block's share of the cells: in expectation a
step in blocks is the full-batch step restricted to the block, up to the translation of the
whole map that full batch removes (and, on centred input, of the block: see
:mod:`scelm._core.loss`), so both optimise one objective. A member's final weights
are the moving average of its weights over those steps (:class:`WeightAverage`).

One block (``batch_size >= n``) is exact full-batch gradient descent. Several blocks cost
about the same per epoch (each cell is encoded once) but take one Adam step per block, and
activations are held for one block only.

Every member owns its random streams (its layout rows, block order and negatives), seeded
from ``(random_state, member)``: a member's fit depends on nothing else, so threads on CPU and
one batched stack on a GPU only schedule the work, and the same ``random_state`` gives the
same map on any number of cores. Members in one stack may visit different blocks at one step;
blocks differ in size by at most one cell, so the stack pads the shorter ones by repeating a
row whose gradient is dropped.

Everything stays on ``device``; the host reads the loss only when the progress bar is
refreshed. With ``bfloat16`` the encoder's forward and backward run under autocast (for
GPUs); the weights stay float32, so the Jacobians computed afterwards are exact either way.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from .encoder import StackedEncoder
from .graph import EdgeList
from .loss import Pairs, TSNEObjective, UMAPObjective, negative_weight

PROGRESS_EVERY = 25
# Defaults measured on simulated data from 1,000 to 200,000 cells (bench_scale.py,
# bench_trust.py): blocks do not help below a few thousand cells and only add per-step
# overhead; above, blocks of MIN_BLOCK cells (their number of epochs: default_epochs in
# scelm.tl._fit_params). At 50,000 cells 1,024-cell blocks for 80 epochs (3,900 steps)
# matched 20 blocks of 2,500 for 200 epochs (4,000 steps) in trustworthiness and agreement
# across seeds, in 60% of the time.
FULL_BATCH_MAX = 4096
MIN_BLOCK = 1024
# Adam steps regressing the encoder onto its starting layout before the UMAP phase (100 and
# 300 gave the same stability and quality on pbmc68k_reduced; 100 costs a third).
LAYOUT_STEPS = 100
# Cells per step of that regression: a smooth low-dimensional target needs no full batch.
LAYOUT_BATCH = 1024
# On CPU, full-batch members train in CPU_GROUPS stacks (a step is mostly per-call overhead,
# which a stack pays once for its members) and members in blocks one by one (a step is mostly
# arithmetic, and one member per thread scales with the cores). Measured on 2 cores:
# pbmc68k_reduced, 10 members in 2 stacks of 5 2.6 s, 10 stacks of 1 4.8 s; 10,000 cells,
# 4 members one by one 20 s, in 2 stacks of 2 18 s. Fixed by the fit, not by the thread count,
# so the schedule never changes a member's arithmetic.
CPU_GROUPS = 2
# Step indices are kept for reuse (StepIndexes) up to this many bytes: a member's, for every
# block, hold each listed edge's two int64 ids, weight and share, 24 bytes. The default graph
# lists about 24 edges per cell (its 15-NN edges, mostly under two blocks): 6 MB at 10,000
# cells, kept up to about 450,000. Keeping them cut a 10,000-cell step from 3.8 to 3.3 ms.
STEP_INDEX_BYTES = 256 * 2**20
INDEX_BYTES_PER_EDGE = 24
# Spawn key of a member's training streams (its initial weights use the member seed itself).
STREAM_KEY = 1
# A member's final weights are an exponential moving average of its weights over the map's
# phase, with a time constant of 1 / AVERAGE_RATE of its steps (what it started from keeps
# e^-4, about 2%). Bias-free ReLU networks of one architecture average into one, so every
# explanation stays exact. Against the last weights (bench_trust.py, 3 seeds): top-10
# agreement across seeds 0.76 -> 0.79 on pbmc68k_reduced, 0.88 -> 0.91 at 2,000 simulated
# cells, 0.64 -> 0.75 at 10,000, 0.40 -> 0.48 at 50,000; trustworthiness within 0.003; one
# multiply-add per weight and step.
AVERAGE_RATE = 4.0


def default_batch_size(n_obs: int) -> int:
    """Cells per training step: all of them up to ``FULL_BATCH_MAX`` cells, else blocks of
    ``MIN_BLOCK``."""
    return n_obs if n_obs <= FULL_BATCH_MAX else MIN_BLOCK


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
    centred_input: bool = False  # the encoder reads centred input: blocks lose their net push too


@dataclass
class BlockPlan:
    """Cells renumbered so that each block is a contiguous range, and every edge listed
    under each block it touches (once if both ends share a block)."""

    bounds: list[int]  # block k holds cells bounds[k]:bounds[k + 1]; sizes differ by at most 1
    edge_bounds: list[int]  # its edges are head[edge_bounds[k]:edge_bounds[k + 1]], ...
    head: torch.Tensor
    tail: torch.Tensor
    weight: torch.Tensor
    degree: torch.Tensor  # per renumbered cell
    order: torch.Tensor  # renumbered cell i is original cell order[i]
    total_weight: float  # of every edge once

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1


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
    bounds = [k * n // n_blocks for k in range(n_blocks + 1)]
    inner = torch.tensor(bounds[1:-1], dtype=torch.int32)
    block_h = torch.bucketize(head, inner, right=True, out_int32=True)
    block_t = torch.bucketize(tail, inner, right=True, out_int32=True)
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
        bounds=bounds, edge_bounds=edge_bounds,
        head=head[idx].to(device), tail=tail[idx].to(device), weight=weight[idx].to(device),
        degree=degree.to(device), order=order.long().to(device), total_weight=float(weight.double().sum()),
    )


@dataclass
class MemberStream:
    """One member's random numbers: its block order (host) and its layout rows and
    negatives (drawn on the device)."""

    blocks: torch.Generator
    draws: torch.Generator

    @classmethod
    def of(cls, member_seed: int, device: torch.device) -> MemberStream:
        blocks, draws = (int(s) for s in np.random.SeedSequence([member_seed, STREAM_KEY]).generate_state(2))
        return cls(torch.Generator().manual_seed(blocks), torch.Generator(device=device).manual_seed(draws))


def adamw(stack: StackedEncoder, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    # The fused kernel (CPU and CUDA) updates every tensor in one call: a quarter of the
    # per-step optimizer time of the default on CPU, and no per-parameter kernel launches.
    return torch.optim.AdamW(stack.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=True)


class WeightAverage:
    """Exponential moving average of a stack's parameters over ``n_steps`` optimizer steps,
    with time constant ``n_steps / AVERAGE_RATE`` (see ``AVERAGE_RATE``)."""

    def __init__(self, stack: StackedEncoder, n_steps: int):
        self.params = list(stack.parameters())
        self.averages = [p.detach().clone() for p in self.params]
        self.decay = max(0.0, 1.0 - AVERAGE_RATE / n_steps)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values in (after each optimizer step)."""
        torch._foreach_mul_(self.averages, self.decay)  # one call for every tensor
        torch._foreach_add_(self.averages, self.params, alpha=1.0 - self.decay)

    @torch.no_grad()
    def apply(self) -> None:
        """Set the stack's parameters to their averages."""
        for p, avg in zip(self.params, self.averages):
            p.copy_(avg)


def _random_rows(n: int, size: int, generator, device) -> torch.Tensor:
    """``size`` random cells: ``(size,)`` from one generator, ``(M, size)`` from one per member."""
    if isinstance(generator, torch.Generator):
        return torch.randint(0, n, (size,), generator=generator, device=device)
    return torch.stack([torch.randint(0, n, (size,), generator=g, device=device) for g in generator])


def fit_to_layout(
    stack: StackedEncoder, zt: torch.Tensor, layout: torch.Tensor, steps: int, *, learning_rate: float,
    batch_size: int, generator: torch.Generator | Sequence[torch.Generator], weight_decay: float = 0.0,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None, check_every: int = 50, patience: int = 8,
) -> np.ndarray:
    """Regress every member onto ``layout`` (n x d) by mean squared error: up to ``steps``
    AdamW steps, each on all cells or on ``batch_size`` random ones (the same for every
    member from one ``generator``, each member its own from one generator per member).

    With ``validation=(z, layout)`` of held-out cells, their MSE (mean over members) is
    checked every ``check_every`` steps; training stops after ``patience`` checks without
    improvement and the best weights are restored. Returns the held-out MSE of every check
    (empty without validation)."""
    optimizer = adamw(stack, learning_rate, weight_decay)
    n, checks = zt.shape[0], []
    best, since_best = None, 0
    for step in range(1, steps + 1):
        rows = _random_rows(n, batch_size, generator, zt.device) if batch_size < n else slice(None)
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


def member_groups(n_members: int, n_blocks: int, device: torch.device) -> list[list[int]]:
    """Which members train together in one stack: all of them on a GPU (one batched network,
    one kernel per layer for all); on CPU, ``CPU_GROUPS`` stacks of consecutive members at
    full batch and one member per stack in blocks, whatever the number of threads. The only
    place the device picks this."""
    if device.type == "cuda":
        size = n_members
    else:
        size = math.ceil(n_members / CPU_GROUPS) if n_blocks == 1 else 1
    return [list(range(i, min(i + size, n_members))) for i in range(0, n_members, size)]


def training_threads(device: torch.device, n_groups: int, n_jobs: int = 1) -> int:
    """Threads that train the groups at once: one on a GPU; on CPU ``n_jobs`` (scanpy's
    ``sc.settings.n_jobs``) where it is raised above its default 1 (-1: every core), else
    torch's thread count. One member's small matrix products keep one core busy, and
    intra-op threads gain almost nothing there (measured on 2 cores at 10,000 cells: 2
    threads 7.4 s, 1 thread 7.7 s per member, and 2 members in 2 threads 7.4 s)."""
    if device.type == "cuda":
        return 1
    if n_jobs == -1:
        cores = os.cpu_count() or 1
    else:
        cores = n_jobs if n_jobs > 1 else torch.get_num_threads()
    return max(1, min(n_groups, cores))


_INTRA_OP = threading.Lock()
_intra_op_holders = [0, 1]  # fits running, torch's thread count before the first


@contextmanager
def one_intra_op_thread(device: torch.device):
    """Torch's intra-op threads set to 1 while any CPU fit runs (each member's arithmetic is
    then the same in every schedule), and restored when the last one ends: safe for fits
    running in several threads at once."""
    if device.type != "cpu":
        yield
        return
    with _INTRA_OP:
        if _intra_op_holders[0] == 0:
            _intra_op_holders[1] = torch.get_num_threads()
            torch.set_num_threads(1)
        _intra_op_holders[0] += 1
    try:
        yield
    finally:
        with _INTRA_OP:
            _intra_op_holders[0] -= 1
            if _intra_op_holders[0] == 0:
                torch.set_num_threads(_intra_op_holders[1])


class Stopped(Exception):
    """Raised in a training thread when the fit was interrupted."""


def train_members(
    stack: StackedEncoder, z: np.ndarray, edges: EdgeList, config: TrainConfig, *, member_seeds: Sequence[int],
    layout: np.ndarray | None = None, device: torch.device, seed: int, progress: bool, threads: int | None = None,
    n_jobs: int = 1, desc: str = "training",
) -> tuple[StackedEncoder, np.ndarray]:
    """Fit every member of ``stack``: first onto ``layout`` (if given, for
    ``config.layout_steps``), then on ``config.objective``. The blocks are cut once from
    ``seed``; member m draws everything else from its own stream of ``member_seeds[m]``.
    The groups of :func:`member_groups` train in ``threads`` threads (default:
    :func:`training_threads` of ``n_jobs``; Ctrl-C stops them within a step). Returns
    the trained stack (members in their order) and the mean block loss of every epoch,
    ``(n_members, n_epochs)`` float32."""
    plan = plan_blocks(edges, config.batch_size, torch.Generator().manual_seed(seed), device)
    zt = torch.as_tensor(z, dtype=torch.float32).to(device)[plan.order]  # copied once, renumbered, shared
    lt = None if layout is None else torch.as_tensor(layout, dtype=torch.float32).to(device)[plan.order]
    states, groups, stop = stack.member_states(), member_groups(stack.n_members, plan.n_blocks, device), threading.Event()
    threads = training_threads(device, len(groups), n_jobs) if threads is None else threads
    bar = progress_bar(config.n_epochs, stack.n_members, desc=desc, disable=not progress)
    indexes = StepIndexes(plan, config)

    def train(group: list[int]):
        part = StackedEncoder.from_states([states[m] for m in group], stack.activation).to(device)
        streams = [MemberStream.of(member_seeds[m], device) for m in group]
        label = f"member {group[0] + 1}" if len(group) == 1 else f"members {group[0] + 1}-{group[-1] + 1}"
        return part, train_group(part, zt, lt, plan, config, streams=streams, bar=bar, stop=stop, label=label, indexes=indexes)

    try:
        with one_intra_op_thread(device):
            results = [train(g) for g in groups] if threads <= 1 else _in_threads(train, groups, threads, stop)
    finally:
        bar.close()
    trained = [state for part, _ in results for state in part.member_states()]
    history = np.concatenate([h for _, h in results])
    if not np.all(np.isfinite(history)):
        raise ValueError(f"The {config.objective.name} became NaN/inf during training; lower learning_rate or check the input.")
    return StackedEncoder.from_states(trained, stack.activation).to(device), history


def progress_bar(n_epochs: int, n_members: int, *, desc: str, disable: bool):
    """A tqdm bar counting epochs, advanced by one per member and epoch (members train in
    parallel): the notebook widget where ipywidgets can draw it, else the text bar (tqdm's
    auto bar warns without ipywidgets)."""
    from importlib.util import find_spec

    if find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(
        total=n_epochs * n_members, unit_scale=1 / n_members, desc=desc, disable=disable, mininterval=1.0,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} epochs [{elapsed}<{remaining}{postfix}]",
    )


def _in_threads(fn, groups: list, threads: int, stop: threading.Event) -> list:
    """``fn`` of every group in ``threads`` threads. On Ctrl-C (which lands in the main
    thread, here) or an error in one thread, the others stop at their next step."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(threads)
    futures = [pool.submit(fn, g) for g in groups]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if raised := [e for e in errors if not isinstance(e, Stopped)]:
        raise raised[0]
    return [f.result() for f in futures]


def train_group(
    stack: StackedEncoder, zt: torch.Tensor, layout: torch.Tensor | None, plan: BlockPlan, config: TrainConfig, *,
    streams: Sequence[MemberStream], bar=None, stop: threading.Event | None = None, label: str = "members",
    indexes: StepIndexes | None = None,
) -> np.ndarray:
    """Fit the members of one ``stack`` in place on the renumbered inputs ``zt`` (and
    ``layout``), member m from ``streams[m]``. ``bar``: a tqdm bar advanced by one per member
    and epoch, whose postfix gives the loss of ``label`` (these members) and its epoch.
    ``indexes``: the steps' indices, shared by the stacks of one fit (default: built here).
    Returns the mean block loss per member and epoch."""
    stack.train()
    n, n_members = zt.shape[0], stack.n_members
    if layout is not None and config.layout_steps > 0:
        fit_to_layout(
            stack, zt, layout, config.layout_steps, learning_rate=config.learning_rate,
            batch_size=min(n, config.batch_size, LAYOUT_BATCH), generator=[s.draws for s in streams],
        )
    cache = torch.empty(n, n_members, stack.n_out, device=zt.device)  # latest embedding, per member
    with torch.no_grad():
        for lo, hi in zip(plan.bounds[:-1], plan.bounds[1:]):
            cache[lo:hi] = stack(zt[lo:hi]).transpose(0, 1)
    optimizer = adamw(stack, config.learning_rate, config.weight_decay)
    (group,) = optimizer.param_groups
    # Linear decay to zero over all steps, as umap-learn anneals its SGD step (set by hand:
    # a LambdaLR scheduler cost a tenth of each step on CPU).
    total_steps, step = config.n_epochs * plan.n_blocks, 0
    average = WeightAverage(stack, total_steps)
    history = torch.zeros(config.n_epochs, n_members, device=zt.device)
    indexes = indexes or StepIndexes(plan, config)
    for epoch in range(config.n_epochs):
        orders = torch.stack([torch.randperm(plan.n_blocks, generator=s.blocks) for s in streams], 1).tolist()
        for blocks in orders:  # one block per member
            if stop is not None and stop.is_set():
                raise Stopped
            optimizer.zero_grad(set_to_none=True)
            index = indexes(blocks)
            loss = _block_step(stack, zt, cache, index, config, streams)
            optimizer.step()
            average.update()
            step += 1
            group["lr"] = config.learning_rate * (1.0 - step / total_steps)
            history[epoch] += loss.detach() / plan.n_blocks
        if bar is not None and not bar.disable:
            bar.update(n_members)
            if epoch % PROGRESS_EVERY == 0 or epoch == config.n_epochs - 1:
                # With more groups than threads, a group's first epochs follow another's last.
                bar.set_postfix_str(f"{label}, epoch {epoch + 1}: loss {history[epoch].mean().item():.4f}", refresh=False)
    average.apply()
    stack.eval()
    return history.T.cpu().numpy()


@dataclass
class _StepIndex:
    """What one step reads, for given blocks of the members (row i * M + m of the flat
    cache is cell i of member m): the rows each member encodes, its attracting edges with the
    share of each edge's loss the block counts, and its negatives' heads and weights."""

    blocks: slice | torch.Tensor  # the encoder's input rows: a slice, or (M, width) when blocks differ
    flat_rows: torch.Tensor  # (M * width,) rows of the flat cache they fill
    pad: torch.Tensor | None  # (M, width, 1) 0 on rows repeated to fill a short block
    heads: list[torch.Tensor]  # per member, the cells of its negatives' heads
    pairs: Pairs  # negatives' tails left to each step


class StepIndexes:
    """The :class:`_StepIndex` of the members' blocks at each step, kept for reuse where a
    stack's members visit one block together (one member per stack, or full batch) and every
    block's fits in ``STEP_INDEX_BYTES``: a step then only reads them. Shared by the threads
    of one fit, which never write to a kept index."""

    def __init__(self, plan: BlockPlan, config: TrainConfig):
        self.plan, self.rate = plan, config.negative_sample_rate
        # A step on the whole map, or any step on centred input, removes the negatives' net push.
        self.remove_net_push = plan.n_blocks == 1 or config.centred_input
        self.keep = plan.n_blocks == 1 or plan.head.shape[0] * INDEX_BYTES_PER_EDGE <= STEP_INDEX_BYTES
        self.kept: dict[tuple[int, ...], _StepIndex] = {}

    def __call__(self, blocks: Sequence[int]) -> _StepIndex:
        key = tuple(blocks)
        if (index := self.kept.get(key)) is None:
            index = _step_index(self.plan, blocks, len(blocks), self.rate, self.remove_net_push)
            if self.keep and len(set(key)) == 1:
                self.kept[key] = index
        return index


def _step_index(plan: BlockPlan, blocks: Sequence[int], n_members: int, rate: int, remove_net_push: bool) -> _StepIndex:
    device, n = plan.degree.device, plan.degree.shape[0]
    lo = [plan.bounds[k] for k in blocks]
    size = [plan.bounds[k + 1] - plan.bounds[k] for k in blocks]
    width = max(size)
    member = torch.arange(n_members, device=device)
    if len(set(lo)) == 1:  # every member on one block: no gather, no padding
        rows, pad = slice(lo[0], lo[0] + width), None
        flat_rows = (torch.arange(lo[0], lo[0] + width, device=device)[:, None] * n_members + member).T.reshape(-1)
    else:
        offset = torch.arange(width, device=device)
        size_t = torch.tensor(size, device=device)
        rows = torch.tensor(lo, device=device)[:, None] + torch.minimum(offset, size_t[:, None] - 1)  # short blocks repeat a row
        flat_rows = (rows * n_members + member[:, None]).reshape(-1)
        pad = (offset < size_t[:, None]).unsqueeze(-1).float() if min(size) < width else None
    heads = [torch.arange(a, a + s, device=device).repeat_interleave(rate) for a, s in zip(lo, size)]
    edges = []
    for m, (k, a, s) in enumerate(zip(blocks, lo, size)):
        e = slice(plan.edge_bounds[k], plan.edge_bounds[k + 1])
        head, tail, weight = plan.head[e], plan.tail[e], plan.weight[e]
        # An edge with one end outside the block moves only its block end: half its loss.
        outside = (head < a) | (head >= a + s) | (tail < a) | (tail >= a + s)
        ends = 1.0 - 0.5 * outside.float()
        head, tail = head.long(), tail.long()  # index_add_ with int32 indices is 10x slower on CPU
        if n_members > 1:
            head, tail = head * n_members + m, tail * n_members + m
        edges.append((head, tail, weight, ends))
    head, tail, weight, ends = (torch.cat(p) for p in zip(*edges))
    neg_head = torch.cat([h * n_members + m for m, h in enumerate(heads)])
    edge_member = neg_member = None  # one member: no ids to sum by
    if n_members > 1:
        edge_member = torch.repeat_interleave(member, torch.tensor([len(e[0]) for e in edges], device=device))
        neg_member = torch.repeat_interleave(member, torch.tensor([len(h) for h in heads], device=device))
    pairs = Pairs(
        head, tail, weight, neg_head, neg_head, negative_weight(torch.cat([plan.degree[h] for h in heads])),
        scale=plan.total_weight * torch.tensor(size, device=device, dtype=weight.dtype) / n, n_cells=n,
        negative_sample_rate=rate, edge_member=edge_member, neg_member=neg_member, ends=ends,
        remove_net_push=remove_net_push,
    )
    return _StepIndex(rows, flat_rows, pad, heads, pairs)


def _other_cells(head: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """One uniform draw among the n - 1 cells other than each ``head``."""
    tail = torch.randint(0, n - 1, head.shape, generator=generator, device=head.device)
    return tail + (tail >= head).long()


def _block_step(
    stack: StackedEncoder, zt: torch.Tensor, cache: torch.Tensor, index: _StepIndex, config: TrainConfig,
    streams: Sequence[MemberStream],
) -> torch.Tensor:
    """Encode each member's block, refresh its rows of ``cache`` and accumulate the gradient
    of the objective in the encoder's parameters (one backward); returns the loss per member."""
    n, n_members, d = cache.shape
    with torch.autocast(cache.device.type, dtype=torch.bfloat16, enabled=config.bfloat16):
        y = stack(zt[index.blocks]).float()  # (members, width, d); distances and loss in float32
    flat = cache.view(n * n_members, d)
    flat[index.flat_rows] = y.detach().reshape(-1, d)
    # Each member its own negatives, so members' maps vary as independent fits would.
    tails = torch.cat([_other_cells(h, n, s.draws) for h, s in zip(index.heads, streams)])
    pairs = replace(index.pairs, neg_tail=tails if n_members == 1 else tails * n_members + index.pairs.neg_member)
    loss, grad = config.objective(flat, pairs)
    grad_rows = grad.index_select(0, index.flat_rows).view(y.shape)
    y.backward(grad_rows if index.pad is None else grad_rows * index.pad)  # block rows only, each once
    return loss
