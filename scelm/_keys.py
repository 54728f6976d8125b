"""Every AnnData key scelm writes or reads by default, derived in one place (like squidpy's
key registry): a model's keys from its ``key_added``, results' keys from what they describe."""

from __future__ import annotations

DEFAULT_KEY = "elm"
DEFAULT_RANK_KEY = "rank_genes_elm"


def embedding_key(key: str) -> str:
    """``obsm`` key of the embedding: ``X_{key}`` so ``sc.pl.embedding(basis=key)`` works."""
    return f"X_{key}"


def jacobian_layer(key: str, component: int) -> str:
    """``layers`` key of the Jacobian row of one embedding axis."""
    return f"{key}_jacobian_{component}"


def jacobian_layers(key: str, n_components: int) -> list[str]:
    return [jacobian_layer(key, k) for k in range(n_components)]


def perturbation_key(elm_key: str) -> str:
    """``uns`` key of :func:`scelm.tl.perturb`'s result for a model."""
    return f"{elm_key}_perturbation"


def deletion_key(key: str) -> str:
    """``uns`` key of :func:`scelm.tl.deletion_curve`'s result for a ranking."""
    return f"{key}_deletion"
