"""scelm.pl.interactive: the page's numbers against scelm.get / rank_genes_elm, and the page
itself in a real, offline, headless Chromium (skipped, with the reason, without one)."""

import os
import shutil
import sys

import numpy as np
import pytest
import scanpy as sc
import torch

import scelm
from scelm._core.jacobian import iter_member_batches
from scelm._model import StoredModel
from scelm.pl._page_data import assessed_count, candidate_count, page_data

pytest.importorskip("bokeh")
GROUP = "CD14+ Monocyte"


@pytest.fixture(scope="module")
def ensemble():
    """pbmc68k_reduced with a 3-model ensemble: hover and selection explain its consensus."""
    adata = sc.datasets.pbmc68k_reduced()
    scelm.tl.parametric_umap(adata, n_epochs=30, hidden=(32, 32), n_models=3)
    return adata


def _data(adata, **kw):
    model = StoredModel.from_adata(adata, "elm")
    return page_data(model, model.input_matrix(adata), device=torch.device("cpu"), batch_size=256, **kw)


def test_hover_lists_are_each_cells_true_top_genes(ensemble):
    data = _data(ensemble, n_top=5, budget_bytes=2**30)
    C = scelm.get.contributions(ensemble, genes=list(data.genes))
    for i in (0, 123, 699):
        for axis in range(2):
            order = np.argsort(-np.abs(C[i, axis]))[:5]
            np.testing.assert_array_equal(data.top_genes[i, axis], order)
            np.testing.assert_allclose(data.top_values[i, axis], C[i, axis, order], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(data.embedding, ensemble.obsm["X_elm"], rtol=1e-5, atol=1e-5)
    assert data.all_genes_ranked and data.contributions.shape == (700, 2, len(data.genes))
    np.testing.assert_allclose(data.contributions, C, rtol=1e-6, atol=1e-7)


def test_budget_keeps_the_genes_whose_contributions_vary_most(ensemble):
    budget = 700 * (2 + 1) * 4 * 40.5  # bytes for 40 genes
    assert candidate_count(700, 2, 765, budget) == 40 and candidate_count(700, 2, 765, 1.0) == 1
    data = _data(ensemble, n_top=3, budget_bytes=budget)
    assert len(data.candidates) == 40 and not data.all_genes_ranked
    C = scelm.get.contributions(ensemble, genes=list(data.genes))
    variance = C.var(0, ddof=1).sum(0)
    assert set(data.candidates) == set(np.argsort(-variance)[:40])
    np.testing.assert_allclose(data.contributions, C[:, :, data.candidates], rtol=1e-6, atol=1e-7)
    X = ensemble.raw[:, data.genes[data.candidates]].X
    # the page adds the reference back to x - x_ref: equal up to float32 rounding
    np.testing.assert_allclose(data.expression, X.toarray() if hasattr(X, "toarray") else X, rtol=1e-6, atol=1e-6)


def test_members_deviations_give_each_members_contributions(ensemble):
    """The page's members: their maps average to the consensus, and consensus + deviation
    is each aligned member's exact contribution (to int16 rounding) on the genes whose
    contributions vary most, as many as the budget holds."""
    model = StoredModel.from_adata(ensemble, "elm")
    n_genes = len(model.genes)
    assert assessed_count(700, 3, 2, n_genes, 700 * 3 * 2 * 2 * 25.5) == 25
    data = _data(ensemble, n_top=3, budget_bytes=2**30, confidence_bytes=700 * 3 * 2 * 2 * 25.5)
    members = data.members
    assert members.n_members == 3 and members.deviation.shape == (700, 3, 2, 25) and members.deviation.dtype == np.int16
    variance = data.contributions.var(0, ddof=1).sum(0)
    assert set(members.assessed) == set(np.argsort(-variance)[:25])
    np.testing.assert_allclose(members.embedding.mean(1), data.embedding, rtol=1e-5, atol=1e-5)
    genes = data.candidates[members.assessed]
    W = torch.as_tensor(model.model.front_end.loadings[genes])
    exact = np.concatenate([
        (torch.einsum("bmdp,tp->bmdt", b.jacobian_z, W) * b.centred[:, None, None, genes]).numpy()
        for b in iter_member_batches(model.model, model.input_matrix(ensemble), device=torch.device("cpu"))
    ])
    page = data.contributions[:, None][..., members.assessed] + members.deviation * members.scale
    peak = np.abs(exact - exact.mean(1, keepdims=True)).max(axis=(0, 1, 2))
    assert np.all(np.abs(page - exact) <= 2e-5 * peak + 1e-7)
    assert _data(ensemble, n_top=3, budget_bytes=2**30).members is None  # no budget, no members


def test_page_is_one_offline_file(ensemble, tmp_path):
    before = {k: set(getattr(ensemble, k).keys()) for k in ("obs", "obsm", "uns", "layers", "var")}
    fig = scelm.pl.interactive(ensemble, color="bulk_labels", path=tmp_path / "map.html", selection_budget_mb=1)
    text = (tmp_path / "map.html").read_text()
    assert text == fig.html and "<script src=" not in text and 'rel="stylesheet" href' not in text
    assert "ranked among the" in text  # a 1 MB budget cannot hold every gene of 3 models
    assert fig._repr_html_().startswith("<iframe srcdoc=")
    assert before == {k: set(getattr(ensemble, k).keys()) for k in before}  # nothing written to adata
    columns = fig.layout.select_one({"name": "cells"}).data
    assert columns["member_deviation"].dtype == np.int16 and columns["member_embedding"].shape == (700, 3, 2)
    bare = scelm.pl.interactive(ensemble, confidence_budget_mb=0).layout.select_one({"name": "cells"}).data
    assert "member_deviation" not in bare and "member_embedding" not in bare  # no budget, no stability data


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        (dict(color="no_such"), KeyError, "color"),
        (dict(color=3), TypeError, "color"),
        (dict(gene_values="mean"), ValueError, "gene_values"),
        (dict(n_genes=0), ValueError, "n_genes"),
        (dict(elm_key="nope"), KeyError, "nope"),
        (dict(groupby="nope"), KeyError, "groupby"),
        (dict(selection_budget_mb=0), ValueError, "selection_budget_mb"),
        (dict(confidence_budget_mb=-1), ValueError, "confidence_budget_mb"),
    ],
)
def test_bad_arguments(ensemble, kw, err, match):
    with pytest.raises(err, match=match):
        scelm.pl.interactive(ensemble, **kw)


