"""Batches of (embedding, Jacobian, centred expression) for one model, streamed.

Jacobians come from the stored layers when all are present, else are recomputed exactly
from the model; both give the same numbers, and memory stays at one batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from anndata import AnnData

from .._model import StoredModel, jacobian_layer_names


def iter_model_batches(adata: AnnData, model: StoredModel, key: str | None, X, *, device, batch_size: int) -> Iterator:
    """Yield :class:`scelm._core.jacobian.Batch` over the rows of ``X`` (model genes);
    ``key`` names the model's Jacobian layers (None: recompute)."""
    import torch

    from .._core.device import resolve_device
    from .._core.jacobian import Batch, iter_batches

    dev = resolve_device(device)
    layers = None if key is None else jacobian_layer_names(adata, key, model.n_components)
    pos = pd.Index(adata.var_names).get_indexer(model.genes)
    if layers is None or (pos < 0).any():
        yield from iter_batches(model.front_end, model.encoder(), X, device=dev, batch_size=batch_size)
        return
    for b in iter_batches(model.front_end, model.encoder(), X, device=dev, batch_size=batch_size, jacobian=False):
        rows = [np.asarray(adata.layers[name][b.start : b.stop][:, pos], dtype=np.float32) for name in layers]
        jac = torch.as_tensor(np.stack(rows, axis=1), device=dev)
        yield Batch(b.start, b.stop, b.embedding, jac, b.centred)
