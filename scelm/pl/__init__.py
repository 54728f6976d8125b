"""Plots (``scelm.pl``)."""

__all__: list[str] = []
