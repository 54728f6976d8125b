"""Reading the gene matrix a model uses out of an AnnData, with the checks users need."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from ._core.blocks import GeneColumns


def check_adata(adata) -> AnnData:
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes).")
    return adata


def frame_column(frame, name: str) -> pd.Series:
    """A column of ``obs``/``var`` as a pandas Series, also from a lazy AnnData (whose
    ``obs`` is an xarray-backed ``Dataset2D``)."""
    col = frame[name]
    return col if isinstance(col, pd.Series) else col.to_pandas()


def group_labels(adata: AnnData, groupby: str) -> pd.Categorical:
    """``obs[groupby]`` as categories (values of a non-categorical column become categories;
    NaN labels stay NaN, with a warning)."""
    if groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs; available: {list(adata.obs.columns)}.")
    col = frame_column(adata.obs, groupby)
    if not isinstance(col.dtype, pd.CategoricalDtype):
        logg.info(f"    adata.obs[{groupby!r}] is not categorical; treating its values as categories")
        col = col.astype(str).where(col.notna()).astype("category")
    n_nan = int(col.isna().sum())
    if n_nan:
        logg.warning(f"{n_nan} cells have no {groupby!r} label (NaN) and are left out.")
    return pd.Categorical(col)


def basis_key(adata: AnnData, basis: str) -> str:
    """The ``obsm`` key of a basis, by scanpy's rule: ``obsm[basis]`` when it exists, else
    ``obsm['X_' + basis]``."""
    for key in (basis, f"X_{basis}"):
        if key in adata.obsm:
            return key
    raise KeyError(f"basis={basis!r}: neither adata.obsm[{basis!r}] nor adata.obsm['X_{basis}'] exists; available: {list(adata.obsm)}.")


def resolve_use_raw(adata: AnnData, layer: str | None, use_raw: bool | None) -> bool:
    """scanpy's rule: ``use_raw=None`` means ``.raw`` when it exists and no layer is given."""
    if use_raw is None:
        return adata.raw is not None and layer is None
    if use_raw and layer is not None:
        raise ValueError(f"Pass either layer={layer!r} or use_raw=True, not both.")
    if use_raw and adata.raw is None:
        raise ValueError("use_raw=True but adata.raw is None; set use_raw=False or store .raw first.")
    return bool(use_raw)


def source_matrix(adata: AnnData, *, layer: str | None, use_raw: bool):
    """``(X, var_names)`` of ``.raw.X``, ``layers[layer]`` or ``.X``, not copied."""
    if use_raw:
        return adata.raw.X, adata.raw.var_names
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"layer {layer!r} not found; available layers: {list(adata.layers.keys())}.")
        return adata.layers[layer], adata.var_names
    if adata.X is None:
        raise ValueError("adata.X is None; pass layer= or use_raw=True.")
    return adata.X, adata.var_names


def gene_mask(adata: AnnData, var_names: pd.Index, mask_var) -> np.ndarray:
    """Boolean mask over ``var_names`` from ``mask_var`` (scanpy's meaning).

    ``None`` uses ``adata.var['highly_variable']`` when present (matched by gene name, so
    it also applies to ``.raw``), else all genes. A string names a boolean ``var`` column;
    an array is a boolean mask over the source genes.
    """
    if mask_var is None:
        if "highly_variable" not in adata.var.columns:
            return np.ones(len(var_names), dtype=bool)
        mask_var = "highly_variable"
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise KeyError(f"mask_var={mask_var!r} is not a column of adata.var.")
        col = frame_column(adata.var, mask_var)
        if col.dtype != bool:
            raise TypeError(f"adata.var[{mask_var!r}] must be boolean, got {col.dtype}.")
        mask = col.reindex(var_names).fillna(False).to_numpy(dtype=bool)
    else:
        mask = np.asarray(mask_var)
        if mask.dtype != bool or mask.shape != (len(var_names),):
            raise ValueError(f"mask_var must be a boolean array of length {len(var_names)}.")
    if mask.sum() == 0:
        raise ValueError("mask_var selects no genes.")
    return mask


