"""Property-based checks of the ELM invariants over random encoders and inputs."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scelm._core.encoder import ACTIVATIONS, ConsensusEncoder, StackedEncoder
from scelm._core.frontend import LinearFrontEnd
from scelm._core.jacobian import Batch, iter_batches, iter_member_batches
from scelm._core.model import ELMModel


def _consensus(n_in, hidden, n_out, act, seed, slope, n_members):
    """A consensus of ``n_members`` random members, each turned by a random orthogonal matrix."""
    rng = np.random.default_rng(seed)
    turns = torch.as_tensor(np.stack([np.linalg.qr(rng.normal(size=(n_out, n_out)))[0] for _ in range(n_members)]))
    members = StackedEncoder.random(n_in, hidden, n_out, seeds=range(seed, seed + n_members), activation=act, negative_slope=slope)
    return ConsensusEncoder(members.double(), turns)


encoders = st.builds(
    _consensus,
    n_in=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 24), min_size=0, max_size=3),
    n_out=st.integers(1, 3),
    act=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 2**30),
    slope=st.floats(-0.5, 0.5),
    n_members=st.integers(1, 4),
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
    seed=st.integers(0, 2**30),
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
    members = StackedEncoder.random(n_in, [16], 2, seeds=[seed % 1000, seed % 1000 + 1])
    model = ELMModel(fe, members.member_states(), np.stack([np.eye(2), [[0.0, -1.0], [1.0, 0.0]]]), "relu")
    X = rng.exponential(size=(11, n_genes)).astype(np.float32)
    W = torch.as_tensor(fe.loadings)
    consensus = iter_batches(model, X, device=torch.device("cpu"), batch_size=batch)
    members = iter_member_batches(model, X, device=torch.device("cpu"), batch_size=batch)
    for b in [*consensus, *members]:
        # The members' Jacobians come in the encoder's input space: J = J_z W^T in genes.
        contributions = b.contributions() if isinstance(b, Batch) else (b.jacobian_z @ W.T) * b.centred[:, None, None, :]
        total = contributions.sum(-1)
        assert torch.allclose(total, b.embedding, rtol=1e-4, atol=1e-4 * (1 + float(b.embedding.abs().max())))