def test_colour_by_gene_and_contribution(ensemble):
    for values in ("expression", "contribution"):
        fig = scelm.pl.interactive(ensemble, color="LYZ", gene_values=values, groupby="bulk_labels")
        assert "ColorBar" in fig.html


def test_clear_message_without_bokeh(ensemble, monkeypatch):
    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(ImportError, match=r"scelm\[interactive\]"):
        scelm.pl.interactive(ensemble)


# --- in a real browser -------------------------------------------------------------------


def chromium_path() -> str | None:
    """Debian's chromium (its binary, not the /usr/bin wrapper script) or $SCELM_CHROMIUM."""
    for candidate in (os.environ.get("SCELM_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser_page(ensemble, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'scelm[test]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found: install Debian's chromium (apt-get install chromium) or set SCELM_CHROMIUM")
    path = tmp_path_factory.mktemp("page") / "map.html"
    scelm.pl.interactive(ensemble, color="bulk_labels", path=path, selection_budget_mb=64)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 800})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        page.wait_for_function("() => window.scelmReady === true", timeout=60_000)
        yield page, errors
        browser.close()


def test_page_loads_offline_without_errors_and_draws(browser_page):
    page, errors = browser_page
    assert errors == []
    png = page.locator(".bk-Figure, .bk-Row").first.screenshot()
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert (pixels < 200).mean() > 0.01  # points and axes drawn, not a blank canvas


