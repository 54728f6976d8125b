"""Block training: the edge plan, one block of activations at a time, full-batch quality."""

import numpy as np
import pytest
import torch
from sklearn.manifold import trustworthiness

import scelm
from scelm._core.encoder import StackedEncoder
from scelm._core.graph import edges_from_connectivities, fuzzy_graph
from scelm._core.loss import UMAPObjective, find_ab_params
from scelm._core.train import TrainConfig, default_batch_size, plan_blocks, train_encoder, train_members

CPU = torch.device("cpu")


def _graph(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8)).astype(np.float32)
    z[: n // 2] += 3.0
    z = np.abs(z)  # non-negative like a PCA front end of counts; any sign works
    return z, edges_from_connectivities(fuzzy_graph(z, n_neighbors=10, random_state=0, device=CPU))


def test_default_batch_size_is_full_batch_for_small_data():
    assert default_batch_size(700) == 700
    assert default_batch_size(4096) == 4096
    assert default_batch_size(10_000) == 1024
    assert default_batch_size(100_000) == 5000
    assert default_batch_size(1_000_000) == 50_000


def test_plan_lists_every_edge_under_each_block_it_touches():
    z, edges = _graph(1000)
    plan = plan_blocks(edges, 300, torch.Generator().manual_seed(0), CPU)
    assert len(plan.bounds) == 5 and plan.bounds[0] == 0 and plan.bounds[-1] == 1000
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
    np.testing.assert_allclose(float(plan.weight.sum()), edges.weight.sum() + sum(
        w for a, b, w in zip(edges.head, edges.tail, edges.weight) if block[a] != block[b]
    ), rtol=1e-5)


def _train(z, edges, batch_size, n_epochs=30, seed=0):
    a, b = find_ab_params(1.0, 0.5)
    stack = StackedEncoder.random(z.shape[1], [32, 32], 2, seeds=[seed])
    config = TrainConfig(n_epochs, 1e-2, 5, UMAPObjective(a, b), batch_size)
    history = train_encoder(stack, z, edges, config, device=CPU, seed=seed)
    with torch.no_grad():
        return stack(torch.as_tensor(z))[0].numpy(), history[0]


def test_each_step_encodes_one_block_and_each_epoch_every_cell_once():
    z, edges = _graph(1000)
    stack = StackedEncoder.random(8, [32, 32], 2, seeds=[0])
    rows = []
    hook = stack.register_forward_hook(lambda mod, inp, out: rows.append((inp[0].shape[0], torch.is_grad_enabled())))
    a, b = find_ab_params(1.0, 0.5)
    train_encoder(stack, z, edges, TrainConfig(3, 1e-2, 5, UMAPObjective(a, b), 300), device=CPU, seed=0)
    hook.remove()
    with_grad = [r for r, grad in rows if grad]
    assert max(r for r, _ in rows) <= 300  # activations of one block only, cache included
    assert len(with_grad) == 3 * 4 and sum(with_grad) == 3 * 1000


@pytest.mark.parametrize("batch_size", [200, 10_000])
def test_block_training_is_reproducible_and_finite(batch_size):
    z, edges = _graph(600)
    y1, h1 = _train(z, edges, batch_size, seed=3)
    y2, h2 = _train(z, edges, batch_size, seed=3)
    np.testing.assert_array_equal(y1, y2)
    assert np.all(np.isfinite(h1)) and h1.shape == (30,)
    assert h1[-5:].mean() < h1[:5].mean()  # the loss goes down


@pytest.mark.slow
def test_blocks_match_full_batch_quality():
    """Six blocks per epoch, 200 epochs, as good as 300 full-batch steps on the same graph
    (small data gains nothing from blocks; bench_scale.py shows where they win)."""
    z, edges = _graph(1800)
    rng = np.random.default_rng(1)
    z = np.concatenate([z, rng.normal(size=(1800, 8)).astype(np.float32) * 0.1 + z], 1)
    edges = edges_from_connectivities(fuzzy_graph(z, n_neighbors=15, random_state=0, device=CPU))
    y_full, _ = _train(z, edges, 10_000, n_epochs=300)
    y_block, _ = _train(z, edges, 300, n_epochs=200)
    t_full = trustworthiness(z, y_full, n_neighbors=15)
    t_block = trustworthiness(z, y_block, n_neighbors=15)
    assert t_block > t_full - 0.01, (t_block, t_full)


def test_parametric_umap_records_and_checks_train_batch_size(sim):
    scelm.tl.parametric_umap(sim, n_epochs=10, hidden=(16,), train_batch_size=150, store_jacobian=False)
    params = sim.uns["elm"]["params"]
    assert params["train_batch_size"] == 150 and params["n_epochs"] == 10
    with pytest.raises(ValueError, match="train_batch_size"):
        scelm.tl.parametric_umap(sim, train_batch_size=0)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_members_train_in_threads_or_one_stack_alike(threads):
    """Both device branches of train_members (one batched stack, as on a GPU, or groups of
    members in threads, as on CPU) train every member, keep their order and leave torch's
    thread count as it was."""
    z, edges = _graph(300)
    a, b = find_ab_params(1.0, 0.5)
    start = StackedEncoder.random(8, [16], 2, seeds=range(3))
    before = torch.get_num_threads()
    stack, history = train_members(StackedEncoder.from_states(start.member_states(), "relu"), z, edges,
                                   TrainConfig(20, 1e-2, 5, UMAPObjective(a, b), 300), device=CPU, seed=0, progress=False, threads=threads)
    assert torch.get_num_threads() == before
    assert history.shape == (3, 20) and np.all(np.isfinite(history)) and np.all(history[:, -1] < history[:, 0])
    for m in range(3):  # every member moved from its own start
        assert not torch.equal(stack.weights[0][m], start.weights[0][m])
    if threads == 1:  # one stack: the members differ only by their initial weights and negatives
        assert len({round(float(h), 6) for h in history[:, -1]}) == 3


def test_member_threads_is_one_stack_on_gpu_and_a_thread_per_core_on_cpu():
    from scelm._core.train import member_threads

    assert member_threads(torch.device("cuda"), 10) == 1
    assert member_threads(CPU, 10) == min(10, torch.get_num_threads())
    assert member_threads(CPU, 1) == 1
