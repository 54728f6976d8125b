"""Every AnnData key scelm writes, derived from one ``key_added`` in one place."""

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
