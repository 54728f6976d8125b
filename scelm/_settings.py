"""Package settings (``scelm.settings``), changed by assignment like ``sc.settings``."""

from __future__ import annotations


def _budget(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    return float(value)


class ScelmSettings:
    """Memory budgets, in GB.

    ``jacobian_layers_max_gb`` (1): with ``store_jacobian='auto'`` (the default), Jacobian
    layers are stored only when they take at most this much (n_obs x n_vars x n_components
    float32); above, scelm recomputes Jacobians exactly whenever needed.

    ``dense_max_gb`` (2): the largest array ``scelm.get.jacobian`` and
    ``scelm.get.contributions`` return in memory (n_obs x n_components x genes float32);
    above, they ask for ``genes=`` or ``lazy=True``.
    """

    def __init__(self):
        self._jacobian_layers_max_gb = 1.0
        self._dense_max_gb = 2.0

    @property
    def jacobian_layers_max_gb(self) -> float:
        return self._jacobian_layers_max_gb

    @jacobian_layers_max_gb.setter
    def jacobian_layers_max_gb(self, value: float) -> None:
        self._jacobian_layers_max_gb = _budget("jacobian_layers_max_gb", value)

    @property
    def dense_max_gb(self) -> float:
        return self._dense_max_gb

    @dense_max_gb.setter
    def dense_max_gb(self, value: float) -> None:
        self._dense_max_gb = _budget("dense_max_gb", value)

    def __repr__(self) -> str:
        return f"ScelmSettings(jacobian_layers_max_gb={self.jacobian_layers_max_gb}, dense_max_gb={self.dense_max_gb})"


settings = ScelmSettings()
