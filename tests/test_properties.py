"""Property-based checks of the ELM invariants over random encoders and inputs."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scelm._core.encoder import ACTIVATIONS, ELMEncoder
from scelm._core.frontend import LinearFrontEnd
from scelm._core.jacobian import iter_batches

encoders = st.builds(
    lambda n_in, hidden, n_out, act, seed, slope: (
        ELMEncoder(n_in, hidden, n_out, activation=act, negative_slope=slope,
                   generator=torch.Generator().manual_seed(seed)).double()
    ),
    n_in=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 24), min_size=0, max_size=3),
    n_out=st.integers(1, 3),
    act=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 2**31 - 1),
    slope=st.floats(-0.5, 0.5),
)


@settings(max_examples=60, deadline=None)
@given(enc=encoders, seed=st.integers(0, 2**31 - 1), alpha=st.floats(1e-3, 1e3), scale=st.floats(1e-3, 1e3))
def test_homogeneity_and_exact_sum(enc, seed, alpha, scale):
    z = torch.randn(9, enc.n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * scale
    y, J = enc.forward_with_jacobian(z)
    tol = 1e-9 * (1 + float(y.abs().max()))
    assert float((enc(alpha * z) - alpha * y).abs().max()) <= alpha * tol
    assert float((torch.einsum("bdi,bi->bd", J, z) - y).abs().max()) <= tol


@settings(max_examples=30, deadline=None)
@given(enc=encoders, seed=st.integers(0, 2**31 - 1))
def test_jacobian_equals_autograd(enc, seed):
    z = torch.randn(3, enc.n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    _, J = enc.forward_with_jacobian(z)
    for i in range(3):
        Ja = torch.autograd.functional.jacobian(enc, z[i : i + 1]).reshape(enc.n_out, enc.n_in)
        assert torch.allclose(J[i], Ja, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_genes=st.integers(1, 30),
    n_in=st.integers(1, 8),
    centred=st.booleans(),
    batch=st.integers(1, 7),
)
def test_gene_space_contributions_sum_to_embedding(seed, n_genes, n_in, centred, batch):
    rng = np.random.default_rng(seed)
    fe = LinearFrontEnd(
        loadings=rng.normal(size=(n_genes, n_in)).astype(np.float32),
        reference=(rng.normal(size=n_genes) if centred else np.zeros(n_genes)).astype(np.float32),
    )
    enc = ELMEncoder(n_in, [16], 2, generator=torch.Generator().manual_seed(seed % 1000))
    X = rng.exponential(size=(11, n_genes)).astype(np.float32)
    for b in iter_batches(fe, enc, X, device=torch.device("cpu"), batch_size=batch):
        total = b.contributions().sum(-1)
        assert torch.allclose(total, b.embedding, rtol=1e-4, atol=1e-4 * (1 + float(b.embedding.abs().max())))
