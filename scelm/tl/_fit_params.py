"""The validated parameters of one ``parametric_umap`` or ``parametric_tsne`` call, with
the size-dependent defaults resolved: built once from the call's arguments, read everywhere, never changed;
the parameters stored with the model derive from it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
from anndata import AnnData

from .. import _checks
from .._core.options import ACTIVATIONS, INITS, KNN_METHODS, PRECISIONS

# Ensemble members by default, and their width. Measured with benchmarks/bench_trust.py
# (top-10 agreement of rank_genes_elm across seeds; docs/trust.md): members of width 64 are
# as stable as members of width 128 and cost a third, and the agreement grows with the
# members, as the time does (3 seeds, mean-cell reference): pbmc68k_reduced 0.78 (10
# members), 0.86 (20, 1.6x the time); 10,000 simulated cells 0.83 (4), 0.94 (10, 2.3x),
# 0.96 (20, 4.6x); 50,000 cells 0.89 (4), 0.91 (10, 2.3x). Each member costs about half a
# one-model fit on 2 cores: above full batch, 4 members keep the fit within 0.5-2.2x
# sc.tl.umap's time from 10,000 to 200,000 cells (docs/benchmarks.md).
DEFAULT_HIDDEN = (64, 64)
DEFAULT_NEIGHBORS = 15
MEMBERS_BY_SIZE = ((4096, 10),)  # (up to n_obs cells, members); above: MEMBERS_ABOVE
MEMBERS_ABOVE = 4
BASE_LEARNING_RATE = 1e-2
REFERENCE_STEPS = 2000  # optimizer steps of a 10,000-cell fit, whose stability the rate keeps
# In blocks: about BLOCK_STEPS optimizer steps, in MIN_BLOCK_EPOCHS to MAX_BLOCK_EPOCHS epochs.
BLOCK_STEPS = 4000
MAX_BLOCK_EPOCHS, MIN_BLOCK_EPOCHS = 200, 20


def default_members(n_obs: int) -> int:
    return next((members for size, members in MEMBERS_BY_SIZE if n_obs <= size), MEMBERS_ABOVE)


def default_epochs(n_obs: int, init: str) -> int:
    # Measured with benchmarks/bench_speed.py --epochs (3 seeds, default members; docs/scale.md):
    # - full batch is one step per epoch: from a starting layout, 300 stay within 0.004 of
    #   400 at pbmc68k_reduced, 1,000 and 3,000 simulated cells; so n / 10 clipped to
    #   [300, 400], which keeps 400 near 4,096 cells. From random weights the map needs
    #   longer to settle (umap-learn: 500), 600;
    # - in blocks, 200 epochs come within 0.011 of 300 at 10,000 cells, whose rankings agree
    #   across seeds at 0.57 against 200's 0.79. Above 20,480 cells, where 200 epochs would
    #   take more than BLOCK_STEPS steps, the epochs fall so that the steps stay about
    #   BLOCK_STEPS (bench_trust.py; docs/trust.md), but not below MIN_BLOCK_EPOCHS: each
    #   epoch refreshes the cached places of the cells a step reads, and at a million cells
    #   4 epochs drew a map 0.03 less trustworthy than umap-learn's (bench_scale.py --atlas),
    #   where 20 at 200,000 cells came within 0.009.
    # A function of n_obs alone, so that train_batch_size changes nothing else.
    from .._core.train import FULL_BATCH_MAX

    if n_obs <= FULL_BATCH_MAX:
        return 600 if init == "random" else int(np.clip(round(n_obs / 10), 300, 400))
    return int(np.clip(round(BLOCK_STEPS / _default_blocks(n_obs)), MIN_BLOCK_EPOCHS, MAX_BLOCK_EPOCHS))


def default_learning_rate(n_obs: int) -> float:
    # Where the weights settle depends more on the seed the further they travel, which grows
    # with the learning rate times the optimizer steps. A 10,000-cell fit takes 2,000 steps
    # (10 blocks an epoch, 200 epochs); from 20,000 cells on the default steps double that.
    # Scaling the rate down to keep the 10,000-cell fit's product (bench_trust.py, 3 seeds;
    # docs/trust.md): with center=False it lifted top-10 agreement across seeds from 0.48 to
    # 0.64 at 50,000 simulated cells and 0.22 to 0.44 at 200,000; with the mean cell as the
    # reference 0.01, 0.005 and 0.0025 agree alike at 50,000 cells (0.89-0.91; 2,500-cell
    # blocks) and 0.005 draws the map closest to sc.tl.umap's (trustworthiness 0.930
    # against 0.925, 0.924).
    # A function of n_obs alone, like default_epochs.
    steps = _default_blocks(n_obs) * default_epochs(n_obs, "pca")
    return BASE_LEARNING_RATE * min(1.0, REFERENCE_STEPS / steps)


def _default_blocks(n_obs: int) -> int:
    from .._core.train import default_batch_size

    return math.ceil(n_obs / default_batch_size(n_obs))


def _check_init(adata: AnnData, init, n_components: int) -> str:
    if not isinstance(init, str):
        raise TypeError(f"init must be 'pca', 'spectral', 'random' or an obsm key, got {type(init).__name__}.")
    if init in INITS:
        return init
    if init not in adata.obsm:
        raise KeyError(f"init={init!r} is neither one of {INITS} nor a key of adata.obsm ({list(adata.obsm)}).")
    shape = np.shape(adata.obsm[init])
    if len(shape) != 2 or shape[1] < n_components:
        raise ValueError(f"adata.obsm[{init!r}] has shape {shape}; init needs at least n_components={n_components} columns.")
    return init


def _check_members(n_models, init: str, n_obs: int) -> int:
    """Members of the ensemble. From random weights (``init='random'``) each member finds its
    own arrangement of the clusters, which no rotation brings onto another's, so their
    consensus would be a blur: one model only."""
    from scanpy import logging as logg

    if init != "random":
        return default_members(n_obs) if n_models is None else _checks.positive_int("n_models", n_models)
    if n_models is None:
        logg.warning("init='random': fitting one model (members from random starts share no layout to average).")
        return 1
    if _checks.positive_int("n_models", n_models) > 1:
        raise ValueError(
            f"init='random' with n_models={n_models}: members from random starts lay the clusters out differently and "
            "their consensus would blur them. Pass n_models=1, or a shared start (init='pca', 'spectral' or an obsm key)."
        )
    return 1


def _check_batch_key(adata: AnnData, batch_key) -> str | None:
    from .._input import frame_column

    if batch_key is None:
        return None
    if not isinstance(batch_key, str):
        raise TypeError(f"batch_key must be the name of an obs column, got {type(batch_key).__name__}.")
    if batch_key not in adata.obs.columns:
        raise KeyError(f"batch_key={batch_key!r} is not a column of adata.obs; available: {list(adata.obs.columns)}.")
    col = frame_column(adata.obs, batch_key)
    if col.isna().any():
        raise ValueError(f"adata.obs[{batch_key!r}] has {int(col.isna().sum())} missing values; every cell needs a batch.")
    if col.nunique() < 2:
        raise ValueError(f"adata.obs[{batch_key!r}] holds one batch only; batch_key needs at least two.")
    return batch_key


def _check_neighbors_key(value, *, false_ok: bool = True) -> str | None | bool:
    if value is None or isinstance(value, str) or (false_ok and value is False):
        return value
    allowed = "a key of adata.uns, None or False" if false_ok else "a key of adata.uns or None"
    raise TypeError(f"neighbors_key must be {allowed}, got {value!r}.")


@dataclass(frozen=True)
class EncoderParams:
    """What every embedding fit was asked for, checked; ``None`` defaults resolved (see
    :class:`UMAPParams` and :class:`TSNEParams` for what each fit adds). ``explicit`` names
    the graph arguments the caller set (a stored graph overrides them)."""

    n_components: int
    knn: str
    n_epochs: int
    train_batch_size: int
    learning_rate: float
    negative_sample_rate: int
    init: str
    weight_decay: float
    hidden: tuple[int, ...]
    activation: str
    n_pcs: int | None
    use_rep: str | None
    batch_key: str | None
    center: bool
    layer: str | None
    use_raw: bool | None
    mask_var: str | np.ndarray | None
    store_jacobian: bool | str
    jacobian_genes: Sequence[str] | None
    n_models: int
    precision: str
    random_state: int
    chunk_size: int
    explicit: frozenset[str]

    @classmethod
    def from_call(cls, adata: AnnData, arguments: dict) -> EncoderParams:
        """Check the arguments of a call (``locals()`` of the public function) and resolve
        the size-dependent defaults."""
        from .._core.train import default_batch_size

        a = {f.name: arguments[f.name] for f in fields(cls) if f.name in arguments}
        n_obs = adata.n_obs
        if n_obs < 3:
            raise ValueError(f"An embedding needs at least 3 cells, got {n_obs}.")
        a["explicit"] = frozenset(k for k in ("n_neighbors", "knn") if a.get(k) is not None)
        a["knn"] = _checks.one_of("knn", "auto" if a["knn"] is None else a["knn"], KNN_METHODS)
        a["activation"] = _checks.one_of("activation", a["activation"], ACTIVATIONS)
        a["precision"] = _checks.one_of("precision", a["precision"], PRECISIONS)
        a["center"] = _checks.flag("center", a["center"])
        a["use_raw"] = _checks.flag("use_raw", a["use_raw"], none_ok=True)
        lr = a["learning_rate"]
        a["learning_rate"] = default_learning_rate(n_obs) if lr is None else _checks.number("learning_rate", lr)
        a["weight_decay"] = _checks.number("weight_decay", a["weight_decay"], strict=False)
        for name in ("n_components", "negative_sample_rate", "chunk_size"):
            a[name] = _checks.positive_int(name, a[name])
        a["init"] = _check_init(adata, a["init"], a["n_components"])
        a["hidden"] = _checks.widths("hidden", a["hidden"])
        a["n_pcs"] = None if a["n_pcs"] is None else _checks.positive_int("n_pcs", a["n_pcs"])
        given = a["train_batch_size"]
        a["train_batch_size"] = min(n_obs, default_batch_size(n_obs) if given is None else _checks.positive_int("train_batch_size", given))
        a["n_epochs"] = cls.default_epochs(n_obs, a["init"]) if a["n_epochs"] is None else _checks.positive_int("n_epochs", a["n_epochs"])
        a["n_models"] = _check_members(a["n_models"], a["init"], n_obs)
        a["batch_key"] = _check_batch_key(adata, a["batch_key"])
        seed = _checks.seed("random_state", a["random_state"], none_ok=True)
        a["random_state"] = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else seed
        return cls(**cls.check_own(adata, a))

    @staticmethod
    def default_epochs(n_obs: int, init: str) -> int:
        return default_epochs(n_obs, init)

    @staticmethod
    def check_own(adata: AnnData, a: dict) -> dict:
        """Check the fields a subclass adds (``a``: every argument, the common ones checked)."""
        return a

    def member_seeds(self) -> list[int]:
        return member_seeds(self.random_state, self.n_models)

    def stored(self, **resolved) -> dict:
        """The parameters stored with the model: every checked argument that describes the
        fit (not how its outputs are stored), updated with what the fit ``resolved``."""
        skip = {"mask_var", "store_jacobian", "jacobian_genes", "chunk_size", "explicit", "neighbors_key"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["hidden"] = np.asarray(self.hidden, dtype=np.int64)
        out.update(resolved)
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class UMAPParams(EncoderParams):
    """``parametric_umap``'s parameters."""

    min_dist: float
    spread: float
    n_neighbors: int
    neighbors_key: str | None | bool
    repulsion_strength: float

    @staticmethod
    def check_own(adata: AnnData, a: dict) -> dict:
        a["n_neighbors"] = _checks.positive_int("n_neighbors", DEFAULT_NEIGHBORS if a["n_neighbors"] is None else a["n_neighbors"], 2)
        a["neighbors_key"] = _check_neighbors_key(a["neighbors_key"])
        for name in ("spread", "repulsion_strength"):
            a[name] = _checks.number(name, a[name])
        a["min_dist"] = _checks.number("min_dist", a["min_dist"], strict=False)
        if a["min_dist"] > a["spread"]:
            raise ValueError(f"min_dist ({a['min_dist']}) must not exceed spread ({a['spread']}).")
        return a


