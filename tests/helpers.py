"""Shared test settings and checks."""

import numpy as np

# Tiny network, few epochs: tests check properties, not embedding quality.
FAST = dict(n_epochs=30, hidden=(32, 32), n_models=1)


def _array(x) -> np.ndarray:
    return np.asarray(x.detach() if hasattr(x, "detach") else x)


def rel_err(a, b) -> float:
    """Max absolute difference relative to the largest magnitude of ``b`` (arrays or tensors)."""
    a, b = _array(a), _array(b)
    return float(np.abs(a - b).max() / np.abs(b).max())
