// scelm's interactive page: the hover text and the ranking of a selection.
// This text starts every CustomJS callback of the page; all of them get the same arguments.
// The per-cell arrays are columns of the plot's data source (serialised once, however many
// callbacks refer to it). The first call builds window.scelm, so the page, a test or a user
// at the browser console use the same functions.
if (window.scelm === undefined) {
  const { top_genes, top_values, contributions, embedding, expression } = source.data;
  const fmt = (v) => (v >= 0 ? "+" : "\u2212") + Math.abs(v).toPrecision(4);
  const esc = (s) => String(s).replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]);
  window.scelm = {
    source, genes, groups,
    // The top genes of cell i on one axis of the map, with their signed contributions.
    cell(i, axis) {
      const [, d, k] = top_genes.shape;
      const at = (i * d + axis) * k;
      return Array.from({ length: k }, (_, j) => ({ gene: genes[top_genes[at + j]], value: top_values[at + j] }));
    },
    // Where cell i is drawn, in page pixels (for tests and screenshots that point at a cell).
    screenPosition(i) {
      const doc = Bokeh.documents[0], view = Bokeh.index.find_one(doc.get_model_by_name("map"));
      const box = view.canvas_view.el.getBoundingClientRect();
      return [box.left + view.frame.x_scale.compute(source.data.x[i]), box.top + view.frame.y_scale.compute(source.data.y[i])];
    },
    hoverText(i, axis) {
      return this.cell(i, axis).map((t) => `${t.gene} ${fmt(t.value)}`).join(", ");
    },
    // rank_genes_elm's 'separation' for the selected cells against the rest: u is the unit
    // vector from the rest's centroid to the selection's in the map; a gene scores (mean
    // contribution in selection - mean in rest) . u. Genes whose mean expression is lower in
    // the selection come after the others, as there.
    rank(indices) {
      const [n, d, K] = contributions.shape;
      const inside = new Uint8Array(n);
      for (const i of indices) inside[i] = 1;
      const nIn = inside.reduce((a, b) => a + b, 0);
      if (nIn === 0 || nIn === n) return null;
      const width = d * K;
      const yIn = new Float64Array(d), yOut = new Float64Array(d);
      const cIn = new Float64Array(width), cOut = new Float64Array(width);
      const xIn = new Float64Array(K), xOut = new Float64Array(K);
      for (let i = 0; i < n; i++) {
        const [y, c, x] = inside[i] ? [yIn, cIn, xIn] : [yOut, cOut, xOut];
        for (let j = 0; j < d; j++) y[j] += embedding[i * d + j];
        const base = i * width;
        for (let q = 0; q < width; q++) c[q] += contributions[base + q];
        for (let g = 0; g < K; g++) x[g] += expression[i * K + g];
      }
      const u = Array.from({ length: d }, (_, j) => yIn[j] / nIn - yOut[j] / (n - nIn));
      const norm = Math.max(Math.hypot(...u), 1e-30);
      const scores = new Float64Array(K);
      for (let j = 0; j < d; j++) {
        const w = u[j] / norm;
        for (let g = 0; g < K; g++) scores[g] += w * (cIn[j * K + g] / nIn - cOut[j * K + g] / (n - nIn));
      }
      const lower = Array.from(xIn, (v, g) => v / nIn < xOut[g] / (n - nIn));
      const order = Array.from(scores.keys())
        .sort((a, b) => lower[a] - lower[b] || scores[b] - scores[a])
        .slice(0, n_show);
      return {
        n: nIn, genes: order.map((g) => genes[candidates[g]]), scores: order.map((g) => scores[g]),
        lower: order.map((g) => lower[g]),
      };
    },
    panel(result) {
      if (result === null) return intro;
      const rows = result.genes.map((g, j) => `<tr><td>${esc(g)}${result.lower[j] ? " (lower in selection)" : ""}</td>` +
        `<td style="text-align:right">${fmt(result.scores[j])}</td></tr>`);
      return `<b>${result.n} selected cells</b>: the genes that move them away from the rest ` +
        `(separation in this map)${scope}<table>${rows.join("")}</table>`;
    },
  };
}