def test_hover_shows_the_cells_true_top_genes(browser_page, ensemble):
    page, errors = browser_page
    C = scelm.get.contributions(ensemble)
    genes = np.asarray(ensemble.raw.var_names)
    xy = ensemble.obsm["X_elm"]
    i = int(np.argmax(np.linalg.norm(xy - xy.mean(0), axis=1)))  # an outer cell: nothing drawn over it
    page.mouse.move(*page.evaluate("(i) => window.scelm.screenPosition(i)", i))
    page.wait_for_timeout(500)
    tooltip = page.locator(".bk-tooltip-content").first.text_content()
    assert ensemble.obs_names[i] in tooltip and ensemble.obs["bulk_labels"].iloc[i] in tooltip
    for axis in range(2):
        for g in genes[np.argsort(-np.abs(C[i, axis]))[:5]]:
            assert g in tooltip, (g, tooltip)
        exact = page.evaluate(f"(i) => window.scelm.cell(i, {axis})", i)
        top = np.argsort(-np.abs(C[i, axis]))[:5]
        assert [t["gene"] for t in exact] == list(genes[top])
        np.testing.assert_allclose([t["value"] for t in exact], C[i, axis, top], rtol=1e-6, atol=1e-7)
    assert errors == []


def test_selection_ranks_like_rank_genes_elm(browser_page, ensemble):
    page, errors = browser_page
    adata = ensemble.copy()
    scelm.tl.rank_genes_elm(adata, "bulk_labels", groups=[GROUP])
    idx = np.flatnonzero(adata.obs["bulk_labels"] == GROUP).tolist()
    page.evaluate("(idx) => { Bokeh.documents[0].get_model_by_name('cells').selected.indices = idx; }", idx)
    page.wait_for_function("() => document.body.innerHTML.length > 0")
    result = page.evaluate("(idx) => window.scelm.rank(idx)", idx)
    names = list(adata.uns["rank_genes_elm"]["names"][GROUP][:10])
    scores = np.asarray(adata.uns["rank_genes_elm"]["scores"][GROUP][:10], dtype=np.float64)
    assert result["n"] == len(idx) and result["genes"] == names
    np.testing.assert_allclose(result["scores"], scores, rtol=1e-5, atol=1e-7)
    panel = page.evaluate("() => Bokeh.documents[0].get_model_by_name('selection').text")
    assert f"{len(idx)} selected cells" in panel and all(g in panel for g in names)
    assert errors == []


def test_selection_reports_stability_and_confident_genes_like_rank_genes_elm(browser_page, ensemble):
    """For every group selected on the page: the stability, confident genes and direction
    agreement rank_genes_elm reports for that group, and the panel says them."""
    page, errors = browser_page
    adata = ensemble.copy()
    scelm.tl.rank_genes_elm(adata, "bulk_labels")
    res, n_genes = adata.uns["rank_genes_elm"], len(StoredModel.from_adata(adata, "elm").genes)
    for group in adata.obs["bulk_labels"].cat.categories:
        idx = np.flatnonzero(adata.obs["bulk_labels"] == group).tolist()
        result = page.evaluate("(idx) => window.scelm.rank(idx)", idx)
        np.testing.assert_allclose(result["stability"], res["stability"][group][0], atol=1e-6)
        np.testing.assert_allclose(result["directionAgreement"], res["direction_agreement"][group][0], atol=1e-6)
        assert result["nConfident"] == res["n_confident"][group][0] and result["nAssessed"] == n_genes
        np.testing.assert_allclose(result["frequency"], np.asarray(res["top_frequency"][group][:10], dtype=np.float64), atol=1e-6)
    group = max(adata.obs["bulk_labels"].cat.categories, key=lambda g: res["n_confident"][g][0])
    idx = np.flatnonzero(adata.obs["bulk_labels"] == group).tolist()
    result = page.evaluate("(idx) => window.scelm.rank(idx)", idx)
    page.evaluate("(idx) => { Bokeh.documents[0].get_model_by_name('cells').selected.indices = idx; }", idx)
    page.wait_for_timeout(300)
    panel = page.evaluate("() => Bokeh.documents[0].get_model_by_name('selection').text")
    assert f"stability {result['stability']:.2f}, {result['nConfident']} confident" in panel
    for gene, frequency in zip(result["genes"], result["frequency"]):
        assert (f"<b>{gene}</b>" in panel) == (frequency >= 0.9)
    assert errors == []
