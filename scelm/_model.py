"""The fitted model as it lives in ``adata.uns[key]``: front end, encoder weights, genes,
and the one way to stream its Jacobians over batches of cells.

Everything is numpy so the entry survives ``write_h5ad``/``read_h5ad``; :class:`StoredModel`
validates an entry on read so a corrupted or foreign ``uns`` gives a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from . import _keys
from ._core.blocks import GeneColumns
from ._core.frontend import LinearFrontEnd
from ._input import source_matrix


@dataclass
class StoredModel:
    genes: np.ndarray  # names of the genes the model reads, in order
    front_end: LinearFrontEnd
    encoder_state: dict[str, np.ndarray]
    params: dict  # fit parameters, incl. activation, layer, use_raw, a, b
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    members: list[StoredModel] = field(default_factory=list)  # other seeds of an ensemble

    @property
    def n_components(self) -> int:
        return int(self.params["n_components"])

    def encoder(self):
        from ._core.encoder import ELMEncoder

        return ELMEncoder.from_numpy(self.encoder_state, self.params["activation"])

    def to_uns(self) -> dict:
        entry = {
            "params": dict(self.params),
            "a": float(self.params["a"]),
            "b": float(self.params["b"]),
            "loss_history": np.asarray(self.loss_history, dtype=np.float32),
            "var_names": np.asarray(self.genes, dtype=object),
            "front_end": {"loadings": self.front_end.loadings, "reference": self.front_end.reference},
            "encoder": dict(self.encoder_state),
        }
        if self.members:
            entry["members"] = {str(i): m.to_uns() for i, m in enumerate(self.members, 1)}
        return entry

    @classmethod
    def from_adata(cls, adata: AnnData, key: str) -> StoredModel:
        if key not in adata.uns:
            raise KeyError(
                f"No scelm model in adata.uns[{key!r}]; run scelm.tl.parametric_umap(adata, key_added={key!r}) first."
            )
        return cls._from_entry(adata.uns[key], f"adata.uns[{key!r}]")

    @classmethod
    def _from_entry(cls, entry, where: str) -> StoredModel:
        try:
            params = dict(entry["params"])
            genes = np.asarray(entry["var_names"]).astype(str)
            fe = LinearFrontEnd(
                loadings=np.asarray(entry["front_end"]["loadings"], dtype=np.float32),
                reference=np.asarray(entry["front_end"]["reference"], dtype=np.float32),
            )
            state = {k: np.asarray(v, dtype=np.float32) for k, v in entry["encoder"].items()}
            history = np.asarray(entry.get("loss_history", []), dtype=np.float32)
            missing = [k for k in ("activation", "n_components", "a", "b") if k not in params]
            if missing:
                raise KeyError(f"params {missing}")
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{where} is not a scelm model (missing or malformed entry: {err}).") from err
        n_layers = sum(1 for k in state if k.startswith("W"))
        if (
            fe.loadings.ndim != 2
            or fe.loadings.shape[0] != len(genes)
            or fe.reference.shape != (len(genes),)
            or n_layers == 0
            or state["W0"].shape[1] != fe.loadings.shape[1]
            or state[f"W{n_layers - 1}"].shape[0] != int(params["n_components"])
        ):
            raise ValueError(f"{where} is corrupted: its gene list, front end and encoder shapes disagree.")
        for name, arr in [("loadings", fe.loadings), ("reference", fe.reference), *state.items()]:
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{where} is corrupted: {name} contains NaN or inf.")
        members = [cls._from_entry(m, f"{where}['members'][{i!r}]") for i, m in dict(entry.get("members", {})).items()]
        return cls(genes, fe, state, params, history, members)

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
        expression) over the rows of ``X`` (:meth:`input_matrix`), one batch in memory.

        Jacobians come from the layers of ``key`` when they hold the complete float32
        Jacobian, else are recomputed exactly from the model (``key=None``: always).
        """
        import torch

        from ._core.device import resolve_device
        from ._core.jacobian import Batch, iter_batches

        dev = resolve_device(device)
        layers = None if key is None else jacobian_layer_names(adata, key, self.n_components)
        pos = pd.Index(adata.var_names).get_indexer(self.genes)
        if layers is None or (pos < 0).any():
            yield from iter_batches(self.front_end, self.encoder(), X, device=dev, batch_size=batch_size)
            return
        for b in iter_batches(self.front_end, self.encoder(), X, device=dev, batch_size=batch_size, jacobian=False):
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
