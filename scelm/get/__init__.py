"""Accessors (``scelm.get``): Jacobians and contributions as arrays."""

from ._elm import contributions, jacobian

__all__ = ["jacobian", "contributions"]
