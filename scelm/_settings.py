"""Package settings (``scelm.settings``), changed by assignment like ``sc.settings``."""

from __future__ import annotations


class ScelmSettings:
    """``jacobian_layers_max_gb``: with ``store_jacobian='auto'`` (the default), Jacobian
    layers are stored only when they take at most this many GB (n_obs x n_vars x
    n_components float32); above, scelm recomputes Jacobians exactly whenever needed."""

    def __init__(self):
        self._jacobian_layers_max_gb = 1.0

    @property
    def jacobian_layers_max_gb(self) -> float:
        return self._jacobian_layers_max_gb

    @jacobian_layers_max_gb.setter
    def jacobian_layers_max_gb(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"jacobian_layers_max_gb must be a number >= 0, got {value!r}.")
        self._jacobian_layers_max_gb = float(value)

    def __repr__(self) -> str:
        return f"ScelmSettings(jacobian_layers_max_gb={self.jacobian_layers_max_gb})"


settings = ScelmSettings()
