"""Example data (``scelm.datasets``)."""

from ._simulate import simulate_markers

__all__ = ["simulate_markers"]
