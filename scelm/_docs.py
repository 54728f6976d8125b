"""Docstring pieces shared by several public functions (scanpy's ``_docs`` pattern)."""

import re
import textwrap

doc_input = """\
layer
    Layer to read expression from instead of ``.X``.
use_raw
    Read expression from ``.raw``. ``None`` (default) uses ``.raw`` when it exists and no
    ``layer`` is given, like :func:`scanpy.tl.rank_genes_groups`: contributions are then
    in log-normalised expression, not in scaled units.
mask_var
    Genes the model reads: a boolean ``var`` column name or mask. ``None`` uses
    ``var['highly_variable']`` when present (matched by name, also for ``.raw``), else all."""

doc_training = """\
train_batch_size
    Cells per training step. ``None``: full batch up to 4,096 cells, else blocks of
    1,024 cells. Each step encodes one block and uses the latest embedding of the other
    cells; more blocks mean more optimizer steps per epoch at about the same cost, and
    activations held for one block only (see ``docs/scale.md``). A value ``>= n_obs``
    trains full batch. It changes no other default: the default epochs and learning
    rate assume the default blocks.
learning_rate
    Adam's learning rate, linearly decayed to zero. ``None``: 0.01 up to 10,240 cells,
    then lower in proportion to the default optimizer steps, 0.005 from 20,000 to 200,000
    cells (0.001 at a million, trained for 20 epochs), so that a large fit moves its
    weights no further than a 10,000-cell fit (at 50,000
    simulated cells the map closest to ``sc.tl.umap``'s, with rankings as stable as twice
    or half the rate; see ``docs/trust.md``). With ``center=False``, whose rankings vary
    more with the seed, half of that (0.0025) from 20,000 cells on trades some of the map
    for the genes: at 50,000 cells top-10 agreement across seeds rose from 0.65 to 0.84,
    trustworthiness fell by 0.014."""

# Shared by the fits (parametric_umap, parametric_tsne): the members, their start and storage.
doc_encoder = """\
init
    Starting layout every member is regressed onto before the map's loss takes over:
    ``'pca'`` (default; the top principal components of the space the graph comes from:
    the encoder input, ``obsm[use_rep]``, or the integrated representation a stored graph
    was built on; for BBKNN's graph, which no single space gives, its spectral layout),
    ``'spectral'`` (umap-learn's spectral embedding of the graph, its default), the
    name of an ``obsm`` key such as ``'X_umap'`` (start from a map you already have),
    or ``'random'`` (no regression: the map's global arrangement is left to the random
    initial weights). A fixed starting layout makes the map, and so the gene rankings
    explaining it, agree across ``random_state`` (see ``docs/trust.md``).
weight_decay
    AdamW's decoupled weight decay after the layout phase; small values make the
    encoder's Jacobians, hence its rankings, less seed-dependent.
hidden
    Widths of the hidden layers of each member; ``()`` makes each a linear map.
activation
    ``'relu'``, ``'leaky_relu'`` or ``'prelu'``.
n_pcs
    Linear front end: project expression on this many PC loadings (computed here, on
    the selected genes), or ``None`` to feed genes directly. Jacobians are always
    chained back to gene space.
use_rep
    The representation the cells' neighbours come from, as in :func:`scanpy.pp.neighbors`.
    One without gene loadings, such as an integrated ``'X_pca_harmony'`` or ``'X_scVI'``,
    is where scelm builds the graph (when it does not reuse a stored one) and the starting
    layout; the encoder still reads genes (``.raw``, ``.X`` or ``layer`` through ``n_pcs``
    PCs), so every explanation stays in genes. A linear one with loadings, e.g. ``'X_pca'``
    from :func:`scanpy.tl.pca` (``varm['PCs']``), also becomes the front end, applied to
    the genes it covers in ``.X`` (or ``layer``); ``n_pcs`` is then ignored.
batch_key
    A categorical ``obs`` column of batches (samples, donors) whose shifts the encoder
    must not read. Each batch's shift is estimated from the graph's edges between
    batches, which join cells of one type once the graph is integrated (build it on
    ``use_rep='X_pca_harmony'``, scVI or BBKNN first), and projected out of the front
    end: the model still reads genes only, stays exact, needs no batch label to embed
    new cells, and batch genes keep only the part of their signal that is not the shift.
    Pass it for cells from several batches: with a strong batch effect, batch genes
    otherwise enter the cell types' explanations, even where the map mixes the batches
    (see ``docs/integration.md``).
center
    Explain relative to the mean cell. ``True`` (default) applies the front end to
    centred expression, so the reference is ``x_ref`` = the mean training cell and a
    gene contributes what its deviation from its mean moves the cell (DeepLIFT's and
    Integrated Gradients' baseline). The map comes closer to ``sc.tl.umap``'s and its top
    genes agree across seeds far better on large data than with ``False`` (UMAP at
    50,000 simulated cells: trustworthiness 0.930 against 0.912, top-10 agreement 0.89
    against 0.64; ``docs/trust.md``). ``False`` keeps ``x_ref = 0``: a gene a cell does
    not express contributes exactly zero to it.
{doc_input}
store_jacobian
    Write ``layers['{{key_added}}_jacobian_{{k}}']`` (cells x genes, zeros for genes the
    model does not read): ``'auto'`` (default) stores float32 layers when they take at
    most ``scelm.settings.jacobian_layers_max_gb`` (1 GB: pbmc68k_reduced or 10,000
    cells x 2,000 genes keep theirs, an atlas does not) and logs how to get them
    otherwise; ``True``/``'float32'`` always; ``'float16'`` halves their memory (for
    plotting with scanpy; scelm's own functions then recompute exact values); ``False``
    stores none. :func:`scelm.get.jacobian` recomputes exactly from the model whenever the
    layers are not the complete float32 Jacobian.
jacobian_genes
    Store the Jacobian layers of these genes only (named in
    ``uns[key_added]['jacobian_genes']``); ``None``: every gene the model reads.
n_models
    Members of the ensemble, fitted on the same graph, front end and starting layout;
    they differ by their initial weights and negative samples (independent streams of
    ``random_state``). On a GPU they train as one batched network; on CPU in one
    thread per core. Each member's map is turned onto the common frame by orthogonal
    Procrustes (``uns[key_added]['alignment']``) and the map is their mean, so the
    explanations, exact for that consensus, agree across ``random_state`` far more than
    one model's (``docs/trust.md``); how far the members agree is what
    :func:`scelm.tl.rank_genes_elm` reports as stability. Default ``None``: 10 up to
    4,096 cells, else 4.
precision
    ``'float32'``, or ``'bfloat16'`` to run the encoder's matrix products during
    training under bfloat16 autocast (faster on recent GPUs; distances and the loss stay
    float32). Weights, the embedding and the Jacobians are float32 either way, so the
    exact decomposition is unaffected.
random_state
    Seed of the starting weights, the block order and the negative samples: an int, a
    numpy ``RandomState`` or ``Generator`` (one seed is drawn from it), or ``None`` (a
    fresh seed; the one used is stored in ``params``). The same seed gives the same map on
    any number of CPU threads; float arithmetic differs between CPU models and GPUs."""

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
