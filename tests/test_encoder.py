"""The ELM invariants of the bias-free encoder, and the loss gradient."""

import numpy as np
import pytest
import torch
from helpers import rel_err

from scelm._core.alignment import procrustes_alignment
from scelm._core.encoder import ACTIVATIONS, ConsensusEncoder, StackedEncoder
from scelm._core.loss import Pairs, attraction, umap_loss_and_gradient


def _stack(activation, seed=0, n_members=3):
    enc = StackedEncoder.random(7, [16, 9], 3, seeds=range(seed, seed + n_members), activation=activation, negative_slope=0.2)
    enc = enc.double()
    if activation == "prelu":
        with torch.no_grad():
            enc.slopes.copy_(torch.tensor([[0.3, -0.1], [0.1, 0.2], [-0.2, 0.05]], dtype=torch.float64)[:n_members])
    return enc


def _consensus(activation, seed=0):
    """Three members, each turned by its own random orthogonal matrix."""
    rng = np.random.default_rng(seed)
    rotations = torch.as_tensor(np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(3)]))
    return ConsensusEncoder(_stack(activation, seed), rotations)


# Float64 rounding differs between CPUs and a coordinate near zero can come from a large
# cancelling sum, so closeness is judged against each array's largest magnitude (rel_err).
TOL = 1e-11


def _inputs(n, seed):
    return torch.randn(n, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_positive_homogeneity(activation, seed):
    enc = _consensus(activation, seed)
    z = _inputs(50, seed)
    for alpha in [1e-3, 0.5, 3.0, 1e4]:
        assert rel_err(enc(alpha * z), alpha * enc(z)) < TOL
        assert rel_err(enc.members(alpha * z), alpha * enc.members(z)) < TOL


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_consensus_jacobian_equals_autograd_and_reconstructs(activation, seed):
    enc = _consensus(activation, seed)
    z = _inputs(20, seed)
    y, J = enc.forward_with_jacobian(z)
    for i in range(z.shape[0]):
        Ja = torch.autograd.functional.jacobian(enc, z[i : i + 1]).squeeze(0).squeeze(1)
        assert rel_err(J[i], Ja) < TOL
    assert rel_err(torch.einsum("bdi,bi->bd", J, z), y) < TOL
    assert rel_err(y, enc(z)) < TOL


def test_consensus_is_the_mean_of_the_aligned_members():
    enc = _consensus("leaky_relu", seed=1)
    z = _inputs(11, 1)
    raw = enc.members(z)
    aligned, J = enc.aligned_with_jacobian(z)
    torch.testing.assert_close(aligned, torch.einsum("mkd,mbd->mbk", enc.alignment, raw))
    torch.testing.assert_close(aligned.mean(0), enc(z))
    assert rel_err(torch.einsum("mbdi,bi->mbd", J, z), aligned) < TOL
    _, Jm = enc.members.forward_with_jacobian(z)
    for m in range(3):  # each member's Jacobian, turned
        torch.testing.assert_close(J[m], torch.einsum("kd,bdi->bki", enc.alignment[m], Jm[m]))


def test_procrustes_recovers_known_rotations():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 2)) * [3.0, 1.0]
    turns = [np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) for t in (0.0, 0.4, -0.7)]
    turns.append(np.diag([1.0, -1.0]))  # a reflection
    maps = np.stack([base @ t.T + rng.normal(scale=0.01, size=base.shape) + rng.normal(size=2) for t in turns])
    R = procrustes_alignment(maps)
    aligned = np.einsum("mkd,mnd->mnk", R, maps - maps.mean(1, keepdims=True))
    assert np.abs(aligned - aligned.mean(0)).max() < 0.1  # one frame, up to the noise
    np.testing.assert_allclose(np.einsum("mij,mkj->mik", R, R), np.broadcast_to(np.eye(2), (4, 2, 2)), atol=1e-12)
    S = R.sum(0)  # the frame closest to the members' own: sum of R_m symmetric, positive
    np.testing.assert_allclose(S, S.T, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(S) >= -1e-12)
    same = procrustes_alignment(np.stack([base, base]))
    np.testing.assert_allclose(same, np.broadcast_to(np.eye(2), (2, 2, 2)), atol=1e-12)


