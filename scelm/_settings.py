"""Package settings (``scelm.settings``), changed by assignment like ``sc.settings``."""

from __future__ import annotations


class _Budget:
    """A setting in GB: a number >= 0, checked on assignment."""

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, obj, objtype=None):
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{self.name} must be a number >= 0, got {value!r}.")
        obj.__dict__[self.name] = float(value)


class ScelmSettings:
    """Memory budgets, in GB.

    ``jacobian_layers_max_gb`` (1): with ``store_jacobian='auto'`` (the default), Jacobian
    layers are stored only when they take at most this much (n_obs x n_vars x n_components
    float32); above, scelm recomputes Jacobians exactly whenever needed.

    ``dense_max_gb`` (2): the largest array ``scelm.get.jacobian`` and
    ``scelm.get.contributions`` return in memory (n_obs x n_components x genes float32);
    above, they ask for ``genes=`` or ``lazy=True``.
    """

    jacobian_layers_max_gb = _Budget()
    dense_max_gb = _Budget()

    def __init__(self):
        self.jacobian_layers_max_gb = 1.0
        self.dense_max_gb = 2.0

    def __repr__(self) -> str:
        return f"ScelmSettings(jacobian_layers_max_gb={self.jacobian_layers_max_gb}, dense_max_gb={self.dense_max_gb})"


settings = ScelmSettings()
