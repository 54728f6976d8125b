"""The validated parameters of one ``parametric_umap`` call, with the size-dependent
defaults resolved: built once, read everywhere, never changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from anndata import AnnData

from .._core.options import ACTIVATIONS, INITS, KNN_METHODS, PRECISIONS

# Ensemble members trained together by default where training is full batch. Measured on
# pbmc68k_reduced, 5 seeds (benchmarks/bench_trust.py): top-10 agreement across seeds 0.38
# with v0.1's settings, 0.64 with 3 models, 0.71 with 5. Above FULL_BATCH_MAX cells each
# member costs about one more fit: one model by default.
DEFAULT_MODELS = 5


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def default_epochs(n_obs: int, batch_size: int, init: str) -> int:
    # Measured with benchmarks/bench_speed.py (3 seeds; trustworthiness and 15-NN accuracy
    # against the 0.2 defaults, 400 full-batch / 300 block epochs):
    # - full batch is one step per epoch: from a starting layout, 300 stay within 0.005 of
    #   400 at 1,000 and 3,000 simulated cells, where 200 lose 0.011-0.026 (on pbmc68k_reduced
    #   200 were enough); so n / 10 clipped to [300, 400], which keeps 400 near 4,096 cells.
    #   From random weights the map needs longer to settle (umap-learn: 500), 600;
    # - in blocks (20 steps per epoch), 200 epochs stay within 0.006 of 300 at 10,000 cells.
    if n_obs <= batch_size:
        return 600 if init == "random" else int(np.clip(round(n_obs / 10), 300, 400))
    return 200


def _check_init(adata: AnnData, init, n_components: int) -> None:
    if not isinstance(init, str):
        raise TypeError(f"init must be 'pca', 'spectral', 'random' or an obsm key, got {type(init).__name__}.")
    if init in INITS:
        return
    if init not in adata.obsm:
        raise KeyError(f"init={init!r} is neither one of {INITS} nor a key of adata.obsm ({list(adata.obsm)}).")
    shape = np.shape(adata.obsm[init])
    if len(shape) != 2 or shape[1] < n_components:
        raise ValueError(f"adata.obsm[{init!r}] has shape {shape}; init needs at least n_components={n_components} columns.")


def _check_numbers(min_dist, spread, learning_rate, repulsion_strength, weight_decay) -> None:
    for name, value in [("spread", spread), ("learning_rate", learning_rate), ("repulsion_strength", repulsion_strength)]:
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    for name, value in [("min_dist", min_dist), ("weight_decay", weight_decay)]:
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    if min_dist > spread:
        raise ValueError(f"min_dist ({min_dist}) must not exceed spread ({spread}).")


@dataclass(frozen=True)
class FitParams:
    """Everything ``parametric_umap`` was asked for, checked; ``None`` defaults resolved."""

    n_components: int
    min_dist: float
    spread: float
    n_neighbors: int
    knn: str
    neighbors_key: str | None
    n_epochs: int
    train_batch_size: int
    learning_rate: float
    negative_sample_rate: int
    repulsion_strength: float
    init: str
    weight_decay: float
    hidden: tuple[int, ...]
    activation: str
    n_pcs: int | None
    use_rep: str | None
    center: bool
    layer: str | None
    use_raw: bool | None
    mask_var: str | np.ndarray | None
    store_jacobian: bool | str
    jacobian_genes: Sequence[str] | None
    n_models: int
    precision: str
    seed: int
    chunk_size: int

    @classmethod
    def from_args(cls, adata: AnnData, *, n_epochs, train_batch_size, n_models, random_state, **kw) -> FitParams:
        from .._core.train import default_batch_size

        if adata.n_obs < 3:
            raise ValueError(f"parametric_umap needs at least 3 cells, got {adata.n_obs}.")
        if kw["activation"] not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {kw['activation']!r}.")
        if kw["knn"] not in KNN_METHODS:
            raise ValueError(f"knn must be one of {KNN_METHODS}, got {kw['knn']!r}.")
        if kw["precision"] not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {kw['precision']!r}.")
        _check_numbers(kw["min_dist"], kw["spread"], kw["learning_rate"], kw["repulsion_strength"], kw["weight_decay"])
        for name in ("n_components", "negative_sample_rate", "chunk_size"):
            kw[name] = check_positive_int(name, kw[name])
        _check_init(adata, kw["init"], kw["n_components"])
        kw["hidden"] = tuple(check_positive_int("hidden width", h) for h in kw["hidden"])
        kw["n_pcs"] = None if kw["n_pcs"] is None else check_positive_int("n_pcs", kw["n_pcs"])
        block = default_batch_size(adata.n_obs) if train_batch_size is None else check_positive_int("train_batch_size", train_batch_size)
        full_batch = adata.n_obs <= block
        return cls(
            **kw,
            train_batch_size=block,
            n_epochs=default_epochs(adata.n_obs, block, kw["init"]) if n_epochs is None else check_positive_int("n_epochs", n_epochs),
            n_models=(DEFAULT_MODELS if full_batch else 1) if n_models is None else check_positive_int("n_models", n_models),
            seed=int(np.random.SeedSequence(random_state).generate_state(1)[0]) if random_state is None else int(random_state),
        )

    def member_seeds(self) -> list[int]:
        return member_seeds(self.seed, self.n_models)


def member_seeds(seed: int, n_models: int) -> list[int]:
    """Initial-weight seeds of an ensemble's models: independent streams of ``seed``
    (``seed + i`` would make random_state=0 and 1 share models)."""
    return [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(n_models)]
