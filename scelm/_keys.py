"""Every AnnData key scelm writes or reads by default, derived in one place (like squidpy's
key registry): a model's keys from its ``key_added``, results' keys from what they describe."""

from __future__ import annotations

import re

DEFAULT_KEY = "elm"
DEFAULT_RANK_KEY = "rank_genes_elm"
# uns[key][JACOBIAN_GENES]: the genes whose Jacobian layers are stored, when not all of them.
JACOBIAN_GENES = "jacobian_genes"
# uns[key][FIDELITY]: how closely an explain_embedding model reproduces the map it explains.
FIDELITY = "fidelity"


def embedding_key(key: str) -> str:
    """``obsm`` key of the embedding: ``X_{key}`` so ``sc.pl.embedding(basis=key)`` works."""
    return f"X_{key}"


def jacobian_layer(key: str, component: int) -> str:
    """``layers`` key of the Jacobian row of one embedding axis."""
    return f"{key}_jacobian_{component}"


def jacobian_layers(key: str, n_components: int) -> list[str]:
    return [jacobian_layer(key, k) for k in range(n_components)]


def is_jacobian_layer(key: str, name: str) -> bool:
    """Whether ``layers[name]`` is a Jacobian layer of the model ``key`` (any axis)."""
    return re.fullmatch(rf"{re.escape(key)}_jacobian_\d+", name) is not None


def perturbation_key(elm_key: str) -> str:
    """``uns`` key of :func:`scelm.tl.perturb`'s result for a model."""
    return f"{elm_key}_perturbation"


def deletion_key(key: str) -> str:
    """``uns`` key of :func:`scelm.tl.deletion_curve`'s result for a ranking."""
    return f"{key}_deletion"


def explained_key(basis: str) -> str:
    """Default ``key_added`` of :func:`scelm.tl.explain_embedding` for a basis."""
    return f"elm_{basis.removeprefix('X_')}"


def held_out_key(key: str) -> str:
    """``obs`` column flagging the cells an explain_embedding fit held out."""
    return f"{key}_held_out"