@dataclass(frozen=True)
class TSNEParams(EncoderParams):
    """``parametric_tsne``'s parameters."""

    perplexity: float
    exaggeration: float
    dof: float
    neighbors_key: str | None

    @staticmethod
    def default_epochs(n_obs: int, init: str) -> int:
        # t-SNE's full-batch fits need twice UMAP's steps (pbmc68k_reduced, 4 members:
        # trustworthiness 0.903 after 300, 0.915 after 600, 0.917 after 1,000).
        from .._core.train import FULL_BATCH_MAX

        return 2 * default_epochs(n_obs, init) if n_obs <= FULL_BATCH_MAX else default_epochs(n_obs, init)

    @staticmethod
    def check_own(adata: AnnData, a: dict) -> dict:
        a["neighbors_key"] = _check_neighbors_key(a["neighbors_key"], false_ok=False)
        a["perplexity"] = _checks.number("perplexity", a["perplexity"])
        if a["neighbors_key"] is None and 3 * a["perplexity"] > adata.n_obs - 1:
            raise ValueError(f"perplexity={a['perplexity']} is too large for {adata.n_obs} cells: it needs 3 x perplexity "
                             f"neighbours per cell, so at most {(adata.n_obs - 1) / 3:.1f}.")
        a["exaggeration"] = _checks.number("exaggeration", a["exaggeration"])
        a["dof"] = _checks.number("dof", a["dof"])
        return a


def member_seeds(seed: int, n_models: int) -> list[int]:
    """Initial-weight seeds of an ensemble's models: independent streams of ``seed``
    (``seed + i`` would make random_state=0 and 1 share models)."""
    return [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(n_models)]
