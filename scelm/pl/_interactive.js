// scelm's interactive page: the hover text and the ranking of a selection.
// This text starts every CustomJS callback of the page; all of them get the same arguments.
// The per-cell arrays are columns of the plot's data source (serialised once, however many
// callbacks refer to it). The first call builds window.scelm, so the page, a test or a user
// at the browser console use the same functions.
if (window.scelm === undefined) {
  const { top_genes, top_values, contributions, embedding, expression, member_embedding, member_deviation } = source.data;
  const fmt = (v) => (v >= 0 ? "+" : "\u2212") + Math.abs(v).toPrecision(4);
  const esc = (s) => String(s).replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]);
  // Candidate positions by rank_genes_elm's order: genes not lower in the selection first,
  // each part by decreasing score.
  const rankOrder = (scores, lower) => Array.from(scores.keys()).sort((a, b) => lower[a] - lower[b] || scores[b] - scores[a]);
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
      const order = rankOrder(scores, lower).slice(0, n_show);
      const dc = Float64Array.from(cIn, (v, q) => v / nIn - cOut[q] / (n - nIn));
      const seeds = this.seedAgreement(inside, nIn, dc, lower);
      return {
        n: nIn, genes: order.map((g) => genes[candidates[g]]), scores: order.map((g) => scores[g]),
        lower: order.map((g) => lower[g]),
        ...(seeds && { stability: seeds.stability, nConfident: seeds.nConfident, directionAgreement: seeds.directionAgreement,
          frequency: order.map((g) => (seeds.assessed[g] ? seeds.frequency[g] : null)), nAssessed: seeds.nAssessed }),
      };
    },
    // rank_genes_elm's stability and top_frequency (scelm._core.ranking.seed_agreement) for
    // the selection, on the same halvings of the members: two disjoint halves give two
    // half-ensemble scores a and b (each projected on its own half's direction); the
    // rankings of c + h and c - h, c = (a + b) / 2, h = sqrt(k / M) (a - b) / 2, differ as two
    // fits from different seeds would. Member m's contribution difference is the consensus's
    // dc plus the member's stored deviation (assessed genes; the others get no spread).
    // Null with one member.
    seedAgreement(inside, nIn, dc, lower) {
      if (member_embedding === undefined) return null;
      const [n, M, d] = member_embedding.shape, K = candidates.length, T = assessed.length;
      const dy = new Float64Array(M * d), dev = new Float64Array(M * d * T);
      for (let i = 0; i < n; i++) {
        const w = inside[i] ? 1 / nIn : -1 / (n - nIn);
        for (let q = 0; q < M * d; q++) dy[q] += w * member_embedding[i * M * d + q];
        const base = i * M * d * T;
        for (let q = 0; q < M * d * T; q++) dev[q] += w * member_deviation[base + q];
      }
      const unit = new Float64Array(d);
      for (let m = 0; m < M; m++) {
        const norm = Math.max(Math.hypot(...dy.subarray(m * d, (m + 1) * d)), 1e-300);
        for (let j = 0; j < d; j++) unit[j] += dy[m * d + j] / norm / M;
      }
      const k = halves[0].length, shrink = Math.sqrt(k / M);
      const halfScores = halves.map((members) => {
        const u = new Float64Array(d), s = new Float64Array(K);
        for (const m of members) for (let j = 0; j < d; j++) u[j] += dy[m * d + j];
        const norm = Math.max(Math.hypot(...u), 1e-30);
        for (let j = 0; j < d; j++) {
          const w = u[j] / norm;
          for (let g = 0; g < K; g++) s[g] += w * dc[j * K + g];
          for (let t = 0; t < T; t++) {
            let mean = 0;
            for (const m of members) mean += dev[(m * d + j) * T + t];
            s[assessed[t]] += w * (mean / k) * deviation_scale[t];
          }
        }
        return s;
      });
      const count = new Float64Array(K);
      let jaccard = 0;
      for (let h = 0; h < halves.length; h += 2) {
        const [a, b] = [halfScores[h], halfScores[h + 1]];
        const tops = [1, -1].map((sign) => rankOrder(a.map((v, g) => (v + b[g]) / 2 + sign * shrink * (v - b[g]) / 2), lower).slice(0, n_top));
        for (const top of tops) for (const g of top) count[g] += 1;
        const shared = tops[0].filter((g) => tops[1].includes(g)).length;
        jaccard += shared / (2 * n_top - shared);
      }
      const isAssessed = new Uint8Array(K);
      for (const g of assessed) isAssessed[g] = 1;
      const frequency = Array.from(count, (c) => c / halves.length);
      return {
        stability: jaccard / (halves.length / 2), frequency, assessed: isAssessed, nAssessed: T,
        nConfident: frequency.filter((f, g) => isAssessed[g] && f >= confident).length, directionAgreement: Math.hypot(...unit),
      };
    },
    panel(result) {
      if (result === null) return intro;
      const bold = (j) => result.frequency !== undefined && result.frequency[j] !== null && result.frequency[j] >= confident;
      const rows = result.genes.map((g, j) => `<tr><td>${bold(j) ? `<b>${esc(g)}</b>` : esc(g)}` +
        `${result.lower[j] ? " (lower in selection)" : ""}</td><td style="text-align:right">${fmt(result.scores[j])}</td></tr>`);
      return `<b>${result.n} selected cells</b>: the genes that move them away from the rest ` +
        `(separation in this map)${scope}${this.confidenceText(result)}<table>${rows.join("")}</table>`;
    },
    // What another random_state would keep, as scelm.pl.rank_genes_elm's titles say it.
    confidenceText(result) {
      if (result.stability === undefined) return "";
      const K = candidates.length;
      let text = `<br>stability ${result.stability.toFixed(2)}, ${result.nConfident} confident (in bold: another ` +
        `random_state keeps them in its top ${n_top} at least ${Math.round(confident * 100)}% of the time)`;
      if (result.nAssessed < K) text += `; assessed for the ${result.nAssessed} of ${K} genes whose contributions vary most`;
      if (result.stability < unstable) text += `<br><span style="color:#c00">unstable: another random_state would rank other genes</span>`;
      if (result.directionAgreement < direction_min) {
        text += `<br><span style="color:#c00">direction ill-defined: the models agree on where the selection lies ` +
          `from the rest at ${result.directionAgreement.toFixed(2)}</span>`;
      }
      return text;
    },
  };
}
