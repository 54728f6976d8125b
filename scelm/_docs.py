"""Docstring pieces shared by several public functions (scanpy's ``_docs`` pattern)."""

import re
import textwrap

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

doc_elm_key = """\
elm_key
    ``key_added`` of the :func:`scelm.tl.parametric_umap` run to use (the fitted model)."""

doc_batch_device = """\
chunk_size
    Cells per block for embeddings and Jacobians (like ``chunk_size`` in
    :func:`scanpy.pp.pca`); memory is ``chunk_size x d x n_genes``.
device
    ``'auto'`` (CUDA when available, else CPU), ``'cpu'`` or ``'cuda[:N]'``."""

doc_copy = """\
copy
    Return a modified copy instead of writing to ``adata``."""


def doc_params(**pieces):
    """Fill ``{name}`` fields of a docstring with the pieces above, indented like the field."""

    def decorate(func):
        doc = func.__doc__
        for name, text in pieces.items():
            doc = re.sub(
                rf"^([ \t]*)\{{{name}\}}",
                lambda m, text=text: textwrap.indent(text, m.group(1)),
                doc,
                flags=re.MULTILINE,
            )
        func.__doc__ = doc.replace("{{", "{").replace("}}", "}")
        return func

    return decorate
