"""Docstring pieces shared by several public functions (scanpy's ``_docs`` pattern)."""

doc_input = """\
layer
    Layer to read expression from instead of ``.X``.
use_raw
    Read expression from ``.raw``. ``None`` (default) uses ``.raw`` when it exists and no
    ``layer`` is given, like :func:`scanpy.tl.rank_genes_groups`: log-normalised
    expression measured from zero makes contributions of unexpressed genes exactly zero.
mask_var
    Genes the model reads: a boolean ``var`` column name or mask. ``None`` uses
    ``var['highly_variable']`` when present (matched by name, also for ``.raw``), else all."""

doc_key = """\
key
    ``key_added`` of the :func:`scelm.tl.parametric_umap` run to use."""

doc_batch_device = """\
batch_size
    Cells per batch for embeddings and Jacobians; memory is ``batch_size x d x n_genes``.
device
    ``'auto'`` (CUDA when available, else CPU), ``'cpu'`` or ``'cuda[:N]'``."""

doc_copy = """\
copy
    Return a modified copy instead of writing to ``adata``."""


def doc_params(**pieces):
    """Fill ``{name}`` fields of a docstring with the pieces above."""

    def decorate(func):
        func.__doc__ = func.__doc__.format(**pieces)
        return func

    return decorate
