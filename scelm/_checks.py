"""Checks of user arguments, shared by every public function's parameter object: each
raises a ValueError or TypeError that names the argument and what it takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def seed(name: str, value, *, none_ok: bool = False) -> int | None:
    """A non-negative int seed from what scanpy's ``random_state`` takes: an int, ``None``
    (where ``none_ok``; the caller draws a fresh seed), or a numpy ``RandomState`` or
    ``Generator``, from which one seed is drawn (advancing it, as scanpy's tools do)."""
    if value is None and none_ok:
        return None
    if isinstance(value, np.random.RandomState):
        return int(value.randint(2**31 - 1))
    if isinstance(value, np.random.Generator):
        return int(value.integers(2**31 - 1))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        allowed = "an int, None" if none_ok else "an int"
        raise TypeError(f"{name} must be {allowed} or a numpy RandomState or Generator, got {type(value).__name__}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
    return int(value)


def number(name: str, value, *, minimum: float = 0.0, strict: bool = True) -> float:
    """A finite real number above ``minimum`` (or at it, when not ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
    return float(value)


def share(name: str, value) -> float:
    """A fraction strictly between 0 and 1."""
    value = number(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be a share strictly between 0 and 1, got {value!r}.")
    return value


def flag(name: str, value, *, none_ok: bool = False) -> bool | None:
    """True or False (numpy's bools too), or None where ``none_ok``: never a truthy string."""
    if value is None and none_ok:
        return None
    if not isinstance(value, (bool, np.bool_)):
        allowed = "None, True or False" if none_ok else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r}.")
    return bool(value)


def one_of(name: str, value, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}.")
    return value


def widths(name: str, value) -> tuple[int, ...]:
    """Hidden-layer widths: a sequence of positive integers, possibly empty (a linear map)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of layer widths, e.g. (128, 128), got {value!r}.")
    return tuple(positive_int(f"{name} width", w) for w in value)
