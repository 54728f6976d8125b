"""Shared test settings and checks."""

import numpy as np

# Tiny network, few epochs: tests check properties, not embedding quality.
FAST = dict(n_epochs=30, hidden=(32, 32), n_models=1)


def rel_err(a, b) -> float:
    """Max absolute difference relative to the largest magnitude of ``b``."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
