"""``scelm.pl.interactive``: a standalone page where hovering a cell shows the genes that
put it there and selecting cells ranks the genes that set them apart (bokeh, WebGL)."""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _checks, _keys
from .._core.blocks import BLOCK_ROWS
from .._core.options import AGREEMENT_TOP, CONFIDENT, DIRECTION_MIN, UNSTABLE
from .._docs import doc_elm_key, doc_params
from .._input import check_adata
from .._model import StoredModel

GENE_VALUES = ("expression", "contribution")


class InteractiveFigure:
    """An interactive page. Shown inline by Jupyter (as an ``<iframe>`` holding the page);
    :meth:`save` writes it as one HTML file that works offline."""

    def __init__(self, layout, page: str, *, height: int):
        self.layout = layout  # the bokeh layout, for users who embed it elsewhere
        self.html = page
        self._height = height

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width:100%;height:{self._height + 40}px;border:0"></iframe>'


def _bokeh():
    try:
        import bokeh  # noqa: F401
    except ImportError as err:
        raise ImportError("scelm.pl.interactive needs bokeh: pip install 'scelm[interactive]'.") from err


def _categorical(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def _colour_values(adata: AnnData, model: StoredModel, color, gene_values: str, elm_key: str, device, chunk_size):
    """``(values, kind)``: codes with their category names for categorical colours, floats
    for continuous ones, or ``(None, None)``."""
    if color is None:
        return None, None
    if not isinstance(color, str):
        raise TypeError(f"color must be an obs column or a gene name, got {type(color).__name__}.")
    if color in adata.obs.columns:
        values = adata.obs[color]
        if _categorical(values):
            cat = values.astype("category")
            return (cat.cat.codes.to_numpy(), [str(c) for c in cat.cat.categories]), "categorical"
        return values.to_numpy(dtype=np.float64), "continuous"
    if color not in model.source_var_names(adata):
        raise KeyError(f"color={color!r} is neither a column of adata.obs nor a gene the model {elm_key!r} can read.")
    if gene_values == "contribution":
        from ..get import contributions

        c = contributions(adata, elm_key=elm_key, genes=[color], device=device, chunk_size=chunk_size)[:, :, 0]
        return np.linalg.norm(c, axis=1), "continuous"
    import scanpy as sc

    layer, use_raw = model.source(adata)
    return sc.get.obs_df(adata, keys=[color], layer=layer, use_raw=use_raw)[color].to_numpy(dtype=np.float64), "continuous"


def _palette(adata: AnnData, color: str, n: int) -> list[str]:
    """scanpy's colours of ``color`` when stored, else scanpy's default palettes."""
    from scanpy.plotting import palettes

    stored = adata.uns.get(f"{color}_colors")
    if stored is not None and len(stored) >= n:
        return [str(c) for c in stored[:n]]
    default = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
    return [default[i % len(default)] for i in range(n)]


def _figure(xy: np.ndarray, names, colour, kind, palette, d: int, groups, *, title, axis_label, size):
    from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper
    from bokeh.plotting import figure

    n = len(xy)
    columns = dict(x=xy[:, 0], y=xy[:, 1], name=np.asarray(names, dtype=str).tolist())
    columns.update({f"axis{j}": np.zeros(n, dtype=np.int8) for j in range(d)})  # fields the gene tooltips hang on
    columns["group"] = (groups if groups is not None else np.full(n, -1)).astype(np.int32)
    source = ColumnDataSource(columns, name="cells")
    fig = figure(title=title, output_backend="webgl", tools="pan,wheel_zoom,box_select,lasso_select,reset,save",
                 active_scroll="wheel_zoom", active_drag="lasso_select", name="map", width=700, height=600,
                 x_axis_label=f"{axis_label}1", y_axis_label=f"{axis_label}2")
    mapper, colour_bar = None, None
    if kind is not None:
        values = colour[0] if kind == "categorical" else colour  # category codes or numbers
        source.data["colour"] = np.asarray(values, dtype=np.float32)
        if kind == "categorical":
            mapper = LinearColorMapper(palette=palette, low=-0.5, high=len(palette) - 0.5, low_color="lightgray")
        else:
            from bokeh.palettes import Viridis256

            mapper = LinearColorMapper(palette=Viridis256, low=np.nanmin(colour), high=np.nanmax(colour), nan_color="lightgray")
            colour_bar = ColorBar(color_mapper=mapper, width=10)
    fill = "#3b75af" if mapper is None else {"field": "colour", "transform": mapper}
    fig.scatter("x", "y", source=source, size=size, fill_color=fill, line_color=None, fill_alpha=0.8,
                selection_line_color="black", nonselection_fill_alpha=0.15)
    if colour_bar is not None:
        fig.add_layout(colour_bar, "right")
    fig.grid.visible = False
    return fig, source


def _hover(fig, args: dict, js: str, d: int, axis_label: str, has_groups: bool):
    from bokeh.models import CustomJSHover, HoverTool

    tooltips = [("cell", "@name")]
    formatters = {}
    if has_groups:
        tooltips.append(("group", "@group{custom}"))
        formatters["@group"] = CustomJSHover(args=args, code=js + "return value < 0 ? 'NA' : window.scelm.groups[value];")
    tooltips.append(("position", "(@x{0.000}, @y{0.000})"))
    for j in range(d):
        tooltips.append((f"{axis_label}{j + 1} genes", f"@axis{j}{{custom}}"))
        formatters[f"@axis{j}"] = CustomJSHover(args=args, code=js + f"return window.scelm.hoverText(special_vars.index, {j});")
    fig.add_tools(HoverTool(tooltips=tooltips, formatters=formatters))


def _legend(group_names, palette) -> str:
    items = "".join(
        f'<span style="white-space:nowrap;margin-right:8px"><span style="display:inline-block;width:10px;height:10px;'
        f'background:{c};margin-right:3px"></span>{html.escape(g)}</span> '
        for g, c in zip(group_names, palette)
    )
    return f"<div style='font-size:11px;max-width:320px'>{items}</div>"


@doc_params(doc_elm_key=doc_elm_key)
def interactive(
    adata: AnnData,
    *,
    color: str | None = None,
    elm_key: str = _keys.DEFAULT_KEY,
    groupby: str | None = None,
    gene_values: str = "expression",
    n_genes: int = 5,
    n_selection_genes: int = 10,
    selection_budget_mb: float = 8.0,
    confidence_budget_mb: float = 10.0,
    point_size: float | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    device: str = "auto",
    chunk_size: int = BLOCK_ROWS,
) -> InteractiveFigure:
    """An interactive map: hover a cell for the genes that put it there, select cells to
    rank the genes that set them apart.

    Hovering shows the cell's name, its group, its coordinates and, per axis, its
    ``n_genes`` largest contributions, signed (exact values from the model, as
    :func:`scelm.get.contributions` computes them). A lasso or box selection ranks genes by
    the ``separation`` score of :func:`scelm.tl.rank_genes_elm` for the selected cells
    against all others, in the map shown (an ensemble's consensus): "why is this island
    here?" without defining a group first. With an ensemble, the panel also gives the
    selection's ``stability`` and sets its confident genes in bold, computed from the
    members as :func:`scelm.tl.rank_genes_elm` computes them for a group, and says when
    the selection's direction from the rest is ill-defined. The page uses WebGL and holds
    precomputed hover lists, not every contribution, so it stays responsive at 100,000 cells.

    Parameters
    ----------
    adata
        AnnData with a fitted model.
    color
        Colour cells by an ``obs`` column (categorical or numeric) or by a gene (see
        ``gene_values``); ``None`` uses ``groupby`` if given.
    {doc_elm_key}
    groupby
        Categorical ``obs`` column whose group the hover names; default: ``color`` when it
        is a categorical column.
    gene_values
        For a gene ``color``: ``'expression'`` (from the matrix the model reads) or
        ``'contribution'`` (the length of the gene's contribution vector in each cell).
    n_genes
        Genes per axis in the hover text.
    n_selection_genes
        Genes listed for a selection.
    selection_budget_mb
        Memory, in the page, for what the selection ranking reads: contributions (float32,
        every cell and axis) and expression. Genes beyond it are left out of the
        ranking, those whose contributions vary least over cells first; the panel says how
        many genes it ranks. pbmc68k_reduced needs 6.4 MB for all its genes; 100,000 cells
        fit 6 genes in the default 8 MB.
    confidence_budget_mb
        Memory, in the page, for the members' contributions that the selection's stability
        and confident genes read (int16, every cell, member and axis), for the ranked genes
        whose contributions vary most: pbmc68k_reduced's 10 models need 8.3 MB for all 309
        genes, 10,000 cells with 4 models hold 65 genes in the default 10 MB. The panel says
        when fewer genes than it ranks are assessed; 0 leaves the stability out.
    point_size
        Marker size in screen pixels; default from the number of cells.
    title
        Plot title; default ``'{{elm_key}}: {{color}}'``.
    path
        Also write the page to this HTML file: one file, JavaScript inlined, nothing loaded
        from the network.
    device, chunk_size
        Where and in blocks of how many cells contributions are computed.

    Returns
    -------
    :class:`~scelm.pl._interactive.InteractiveFigure`: displays itself in Jupyter; its
    ``save(path)`` writes the page, ``html`` is the page and ``layout`` the bokeh layout.

    Examples
    --------
    >>> scelm.tl.parametric_umap(adata)
    >>> scelm.pl.interactive(adata, color="bulk_labels", path="map.html")
    """
    _bokeh()
    from .._core.device import resolve_device
    from ._page_data import page_data  # imports torch, which `import scelm` must not

    check_adata(adata)
    n_genes, n_selection_genes = _checks.positive_int("n_genes", n_genes), _checks.positive_int("n_selection_genes", n_selection_genes)
    _checks.one_of("gene_values", gene_values, GENE_VALUES)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    budget = _checks.number("selection_budget_mb", selection_budget_mb) * 2**20
    confidence_budget = _checks.number("confidence_budget_mb", confidence_budget_mb, strict=False) * 2**20
    model = StoredModel.from_adata(adata, elm_key)
    if groupby is not None and groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs.")
    color = groupby if color is None else color
    dev = resolve_device(device)
    colour, kind = _colour_values(adata, model, color, gene_values, elm_key, dev, chunk_size)
    groupby = color if groupby is None and kind == "categorical" else groupby
    groups, group_names = _group_codes(adata, groupby)
    data = page_data(model, model.input_matrix(adata), n_top=n_genes, budget_bytes=budget, device=dev, batch_size=chunk_size,
                     confidence_bytes=confidence_budget)
    key = _keys.embedding_key(elm_key)
    xy = np.asarray(adata.obsm[key], dtype=np.float32) if key in adata.obsm else data.embedding
    palette = _palette(adata, color, len(colour[1])) if kind == "categorical" else None
    axis_label = elm_key.upper() if elm_key == _keys.DEFAULT_KEY else elm_key
    size = point_size if point_size is not None else float(np.clip(300 / np.sqrt(adata.n_obs), 2, 8))
    fig, source = _figure(xy, adata.obs_names, colour, kind, palette, data.top_genes.shape[1], groups,
                          title=title or f"{elm_key}: {color or 'cells'}", axis_label=axis_label, size=size)
    legend = _legend(group_names, palette) if kind == "categorical" and groupby == color else None
    layout, page = _page(fig, source, data, group_names, legend, axis_label=axis_label, n_show=n_selection_genes,
                         title=title or f"scelm: {elm_key}")
    out = InteractiveFigure(layout, page, height=600)
    if path is not None:
        out.save(path)
    return out


def _group_codes(adata: AnnData, groupby: str | None) -> tuple[np.ndarray | None, list[str]]:
    """Each cell's group code and the group names the hover shows (none without groupby)."""
    if groupby is None:
        return None, []
    cat = adata.obs[groupby].astype("category")
    return cat.cat.codes.to_numpy(), [str(c) for c in cat.cat.categories]


def _page(fig, source, data, group_names: list[str], legend: str | None, *, axis_label: str, n_show: int, title: str):
    """The layout (map, legend, selection panel) with its callbacks, and the page's HTML."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.events import DocumentReady
    from bokeh.layouts import column, row
    from bokeh.models import CustomJS, Div
    from bokeh.resources import INLINE

    from .._core.ranking import member_halvings  # imports torch, which `import scelm` must not

    scope = "" if data.all_genes_ranked else (
        f", ranked among the {len(data.candidates)} of {len(data.genes)} genes whose contributions vary most "
        "(raise selection_budget_mb for more)"
    )
    intro = "Select cells (lasso or box) to rank the genes that set them apart from the rest" + scope + "."
    panel = Div(text=intro, name="selection", width=320)
    # Arrays with a row per cell travel as columns of the data source: a numpy argument
    # would be written into the page once per callback.
    source.data.update(top_genes=data.top_genes, top_values=data.top_values, contributions=data.contributions,
                       embedding=data.embedding, expression=data.expression)
    args = dict(source=source, genes=data.genes.tolist(), groups=group_names, candidates=data.candidates.astype(np.int32),
                n_show=n_show, intro=intro, scope=scope, n_top=AGREEMENT_TOP, confident=CONFIDENT, unstable=UNSTABLE,
                direction_min=DIRECTION_MIN, assessed=[], deviation_scale=[], halves=[])
    if (members := data.members) is not None:
        source.data.update(member_embedding=members.embedding, member_deviation=members.deviation)
        args.update(assessed=members.assessed.astype(np.int32).tolist(), deviation_scale=members.scale.tolist(),
                    halves=member_halvings(members.n_members).tolist())
    js = files("scelm.pl").joinpath("_interactive.js").read_text(encoding="utf-8")
    _hover(fig, args, js, data.top_genes.shape[1], axis_label, bool(group_names))
    source.selected.js_on_change("indices", CustomJS(
        args=dict(args, panel=panel), code=js + "panel.text = window.scelm.panel(window.scelm.rank(source.selected.indices));",
    ))
    side = [Div(text=legend, width=320)] if legend is not None else []
    layout = row(fig, column(*side, panel))
    doc = Document()
    doc.add_root(layout)
    doc.js_on_event(DocumentReady, CustomJS(args=args, code=js + "window.scelmReady = true;"))
    return layout, file_html(doc, INLINE, title=title)
