"""The fitted model as it lives in ``adata.uns[key]``: front end, encoder weights, genes,
and the one way to stream its Jacobians over batches of cells.

Everything is numpy so the entry survives ``write_h5ad``/``read_h5ad``; :class:`StoredModel`
validates an entry on read so a corrupted or foreign ``uns`` gives a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from . import _keys
from ._core.blocks import GeneColumns
from ._core.frontend import LinearFrontEnd
from ._core.model import ELMModel
from ._input import source_matrix

# Layout of uns[key]: 3 adds the members' alignment, and the embedding is their consensus;
# 2 stored every encoder of an ensemble under 'encoders' with model 0 as the embedding;
# 0.1.0 wrote one full entry per ensemble member ('encoder', 'members'). Both older layouts
# load as their model 0 alone, the map they show, so their explanations stay exact for it.
FORMAT_VERSION = 3


@dataclass
class StoredModel:
    """A fitted model (:class:`~scelm._core.model.ELMModel`) with the genes it reads, its
    fit parameters and loss history, as it lives in ``adata.uns[key]``."""

    genes: np.ndarray  # names of the genes the model reads, in order
    model: ELMModel
    params: dict  # fit parameters, incl. activation, layer, use_raw (a, b for UMAP fits)
    loss_history: np.ndarray  # (n_members, n_epochs)

    @property
    def n_components(self) -> int:
        return self.model.n_components

    @property
    def n_members(self) -> int:
        return self.model.n_members

    def to_uns(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "params": dict(self.params),
            "var_names": np.asarray(self.genes, dtype=object),
            "front_end": {"loadings": self.model.front_end.loadings, "reference": self.model.front_end.reference},
            "encoders": {str(i): dict(state) for i, state in enumerate(self.model.member_states)},
            "alignment": self.model.alignment,
            "loss_history": np.asarray(self.loss_history, dtype=np.float32),
            **({} if self.model.member_r2 is None else {"member_r2": np.asarray(self.model.member_r2, dtype=np.float32)}),
        }

    @classmethod
    def from_adata(cls, adata: AnnData, key: str) -> StoredModel:
        if not isinstance(key, str):
            raise TypeError(f"elm_key must be the key_added of one fitted model (a string), got {type(key).__name__}.")
        if key not in adata.uns:
            raise KeyError(
                f"No scelm model in adata.uns[{key!r}]; run scelm.tl.parametric_umap(adata, key_added={key!r}) first."
            )
        return cls._from_entry(adata.uns[key], f"adata.uns[{key!r}]")

    @staticmethod
    def _encoder_entries(entry, where: str) -> tuple[list, np.ndarray, np.ndarray | None]:
        """Encoder states, loss histories and alignment (None: an older layout, whose
        embedding is its model 0 alone)."""
        if "alignment" in entry:
            encoders = dict(entry["encoders"])
            states = [encoders[str(i)] for i in range(len(encoders))]
            return states, np.atleast_2d(np.asarray(entry["loss_history"], dtype=np.float32)), np.asarray(entry["alignment"])
        if "encoders" in entry:  # format 2
            state, history = dict(entry["encoders"])["0"], np.atleast_2d(np.asarray(entry.get("loss_history", [[]])))[:1]
            n_models = len(dict(entry["encoders"]))
        else:  # 0.1.0
            state, history = entry["encoder"], np.atleast_2d(np.asarray(entry.get("loss_history", []), dtype=np.float32))
            n_models = 1 + len(dict(entry.get("members", {})))
        if n_models > 1:
            logg.info(f"    {where} was written by scelm < 0.3: its map is its model 0, which is used alone; "
                      f"refit for the consensus of its {n_models} models")
        return [state], history.astype(np.float32), None

    @classmethod
    def _from_entry(cls, entry, where: str) -> StoredModel:
        try:
            params = dict(entry["params"])
            genes = np.asarray([str(g) for g in np.asarray(entry["var_names"]).tolist()], dtype=object)
            fe = LinearFrontEnd(
                loadings=np.asarray(entry["front_end"]["loadings"], dtype=np.float32),
                reference=np.asarray(entry["front_end"]["reference"], dtype=np.float32),
            )
            raw_states, history, alignment = cls._encoder_entries(entry, where)
            states = [{k: np.asarray(v, dtype=np.float32) for k, v in dict(state).items()} for state in raw_states]
            missing = [k for k in ("activation", "n_components") if k not in params]
            if missing:
                raise KeyError(f"params {missing}")
            params["activation"] = str(params["activation"])
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(f"{where} is not a scelm model (missing or malformed entry: {err}).") from err
        if not states:
            raise ValueError(f"{where} is not a scelm model: it holds no encoder.")
        d = int(params["n_components"])
        for i, state in enumerate(states):
            n_layers = sum(1 for k in state if k.startswith("W"))
            if (
                fe.loadings.ndim != 2
                or fe.loadings.shape[0] != len(genes)
                or fe.reference.shape != (len(genes),)
                or n_layers == 0
                or state["W0"].shape[1] != fe.loadings.shape[1]
                or state[f"W{n_layers - 1}"].shape[0] != d
            ):
                raise ValueError(f"{where} is corrupted: its gene list, front end and encoder {i} shapes disagree.")
            for name, arr in [("loadings", fe.loadings), ("reference", fe.reference), *state.items()]:
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{where} is corrupted: {name} contains NaN or inf.")
        alignment = np.broadcast_to(np.eye(d), (len(states), d, d)) if alignment is None else alignment
        try:
            r2 = np.asarray(entry["member_r2"], dtype=np.float32) if "member_r2" in entry else None
            model = ELMModel(fe, states, alignment, params["activation"], r2)
        except ValueError as err:
            raise ValueError(f"{where} is corrupted: {err}") from err
        return cls(genes, model, params, history)

    def source(self, adata: AnnData, use_raw: bool | None = None) -> tuple[str | None, bool]:
        """``(layer, use_raw)`` to read this model's genes from ``adata``: as fitted, or from
        ``.X`` when ``use_raw=False`` overrides a model fitted on ``.raw``. A model fitted on
        ``.raw`` refuses an AnnData without one unless told to read ``.X``: a scaled ``.X``
        would give meaningless contributions without any error."""
        layer = self.params.get("layer")
        fitted = bool(self.params.get("use_raw", False))
        use_raw = fitted if use_raw is None else bool(use_raw)
        if use_raw and adata.raw is None:
            raise ValueError(
                "The model reads .raw, but this AnnData has no .raw. Set adata.raw, or pass use_raw=False if its .X holds "
                "the same (log-normalised, unscaled) expression."
            )
        return layer, use_raw

    def input_matrix(self, adata: AnnData, use_raw: bool | None = None):
        """The model's genes, matched by name, from the source given by :meth:`source`,
        as :class:`~scelm._core.blocks.GeneColumns` (read block by block)."""
        layer, use_raw = self.source(adata, use_raw)
        X, var_names = source_matrix(adata, layer=layer, use_raw=use_raw)
        pos = pd.Index(var_names).get_indexer(self.genes)
        if (pos < 0).any():
            missing = self.genes[pos < 0]
            where = ".raw" if use_raw else (f"layers[{layer!r}]" if layer else ".X")
            raise KeyError(
                f"{len(missing)} of the model's {len(self.genes)} genes are missing from {where}: "
                f"{missing[:10].tolist()}{' ...' if len(missing) > 10 else ''}."
            )
        return GeneColumns(X, pos)

    def iter_batches(self, adata: AnnData, key: str, X, *, device, batch_size: int) -> Iterator:
        """Yield :class:`scelm._core.jacobian.Batch` (consensus embedding, exact Jacobian,
        centred expression) over the rows of ``X`` (:meth:`input_matrix`), one batch in
        memory. Jacobians come from the layers of ``key`` when they hold the complete
        float32 Jacobian, else they are recomputed exactly."""
        import torch

        from ._core.device import resolve_device
        from ._core.jacobian import Batch, iter_batches

        dev = resolve_device(device)
        layers = jacobian_layer_names(adata, key, self.n_components)
        pos = pd.Index(adata.var_names).get_indexer(self.genes)
        if layers is None or (pos < 0).any():
            yield from iter_batches(self.model, X, device=dev, batch_size=batch_size)
            return
        for b in iter_batches(self.model, X, device=dev, batch_size=batch_size, jacobian=False):
            rows = [np.asarray(adata.layers[name][b.start : b.stop][:, pos], dtype=np.float32) for name in layers]
            jac = torch.as_tensor(np.stack(rows, axis=1), device=dev)
            yield Batch(b.start, b.stop, b.embedding, jac, b.centred)

    def source_var_names(self, adata: AnnData) -> pd.Index:
        """Gene axis of the source matrix (``.raw.var_names`` or ``var_names``)."""
        return adata.raw.var_names if self.source(adata)[1] else adata.var_names


def jacobian_layer_names(adata: AnnData, key: str, n_components: int) -> list[str] | None:
    """The Jacobian layers of ``key`` when they hold the exact (float32) Jacobian of every
    model gene, else None: callers then recompute from the model."""
    names = _keys.jacobian_layers(key, n_components)
    complete = all(n in adata.layers and adata.layers[n].dtype == np.float32 for n in names)
    return names if complete and _keys.JACOBIAN_GENES not in adata.uns.get(key, {}) else None