def warn_if_not_lognormalised(X, what: str) -> None:
    """Warn when the input looks like un-normalised counts (large non-negative integers) or
    scaled expression (negative values, as ``sc.pp.scale`` leaves): the encoder expects
    log-normalised, unscaled expression, whose contributions are in log-expression units."""
    data = X.data if sparse.issparse(X) else np.asarray(X)
    if not data.size:
        return
    if data.max() > 1000 and np.all(data[: min(data.size, 100_000)] % 1 == 0):
        logg.warning(
            f"{what} looks like raw counts (integers up to {data.max():.0f}); "
            "normalise and log-transform first (sc.pp.normalize_total, sc.pp.log1p)."
        )
    elif data.min() < 0:
        logg.warning(
            f"{what} has negative values (down to {data.min():.3g}): it looks scaled (sc.pp.scale) or centred. scelm "
            "expects log-normalised, unscaled expression, so that contributions are in log-expression units (scaling "
            "gives every gene unit variance, so barely expressed genes weigh as much as markers); pass "
            "use_raw=True (where .raw holds it) or layer= with log-normalised expression."
        )


def rep_loadings(adata: AnnData, use_rep: str) -> np.ndarray | None:
    """Gene loadings of ``obsm[use_rep]`` when it is a linear representation: ``varm['PCs']``
    for ``'X_pca'`` (as ``sc.tl.pca`` stores them), else ``varm[use_rep without 'X_']``; None
    for a representation without loadings (harmony's, scVI's, ...)."""
    if use_rep not in adata.obsm:
        raise KeyError(f"use_rep={use_rep!r} not found in adata.obsm; available: {list(adata.obsm.keys())}.")
    name = "PCs" if use_rep == "X_pca" else use_rep.removeprefix("X_")
    if name not in adata.varm:
        return None
    loadings = np.asarray(adata.varm[name], dtype=np.float64)
    if loadings.shape[1] != adata.obsm[use_rep].shape[1]:
        raise ValueError(f"adata.varm[{name!r}] has {loadings.shape[1]} columns but obsm[{use_rep!r}] has {adata.obsm[use_rep].shape[1]}.")
    return loadings


def representation(adata: AnnData, use_rep: str) -> np.ndarray:
    """``obsm[use_rep]`` as a finite float32 array: the space the graph and the starting layout
    come from when the representation has no gene loadings."""
    rep = np.asarray(adata.obsm[use_rep], dtype=np.float32)
    if rep.ndim != 2 or rep.shape[0] != adata.n_obs:
        raise ValueError(f"adata.obsm[{use_rep!r}] has shape {rep.shape}; expected (n_obs, n_dims).")
    if not np.all(np.isfinite(rep)):
        raise ValueError(f"adata.obsm[{use_rep!r}] contains NaN or inf.")
    return rep


def model_input(adata: AnnData, *, layer, use_raw, mask_var, use_rep=None):
    """Gene matrix (cells x selected genes, as :class:`GeneColumns`), the selected names,
    whether ``.raw`` was read, and the loadings of ``use_rep`` over those genes (or None).

    A ``use_rep`` with gene loadings is the front end: the genes are those whose loadings are
    finite and not all zero (scanpy leaves NaN loadings for genes outside ``mask_var``), read
    from ``.X`` or ``layer``. A ``use_rep`` without loadings (an integrated representation)
    only gives the graph and the starting layout: the genes are chosen as without it."""
    check_adata(adata)
    loadings = None if use_rep is None else rep_loadings(adata, use_rep)
    if loadings is not None:
        if use_raw or mask_var is not None:
            raise ValueError(
                f"use_rep={use_rep!r} has gene loadings, which become the front end over the genes they cover in .X or a "
                "layer; drop use_raw/mask_var."
            )
        use_raw = False
    use_raw = resolve_use_raw(adata, layer, use_raw)
    X, var_names = source_matrix(adata, layer=layer, use_raw=use_raw)
    if var_names.has_duplicates:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"Gene names must be unique; duplicated: {dup}. Call adata.var_names_make_unique().")
    if loadings is None:
        mask = gene_mask(adata, var_names, mask_var)
    else:
        mask = np.all(np.isfinite(loadings), axis=1) & np.any(loadings != 0, axis=1)
        loadings = loadings[mask]
    Xs = GeneColumns(X, np.flatnonzero(mask))
    warn_if_not_lognormalised(Xs[: min(Xs.shape[0], 10_000)], "The input matrix")
    return Xs, np.asarray(var_names[mask]), use_raw, loadings