def test_encoder_has_no_bias_or_norm():
    enc = _stack("relu")
    names = [n for n, _ in enc.named_parameters()]
    assert all(n.startswith("weights.") for n in names)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm1d)) for m in enc.modules())


def test_numpy_round_trip_draws_no_random_numbers():
    enc = _stack("prelu").float()
    state = torch.get_rng_state()
    back = StackedEncoder.from_states(enc.member_states(), "prelu")
    assert torch.equal(torch.get_rng_state(), state)  # the user's random stream is left alone
    z = _inputs(5, 0).float()
    torch.testing.assert_close(back(z), enc(z))


def test_members_have_their_own_initial_weights():
    a = StackedEncoder.random(7, [16], 2, seeds=[1, 2])
    b = StackedEncoder.random(7, [16], 2, seeds=[2])
    torch.testing.assert_close(a.weights[0][1], b.weights[0][0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


def test_linear_encoder_without_hidden_layers():
    enc = StackedEncoder.random(7, [], 2, seeds=[0, 1])
    z = _inputs(4, 0).float()
    y, J = ConsensusEncoder(enc).forward_with_jacobian(z)
    torch.testing.assert_close(J[0], enc.weights[0].mean(0))
    torch.testing.assert_close(torch.einsum("bdi,bi->bd", J, z), y)


def test_closed_form_gradient_equals_autograd():
    g = torch.Generator().manual_seed(0)
    n = 40
    y = torch.randn(n, 2, dtype=torch.float64, generator=g, requires_grad=True)
    head = torch.randint(0, n, (120,), generator=g)
    tail = (head + torch.randint(1, n, (120,), generator=g)) % n
    w = torch.rand(120, dtype=torch.float64, generator=g)
    nh = torch.arange(n).repeat_interleave(3)
    nt = torch.randint(0, n, (3 * n,), generator=g)
    nw = torch.rand(3 * n, dtype=torch.float64, generator=g)
    a, b, gamma = 1.58, 0.9, 0.7
    d2 = (y[head] - y[tail]).pow(2).sum(1)
    nd2 = (y[nh] - y[nt].detach()).pow(2).sum(1)  # a negative moves its head only, as in umap-learn
    # -log q and -log(1 - q), q = 1 / (1 + a d^2b), softened at d = 0 as umap-learn does
    ref = ((w * torch.log1p(a * d2.pow(b))).sum() + gamma * (nw * torch.log1p(1 / (a * (nd2 + 1e-3).pow(b)))).sum()) / w.sum()
    ref.backward()
    pairs = Pairs(head, tail, w, nh, nt, nw, scale=w.sum().reshape(1), n_cells=n, negative_sample_rate=3)
    loss, grad = umap_loss_and_gradient(y, pairs, a=a, b=b, repulsion_strength=gamma)
    assert abs(float(loss[0]) - float(ref.detach())) < 1e-12
    assert rel_err(grad, y.grad) < 1e-10
    # At full batch the negatives' net push is removed: every force then sums to zero, so the map does not
    # drift, and what is removed is one shift common to every head (a translation of the map).
    pairs.remove_net_push = True
    _, centred = umap_loss_and_gradient(y, pairs, a=a, b=b, repulsion_strength=gamma)
    assert float(centred.sum(0).abs().max()) < 1e-12 < float(grad.sum(0).abs().max())
    assert rel_err(centred - grad, (centred - grad)[nh[0]].expand_as(grad) * (torch.bincount(nh, minlength=n) > 0)[:, None]) < 1e-10


def test_umap_kernel_is_not_capped():
    """q = 1 / (1 + a d^2b) reaches 1 at d = 0 (the Keras form caps it at 0.5)."""
    d2 = torch.tensor([0.0, 1e-8])
    q = torch.exp(-attraction(d2.clamp_min(1e-12).pow(0.9), 1.58))
    assert float(q.min()) > 0.999
