"""The ELM invariants of the bias-free encoder, and the loss gradient."""

import numpy as np
import pytest
import torch

from scelm._core.encoder import ACTIVATIONS, ELMEncoder
from scelm._core.loss import attraction, repulsion, umap_loss_and_gradient


def _encoder(activation, seed=0):
    enc = ELMEncoder(7, [16, 9], 3, activation=activation, negative_slope=0.2,
                     generator=torch.Generator().manual_seed(seed)).double()
    if activation == "prelu":
        with torch.no_grad():
            enc.slopes.copy_(torch.tensor([0.3, -0.1], dtype=torch.float64))
    return enc


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_positive_homogeneity(activation):
    enc = _encoder(activation)
    z = torch.randn(50, 7, dtype=torch.float64)
    for alpha in [1e-3, 0.5, 3.0, 1e4]:
        torch.testing.assert_close(enc(alpha * z), alpha * enc(z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_jacobian_equals_autograd_and_reconstructs(activation):
    enc = _encoder(activation, seed=3)
    z = torch.randn(20, 7, dtype=torch.float64)
    y, J = enc.forward_with_jacobian(z)
    for i in range(z.shape[0]):
        Ja = torch.autograd.functional.jacobian(enc, z[i : i + 1]).squeeze(0).squeeze(1)
        torch.testing.assert_close(J[i], Ja, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.einsum("bdi,bi->bd", J, z), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, enc(z))


def test_encoder_has_no_bias_or_norm():
    enc = _encoder("relu")
    names = [n for n, _ in enc.named_parameters()]
    assert all(n.startswith("weights.") for n in names)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm1d)) for m in enc.modules())


def test_numpy_round_trip():
    enc = _encoder("prelu").float()
    back = ELMEncoder.from_numpy(enc.state_to_numpy(), "prelu")
    z = torch.randn(5, 7)
    torch.testing.assert_close(back(z), enc(z))


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
    nd2 = (y[nh] - y[nt]).pow(2).sum(1)
    ref = ((w * attraction(d2, a, b)).sum() + gamma * (nw * repulsion(nd2, a, b)).sum()) / w.sum()
    ref.backward()
    loss, grad = umap_loss_and_gradient(y, head, tail, w, nh, nt, nw, a=a, b=b, repulsion_strength=gamma)
    assert abs(float(loss) - float(ref.detach())) < 1e-12
    np.testing.assert_allclose(grad.numpy(), y.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_umap_kernel_is_not_capped():
    """q = 1 / (1 + a d^2b) reaches 1 at d = 0 (the Keras form caps it at 0.5)."""
    d2 = torch.tensor([0.0, 1e-8])
    q = torch.exp(-attraction(d2, 1.58, 0.9))
    assert float(q.min()) > 0.999
