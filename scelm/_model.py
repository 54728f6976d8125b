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
from ._input import source_matrix

# Layout of uns[key]: 2 stores genes, front end and parameters once and every encoder of
# an ensemble under 'encoders'; 0.1.0 wrote one full entry per ensemble member ('encoder',
# 'members'), which still loads.
FORMAT_VERSION = 2


@dataclass
class StoredModel:
    """A fitted model: the genes it reads, its linear front end and one or more encoders
    (an ensemble; the first gives the embedding), with their fit parameters."""

    genes: np.ndarray  # names of the genes the model reads, in order
    front_end: LinearFrontEnd
    encoder_states: list[dict[str, np.ndarray]]  # one per model of the ensemble
    params: dict  # fit parameters, incl. activation, layer, use_raw (a, b for UMAP fits)
    loss_history: np.ndarray  # (n_models, n_epochs)

    @property
    def n_components(self) -> int:
        return int(self.params["n_components"])

    @property
    def n_models(self) -> int:
        return len(self.encoder_states)

    def encoder(self, member: int = 0):
        from ._core.encoder import ELMEncoder

        return ELMEncoder.from_numpy(self.encoder_states[member], self.params["activation"])

    def to_uns(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "params": dict(self.params),
            "var_names": np.asarray(self.genes, dtype=object),
            "front_end": {"loadings": self.front_end.loadings, "reference": self.front_end.reference},
            "encoders": {str(i): dict(state) for i, state in enumerate(self.encoder_states)},
            "loss_history": np.asarray(self.loss_history, dtype=np.float32),
        }

    @classmethod
    def from_adata(cls, adata: AnnData, key: str) -> StoredModel:
        if key not in adata.uns:
            raise KeyError(
                f"No scelm model in adata.uns[{key!r}]; run scelm.tl.parametric_umap(adata, key_added={key!r}) first."
            )
        return cls._from_entry(adata.uns[key], f"adata.uns[{key!r}]")

    @staticmethod
    def _encoder_entries(entry) -> tuple[list, np.ndarray]:
        """Encoder states and loss histories, from either layout."""
        if "encoders" in entry:
            encoders = dict(entry["encoders"])
            states = [encoders[str(i)] for i in range(len(encoders))]
            return states, np.atleast_2d(np.asarray(entry.get("loss_history", np.zeros((len(states), 0))), dtype=np.float32))
        members = [entry] + [dict(entry["members"])[k] for k in sorted(dict(entry.get("members", {})), key=int)]
        histories = [np.asarray(m.get("loss_history", []), dtype=np.float32) for m in members]
        same = len({h.shape for h in histories}) == 1
        return [m["encoder"] for m in members], np.stack(histories) if same else histories[0][None]

    @classmethod
    def _from_entry(cls, entry, where: str) -> StoredModel:
        try:
            params = dict(entry["params"])
            genes = np.asarray(entry["var_names"]).astype(str)
            fe = LinearFrontEnd(
                loadings=np.asarray(entry["front_end"]["loadings"], dtype=np.float32),
                reference=np.asarray(entry["front_end"]["reference"], dtype=np.float32),
            )
            raw_states, history = cls._encoder_entries(entry)
            states = [{k: np.asarray(v, dtype=np.float32) for k, v in state.items()} for state in raw_states]
            missing = [k for k in ("activation", "n_components") if k not in params]
            if missing:
                raise KeyError(f"params {missing}")
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(f"{where} is not a scelm model (missing or malformed entry: {err}).") from err
        for i, state in enumerate(states):
            n_layers = sum(1 for k in state if k.startswith("W"))
            if (
                fe.loadings.ndim != 2
                or fe.loadings.shape[0] != len(genes)
                or fe.reference.shape != (len(genes),)
                or n_layers == 0
                or state["W0"].shape[1] != fe.loadings.shape[1]
                or state[f"W{n_layers - 1}"].shape[0] != int(params["n_components"])
            ):
                raise ValueError(f"{where} is corrupted: its gene list, front end and encoder {i} shapes disagree.")
            for name, arr in [("loadings", fe.loadings), ("reference", fe.reference), *state.items()]:
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{where} is corrupted: {name} contains NaN or inf.")
        if not states:
            raise ValueError(f"{where} is not a scelm model: it holds no encoder.")
        return cls(genes, fe, states, params, history)

    def source(self, adata: AnnData) -> tuple[str | None, bool]:
        """``(layer, use_raw)`` to read this model's genes from ``adata``: as fitted, except
        that a model fitted on ``.raw`` reads ``.X`` of an AnnData that has no ``.raw``."""
        layer = self.params.get("layer")
        use_raw = bool(self.params.get("use_raw", False))
        if use_raw and adata.raw is None:
            logg.info("    the model was fitted on .raw; this AnnData has none, reading .X")
            use_raw = False
        return layer, use_raw

    def input_matrix(self, adata: AnnData):
        """The model's genes, matched by name, from the source given by :meth:`source`,
        as :class:`~scelm._core.blocks.GeneColumns` (read block by block)."""
        layer, use_raw = self.source(adata)
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

    def iter_batches(self, adata: AnnData, key: str | None, X, *, device, batch_size: int) -> Iterator:
        """Yield :class:`scelm._core.jacobian.Batch` (embedding, exact Jacobian, centred
        expression) of the first encoder (the embedding's) over the rows of ``X``
        (:meth:`input_matrix`), one batch in memory.

        Jacobians come from the layers of ``key`` when they hold the complete float32
        Jacobian; otherwise (or ``key=None``) they are recomputed exactly.
        """
        import torch

        from ._core.device import resolve_device
        from ._core.jacobian import Batch, iter_batches

        dev = resolve_device(device)
        layers = None if key is None else jacobian_layer_names(adata, key, self.n_components)
        pos = pd.Index(adata.var_names).get_indexer(self.genes)
        encoder = self.encoder()
        if layers is None or (pos < 0).any():
            yield from iter_batches(self.front_end, encoder, X, device=dev, batch_size=batch_size)
            return
        for b in iter_batches(self.front_end, encoder, X, device=dev, batch_size=batch_size, jacobian=False):
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
    return names if complete and "jacobian_genes" not in adata.uns.get(key, {}) else None
