"""Interactive page: size and load time in headless Chromium, bokeh vs plotly, and scelm's page.

    python benchmarks/bench_interactive.py [--sizes 10000 100000] [--chromium /usr/lib/chromium/chromium]

Part 1 chose the library: a bare WebGL scatter of n points, written standalone with the
library's JavaScript inlined (bokeh ``file_html(INLINE)``, plotly ``write_html(
include_plotlyjs=True)``), loaded offline until the plot's canvas exists and two frames
have been drawn. Part 2 is ``scelm.pl.interactive`` itself on simulated data
(``simulate_markers``, 2,000 genes, the default models, 100 epochs: the page, not the map, is
measured), loaded until its callbacks are set up (``window.scelmReady``), then the time of
one hover and of ranking a selection of a tenth of the cells. Each load is a fresh browser
context; the median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

warnings.filterwarnings("ignore")
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def bokeh_page(xy: np.ndarray, path: Path) -> None:
    from bokeh.embed import file_html
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    fig = figure(output_backend="webgl", tools="pan,wheel_zoom,lasso_select,box_select,reset")
    fig.scatter(xy[:, 0], xy[:, 1], size=3)
    path.write_text(file_html(fig, INLINE, "bokeh"))


def plotly_page(xy: np.ndarray, path: Path) -> None:
    import plotly.graph_objects as go

    go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=dict(size=3))).write_html(path, include_plotlyjs=True)


def load_seconds(browser, path: Path, ready: str, repeats: int = 3) -> tuple[float, list[str]]:
    times, errors = [], []
    for _ in range(repeats):
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 800})
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function(ready, timeout=120_000)
        page.evaluate(FRAMES)
        times.append(time.perf_counter() - t0)
        context.close()
    return statistics.median(times), errors


def scelm_page(n: int, path: Path) -> float:
    """Fit a map on simulated data and write its page; returns the seconds of the page."""
    import scanpy as sc

    import scelm

    sc.settings.verbosity = 0
    adata, _ = scelm.datasets.simulate_markers(n, 2000, n_types=8, random_state=0)
    scelm.tl.parametric_umap(adata, n_epochs=100, store_jacobian=False)
    t0 = time.perf_counter()
    scelm.pl.interactive(adata, color="cell_type", path=path)
    return time.perf_counter() - t0


def interactions(browser, path: Path, n: int) -> dict:
    """Seconds for one hover (tooltip text built) and one selection ranked, in the page."""
    page = browser.new_context(offline=True).new_page()
    page.goto(path.as_uri())
    page.wait_for_function("() => window.scelmReady === true", timeout=120_000)
    hover = page.evaluate("() => { const t = performance.now(); window.scelm.hoverText(0, 0); return performance.now() - t; }")
    sel = np.arange(0, n, 10).tolist()
    rank = page.evaluate("(s) => { const t = performance.now(); window.scelm.rank(s); return performance.now() - t; }", sel)
    page.context.close()
    return dict(hover_ms=hover, select_ms=rank)


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--chromium", default="/usr/lib/chromium/chromium")
    p.add_argument("--skip-libraries", action="store_true")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for n in args.sizes:
            xy = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
            pages = [] if args.skip_libraries else [
                ("bokeh, bare scatter", bokeh_page, "() => document.querySelector('.bk-Figure') !== null"),
                ("plotly, bare scatter", plotly_page, "() => document.querySelector('.gl-container canvas') !== null"),
            ]
            for name, build, ready in pages:
                path = work / f"{name.split(',')[0]}_{n}.html"
                build(xy, path)
                seconds, errors = load_seconds(browser, path, ready)
                rows.append(dict(cells=n, page=name, MB=path.stat().st_size / 1e6, load_s=seconds, js_errors=len(errors)))
                print(rows[-1], file=sys.stderr, flush=True)
            path = work / f"scelm_{n}.html"
            build_s = scelm_page(n, path)
            seconds, errors = load_seconds(browser, path, "() => window.scelmReady === true")
            rows.append(dict(cells=n, page="scelm.pl.interactive", MB=path.stat().st_size / 1e6, load_s=seconds,
                             js_errors=len(errors), **interactions(browser, path, n), build_s=build_s))
            print(rows[-1], file=sys.stderr, flush=True)
        browser.close()
    cols = ["cells", "page", "MB", "load_s", "hover_ms", "select_ms", "js_errors", "build_s"]
    print_table([{c: r.get(c, "") for c in cols} for r in rows], "Standalone pages in headless Chromium (offline)")


if __name__ == "__main__":
    main()
