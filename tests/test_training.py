"""Training: the block plan, one objective in blocks and at full batch, per-member random
streams (the same map on any number of threads), one stack or many, interruption."""

import os
import threading
import time

import numpy as np
import pytest
import torch
from helpers import rel_err
from sklearn.manifold import trustworthiness

import scelm
import scelm._core.train as train
from scelm._core.encoder import StackedEncoder
from scelm._core.graph import edges_from_connectivities, fuzzy_graph
from scelm._core.loss import Pairs, UMAPObjective, find_ab_params, negative_weight, umap_loss_and_gradient
from scelm._core.train import (
    AVERAGE_RATE,
    MemberStream,
    StepIndexes,
    TrainConfig,
    WeightAverage,
    _other_cells,
    _step_index,
    default_batch_size,
    member_groups,
    plan_blocks,
    train_group,
    train_members,
    training_threads,
)

CPU = torch.device("cpu")
AB = find_ab_params(1.0, 0.5)


def _graph(n, seed=0, dims=8):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dims)).astype(np.float32)
    z[: n // 2] += 3.0
    z = np.abs(z)  # non-negative like a PCA front end of counts; any sign works
    return z, edges_from_connectivities(fuzzy_graph(z, n_neighbors=10, random_state=0, device=CPU))


def _fit(z, edges, batch_size, n_epochs=30, members=1, seed=0, threads=1, hidden=(32, 32)):
    stack = StackedEncoder.random(z.shape[1], hidden, 2, seeds=[seed + m for m in range(members)])
    config = TrainConfig(n_epochs, 1e-2, 5, UMAPObjective(*AB), batch_size)
    stack, history = train_members(stack, z, edges, config, member_seeds=[seed + 100 + m for m in range(members)], device=CPU,
                                   seed=seed, progress=False, threads=threads)
    with torch.no_grad():
        return stack(torch.as_tensor(z)).numpy(), history


def test_default_batch_size_is_full_batch_for_small_data():
    assert default_batch_size(700) == 700
    assert default_batch_size(4096) == 4096
    for n_obs in (10_000, 100_000, 1_000_000):
        assert default_batch_size(n_obs) == 1024


def test_default_schedule_keeps_the_steps_and_their_rate_times_steps():
    from scelm.tl._fit_params import default_epochs, default_learning_rate

    for n_obs in (700, 4096, 10_000, 10_240):
        assert default_learning_rate(n_obs) == 1e-2
    assert default_epochs(10_000, "pca") == default_epochs(20_000, "pca") == 200
    for n_obs in (15_000, 20_000, 50_000, 200_000, 1_000_000):
        steps = -(-n_obs // default_batch_size(n_obs)) * default_epochs(n_obs, "pca")
        assert default_learning_rate(n_obs) * steps == pytest.approx(20)  # a 10,000-cell fit's: 2,000 steps at 0.01
        if 20_480 < n_obs <= 200_000:  # the work stops growing with the cells: about 4,000 steps
            assert steps == pytest.approx(4000, rel=0.03)
    assert default_epochs(50_000, "pca") == 82
    assert default_epochs(200_000, "pca") == default_epochs(1_000_000, "pca") == 20  # at least 20 passes
    assert default_learning_rate(50_000) == pytest.approx(5e-3, rel=0.01)


def test_plan_lists_every_edge_under_each_block_it_touches():
    z, edges = _graph(1000)
    plan = plan_blocks(edges, 300, torch.Generator().manual_seed(0), CPU)
    assert plan.bounds == [0, 250, 500, 750, 1000]  # blocks of nearly equal size
    assert sorted(plan.order.tolist()) == list(range(1000))
    original = {(min(h, t), max(h, t)) for h, t in zip(edges.head.tolist(), edges.tail.tolist())}
    seen = {}
    for k in range(4):
        lo, hi = plan.bounds[k], plan.bounds[k + 1]
        h = plan.head[plan.edge_bounds[k]:plan.edge_bounds[k + 1]]
        t = plan.tail[plan.edge_bounds[k]:plan.edge_bounds[k + 1]]
        touches = ((h >= lo) & (h < hi)) | ((t >= lo) & (t < hi))
        assert bool(touches.all())
        for a, b in zip(plan.order[h].tolist(), plan.order[t].tolist()):
            seen[(min(a, b), max(a, b))] = seen.get((min(a, b), max(a, b)), 0) + 1
    assert set(seen) == original
    # Listed twice exactly when the two ends fall in different blocks.
    block = torch.empty(1000, dtype=torch.long)
    block[plan.order] = torch.arange(1000) // 250
    for (a, b), count in seen.items():
        assert count == (2 if block[a] != block[b] else 1)
    np.testing.assert_allclose(plan.total_weight, edges.weight.sum(), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocks_and_full_batch_share_one_objective(seed):
    """Each block cell gets the force full-batch training gives it, divided by the block's
    share of the cells: with the same negatives, the blocks' gradients, each scaled by its
    share, are the full-batch gradient row for row, and their losses (cross-block edges
    counted half in each) add up to the full-batch loss. The negatives are uniform draws in
    both, so the objectives agree in expectation. Full batch then removes the negatives' net
    push, a translation of the map (checked in test_encoder), and blocks on centred input
    their own, a shift common to the block."""
    z, edges = _graph(700, seed=seed)
    n = edges.n_nodes
    plan = plan_blocks(edges, 200, torch.Generator().manual_seed(seed), CPU)  # 4 blocks of 175
    y = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 3
    gen = torch.Generator().manual_seed(seed)
    tails = _other_cells(torch.arange(n).repeat_interleave(5), n, gen)  # cell i's 5 negatives
    objective = UMAPObjective(*AB)
    degree = plan.degree.double()
    full = Pairs(
        torch.as_tensor(plan.head).long(), torch.as_tensor(plan.tail).long(), plan.weight.double(),
        torch.arange(n).repeat_interleave(5), tails, negative_weight(degree.repeat_interleave(5)),
        scale=torch.tensor([plan.total_weight], dtype=torch.float64), n_cells=n, negative_sample_rate=5,
    )
    # the plan lists cross-block edges twice: keep each edge once for the full batch
    once = torch.ones(len(full.head), dtype=torch.bool)
    seen = set()
    for i, (h, t) in enumerate(zip(full.head.tolist(), full.tail.tolist())):
        once[i] = (h, t) not in seen
        seen.add((h, t))
    full.head, full.tail, full.weight = full.head[once], full.tail[once], full.weight[once]
    full_loss, full_grad = objective(y, full)
    block_loss, block_grad = torch.zeros(1, dtype=torch.float64), torch.zeros_like(y)
    for k in range(plan.n_blocks):
        index = _step_index(plan, [k], 1, 5, False)
        pairs = index.pairs
        lo, hi = plan.bounds[k], plan.bounds[k + 1]
        pairs.weight = pairs.weight.double()
        pairs.scale = torch.tensor([plan.total_weight * (hi - lo) / n], dtype=torch.float64)
        pairs.neg_tail = tails[5 * lo:5 * hi]  # the block cells' negatives, as in the full batch
        pairs.neg_weight = pairs.neg_weight.double()
        loss, grad = objective(y, pairs)
        share = (hi - lo) / n
        rows = index.flat_rows
        block_grad[rows] = grad[rows] * share
        block_loss += loss * share
        # On centred input a block's net push is removed too: one shift common to its cells.
        pairs.remove_net_push = True
        shift = (objective(y, pairs)[1] - grad)[rows]
        assert rel_err(shift, shift[:1].expand_as(shift)) < 1e-10 < float(shift.abs().max())
    assert rel_err(block_grad, full_grad) < 1e-10
    assert rel_err(block_loss, full_loss) < 1e-10


def test_negatives_are_uniform_over_the_other_cells():
    n, gen = 7, torch.Generator().manual_seed(0)
    head = torch.arange(n).repeat_interleave(6000)
    tail = _other_cells(head, n, gen)
    assert not bool((tail == head).any())
    counts = torch.zeros(n, n).index_put_((head, tail), torch.ones(len(head)), accumulate=True)
    off = counts[~torch.eye(n, dtype=torch.bool)]
    assert float((off - 1000).abs().max()) < 5 * 1000**0.5  # each other cell ~1000 times (sd ~29)


def test_each_step_encodes_one_block_and_each_epoch_every_cell_once():
    z, edges = _graph(1000)
    stack = StackedEncoder.random(8, [32, 32], 2, seeds=[0])
    rows = []
    hook = stack.register_forward_hook(lambda mod, inp, out: rows.append((inp[0].shape[-2], torch.is_grad_enabled())))
    plan = plan_blocks(edges, 300, torch.Generator().manual_seed(0), CPU)
    zt = torch.as_tensor(z)[plan.order]
    train_group(stack, zt, None, plan, TrainConfig(3, 1e-2, 5, UMAPObjective(*AB), 300), streams=[MemberStream.of(0, CPU)])
    hook.remove()
    with_grad = [r for r, grad in rows if grad]
    assert max(r for r, _ in rows) <= 250  # activations of one block only, cache included
    assert len(with_grad) == 3 * 4 and sum(with_grad) == 3 * 1000


@pytest.mark.parametrize("centred", [False, True])
def test_kept_step_indices_train_as_rebuilt_ones(monkeypatch, centred):
    """Each block's step indices are built once and reused (one member per stack): the fit is
    bit for bit the one that rebuilds them at every step, and every block's is kept once."""
    z, edges = _graph(600)
    plan = plan_blocks(edges, 200, torch.Generator().manual_seed(0), CPU)
    zt = torch.as_tensor(z)[plan.order]
    config = TrainConfig(4, 1e-2, 5, UMAPObjective(*AB), 200, centred_input=centred)
    start = StackedEncoder.random(8, [16], 2, seeds=[3])
    fits = []
    for budget in (train.STEP_INDEX_BYTES, 0):
        monkeypatch.setattr(train, "STEP_INDEX_BYTES", budget)
        indexes = StepIndexes(plan, config)
        stack = StackedEncoder.from_states(start.member_states(), "relu")
        train_group(stack, zt, None, plan, config, streams=[MemberStream.of(5, CPU)], indexes=indexes)
        fits.append((stack, sorted(indexes.kept)))
    (kept, keys), (rebuilt, none) = fits
    assert keys == [(k,) for k in range(plan.n_blocks)] and none == []
    for a, b in zip(kept.parameters(), rebuilt.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("batch_size", [200, 10_000])
def test_training_is_reproducible_and_finite(batch_size):
    z, edges = _graph(600)
    y1, h1 = _fit(z, edges, batch_size, seed=3)
    y2, h2 = _fit(z, edges, batch_size, seed=3)
    np.testing.assert_array_equal(y1, y2)
    assert np.all(np.isfinite(h1)) and h1.shape == (1, 30)
    assert h1[0, -5:].mean() < h1[0, :5].mean()  # the loss goes down


@pytest.mark.parametrize("batch_size", [150, 10_000])
def test_the_same_seed_gives_the_same_map_on_any_number_of_threads(batch_size):
    """Members own their streams and the stacks are fixed by the fit: 1, 2 or 3 threads
    give the same members, in blocks (one member per stack) and at full batch (two stacks)."""
    z, edges = _graph(500)
    maps = [_fit(z, edges, batch_size, n_epochs=20, members=3, threads=t)[0] for t in (1, 2, 3)]
    for other in maps[1:]:
        assert rel_err(other, maps[0]) < 1e-6
    assert rel_err(maps[0][0], maps[0][1]) > 1e-2  # the members differ


def test_stacks_are_fixed_by_the_fit_not_the_threads():
    assert member_groups(10, 1, CPU) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert member_groups(3, 1, CPU) == [[0, 1], [2]]
    assert member_groups(4, 20, CPU) == [[0], [1], [2], [3]]
    assert member_groups(4, 20, torch.device("cuda")) == [[0, 1, 2, 3]]


def test_progress_names_the_members_and_epoch_of_its_loss(monkeypatch):
    """Members in blocks train one per stack, so with fewer threads a later member's first
    epochs follow an earlier one's last: the bar says whose loss it shows."""

    class Bar:
        disable = False

        def __init__(self):
            self.postfixes, self.n = [], 0

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text, refresh=True):
            self.postfixes.append(text)

        def close(self):
            pass

    bar = Bar()
    monkeypatch.setattr(train, "progress_bar", lambda *a, **k: bar)
    z, edges = _graph(600)
    config = TrainConfig(3, 1e-2, 5, UMAPObjective(*AB), 200)
    train_members(StackedEncoder.random(8, [16], 2, seeds=[0, 1]), z, edges, config, member_seeds=[5, 6], device=CPU,
                  seed=0, progress=True, threads=1)
    assert [p.split(":")[0] for p in bar.postfixes] == ["member 1, epoch 1", "member 1, epoch 3", "member 2, epoch 1",
                                                        "member 2, epoch 3"]
    assert bar.n == 6  # one per member and epoch; the bar's unit_scale shows 3 epochs


def test_one_stack_trains_each_member_as_alone():
    """The GPU's schedule (one stack, each member on its own block at each step, short
    blocks padded) computes what each member computes alone; they part only by float
    rounding, which training amplifies, so the check is short."""
    z, edges = _graph(503)
    plan = plan_blocks(edges, 120, torch.Generator().manual_seed(0), CPU)
    assert plan.bounds == [0, 100, 201, 301, 402, 503]  # blocks of 100 and 101 cells: the stack pads
    zt = torch.as_tensor(z)[plan.order]
    config = TrainConfig(2, 1e-2, 5, UMAPObjective(*AB), 120)
    start = StackedEncoder.random(8, [16], 2, seeds=range(3))
    stack = StackedEncoder.from_states(start.member_states(), "relu")
    train_group(stack, zt, None, plan, config, streams=[MemberStream.of(s, CPU) for s in (7, 8, 9)])
    for m, s in enumerate((7, 8, 9)):
        alone = StackedEncoder.from_states([start.member_states()[m]], "relu")
        train_group(alone, zt, None, plan, config, streams=[MemberStream.of(s, CPU)])
        with torch.no_grad():
            assert rel_err(stack(zt)[m], alone(zt)[0]) < 1e-4


def test_threads_follow_scanpy_n_jobs():
    assert training_threads(CPU, 8, 1) == min(8, torch.get_num_threads())  # scanpy's default: torch's threads
    assert training_threads(CPU, 8, 3) == 3 and training_threads(CPU, 2, 3) == 2
    assert training_threads(CPU, 64, -1) == min(64, os.cpu_count())
    assert training_threads(torch.device("cuda"), 8, 4) == 1


def test_concurrent_fits_restore_torchs_thread_count():
    z, edges = _graph(300)
    before = torch.get_num_threads()
    results = []
    workers = [threading.Thread(target=lambda: results.append(_fit(z, edges, 300, n_epochs=15, members=2, threads=2)))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 2 and torch.get_num_threads() == before
    np.testing.assert_array_equal(results[0][0], results[1][0])


def test_an_interrupt_stops_every_thread_within_a_step(monkeypatch):
    """Ctrl-C (here raised in one group's thread) stops the other threads at their next
    step instead of waiting for their members to finish."""
    z, edges = _graph(400)
    real, calls, lock = train.train_group, [], threading.Lock()

    def group(*args, **kwargs):
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            time.sleep(0.5)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_group", group)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        _fit(z, edges, 100, n_epochs=100_000, members=2, threads=2)  # would run for many minutes
    assert time.perf_counter() - start < 20


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocks_match_full_batch_quality_at_equal_steps(seed):
    """Six blocks per epoch for 200 epochs reach the quality of 1,200 full-batch steps on
    the same graph: one objective, whatever the block size."""
    z, edges = _graph(1800, seed=seed, dims=16)
    y_full, _ = _fit(z, edges, 10_000, n_epochs=1200, seed=seed)
    y_block, _ = _fit(z, edges, 300, n_epochs=200, seed=seed)
    t_full = trustworthiness(z, y_full[0], n_neighbors=15)
    t_block = trustworthiness(z, y_block[0], n_neighbors=15)
    assert abs(t_block - t_full) < 0.02, (t_block, t_full)


def test_parametric_umap_records_and_checks_train_batch_size(sim):
    scelm.tl.parametric_umap(sim, n_epochs=10, hidden=(16,), train_batch_size=150, store_jacobian=False)
    params = sim.uns["elm"]["params"]
    assert params["train_batch_size"] == 150 and params["n_epochs"] == 10
    assert params["learning_rate"] == 1e-2  # resolved by the size of the data, not the blocks asked for
    with pytest.raises(ValueError, match="train_batch_size"):
        scelm.tl.parametric_umap(sim, train_batch_size=0)


def test_full_batch_gradient_equals_autograd_per_member():
    """Flat rows of M stacked maps: each member's loss and gradient are its own map's."""
    gen = torch.Generator().manual_seed(0)
    n, members = 20, 3
    y = torch.randn(n, members, 2, dtype=torch.float64, generator=gen)
    head, tail = torch.randint(0, n, (40,), generator=gen), torch.randint(0, n, (40,), generator=gen)
    w = torch.rand(40, dtype=torch.float64, generator=gen)
    nh = torch.arange(n).repeat_interleave(3)
    nts = [torch.randint(0, n, (3 * n,), generator=gen) for _ in range(members)]
    nw = torch.rand(3 * n, dtype=torch.float64, generator=gen)
    kw = dict(a=1.6, b=0.9, repulsion_strength=0.8)
    mid = torch.arange(members)
    stacked = Pairs(
        (head[None] * members + mid[:, None]).reshape(-1), (tail[None] * members + mid[:, None]).reshape(-1), w.repeat(members),
        (nh[None] * members + mid[:, None]).reshape(-1), torch.cat([t * members + m for m, t in enumerate(nts)]), nw.repeat(members),
        scale=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), n_cells=n, negative_sample_rate=3,
        edge_member=mid.repeat_interleave(40), neg_member=mid.repeat_interleave(3 * n),
    )
    loss, grad = umap_loss_and_gradient(y.reshape(-1, 2), stacked, **kw)  # the net push removed per member
    for m in range(members):
        alone = Pairs(head, tail, w, nh, nts[m], nw, scale=torch.tensor([m + 1.0], dtype=torch.float64), n_cells=n,
                      negative_sample_rate=3)
        lm, gm = umap_loss_and_gradient(y[:, m], alone, **kw)
        assert rel_err(loss[m], lm[0]) < 1e-12
        assert rel_err(grad.view(n, members, 2)[:, m], gm) < 1e-12


def test_final_weights_are_the_moving_average_of_the_steps():
    stack = StackedEncoder.random(3, (4,), 2, seeds=[0, 1], activation="prelu")  # slopes are parameters too
    average = WeightAverage(stack, n_steps=int(2 * AVERAGE_RATE))  # decay 1/2
    assert average.decay == 0.5
    expected = [p.detach().clone() for p in stack.parameters()]
    for step in range(3):
        with torch.no_grad():
            for p in stack.parameters():
                p.add_(step + 1.0)
        average.update()
        expected = [0.5 * e + 0.5 * p.detach() for e, p in zip(expected, stack.parameters())]
    average.apply()
    for p, e in zip(stack.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert WeightAverage(stack, n_steps=2).decay == 0.0  # fewer steps than the rate: the last weights


class _Captured(Exception):
    pass


@pytest.mark.parametrize("center", [False, True])
def test_centred_fits_remove_each_blocks_net_push(sim, monkeypatch, center):
    """``center=True`` tells training its input is centred, so every block loses its net push."""
    seen = {}

    def capture(stack, z, edges, config, **kw):
        seen["config"] = config
        raise _Captured

    monkeypatch.setattr(train, "train_members", capture)
    with pytest.raises(_Captured):
        scelm.tl.parametric_umap(sim, center=center, train_batch_size=150, store_jacobian=False)
    assert seen["config"].centred_input is center
