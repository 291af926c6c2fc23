// The feature page: stats, activation histogram, examples, influences, neighbours, detection.

function featureHash(name, f) {
  return `#sae=${encodeURIComponent(name)}&feature=${f}`;
}

function card(title, className) {
  const box = el("section", "card " + (className || ""));
  box.appendChild(el("h3", null, title));
  return box;
}

function keyValues(pairs) {
  const table = el("table", "kv");
  for (const [k, v] of pairs) {
    const tr = el("tr");
    tr.appendChild(el("th", null, k));
    tr.appendChild(el("td", null, v));
    table.appendChild(tr);
  }
  return table;
}

function thresholdName(column) {
  return column.replace("_", ".");
}

// A vocabulary token with its score.
function chip(sae, token, value, className) {
  const {text, inner} = vocabToken(token, sae.wordpiece);
  const span = el("span", "chip " + (className || ""));
  span.appendChild(el("span", inner ? "chip-token inner" : "chip-token", tokenText(text)));
  if (value !== undefined) span.appendChild(el("span", "chip-value", fmt(value)));
  span.title = JSON.stringify(text) + (inner ? " (inside a word)" : "");
  return span;
}

function header(sae, f) {
  const A = sae.index.arrays;
  const head = el("header", "feature-head");
  const title = el("h2", null, `Feature ${f}`);
  const badges = el("span", "badges");
  badges.appendChild(el("span", "badge", `${sae.name} · ${sae.entry.hook}`));
  if (sae.isDead(f)) badges.appendChild(el("span", "badge warn", "dead"));
  if (sae.isDense(f)) badges.appendChild(el("span", "badge warn", "dense"));
  const kept = sae.isKept(f);
  if (kept === true) badges.appendChild(el("span", "badge ok", `kept · unit ${A.new_unit[f]}`));
  if (kept === false) badges.appendChild(el("span", "badge", "pruned"));
  title.appendChild(badges);
  head.appendChild(title);
  const label = el("div", "label-line");
  label.appendChild(el("span", "muted", "Label "));
  label.appendChild(el("span", "label", sae.label(f) || "—"));
  head.appendChild(label);
  const tokens = sae.tokenList("tfidf", f);
  if (tokens.length) {
    const line = el("div", "chips");
    line.appendChild(el("span", "muted", "TF-IDF tokens "));
    for (const [t, s] of tokens) line.appendChild(chip(sae, t, s));
    head.appendChild(line);
  }
  return head;
}

function statsCard(sae, f) {
  const A = sae.index.arrays, box = card("Statistics");
  const pairs = [
    ["Density", `${fmtDensity(A.density[f])} (${fmtInt(A.n_active[f])} token${A.n_active[f] === 1 ? "" : "s"})`],
    ["Max", fmt(A.max[f], 4)],
    ["Mean", fmt(A.mean[f], 4)],
    ["Std", fmt(A.std[f], 4)],
    ["Min", fmt(A.min[f], 4)],
  ];
  for (const name of sae.index.json.thresholds) pairs.push([`Threshold ${thresholdName(name)}`, fmt(A["thr." + name][f], 4)]);
  box.appendChild(keyValues(pairs));
  return box;
}

function histogramCard(sae, chunk, f) {
  const A = chunk.arrays, box = card("Activation histogram");
  const [c0, c1] = chunk.rows("hist_counts", f), [e0, e1] = chunk.rows("hist_edges", f);
  const counts = A["hist.counts"].subarray(c0, c1);
  if (!counts.some(c => c > 0)) {
    box.appendChild(el("p", "muted", "Never fires."));
    return box;
  }
  const markers = sae.index.json.thresholds
    .map(name => ({x: sae.index.arrays["thr." + name][f], label: thresholdName(name)}))
    .filter(m => Number.isFinite(m.x));
  box.appendChild(histogramPlot(A["hist.edges"].subarray(e0, e1), counts, {xLabel: "activation", markers, title: `Activation histogram of feature ${f}`, color: "#f97316"}));
  return box;
}

function influenceCard(sae, chunk, f) {
  const A = chunk.arrays, box = card("Output influence");
  const [lo, hi] = chunk.rows("inf", f);
  const cols = el("div", "two-col");
  for (const [positive, title] of [[1, "Promotes (+)"], [0, "Suppresses (−)"]]) {
    const col = el("div", "token-col");
    col.appendChild(el("h4", null, title));
    for (let i = lo; i < hi; i++) {
      if (A["inf.positive"][i] !== positive) continue;
      col.appendChild(chip(sae, sae.strings[A["inf.token"][i]], chunk.float("inf.score", i), positive ? "pos" : "neg"));
    }
    cols.appendChild(col);
  }
  box.appendChild(cols);
  return box;
}

function neighbourCards(sae, chunk, f) {
  const A = chunk.arrays;
  const [lo, hi] = chunk.rows("nb", f);
  return [[0, "Decoder-cosine neighbours", "cosine"], [1, "Co-activation neighbours", "Jaccard"]].map(([kind, title, score]) => {
    const box = card(title);
    const list = el("ol", "neighbours");
    for (let i = lo; i < hi; i++) {
      if (A["nb.kind"][i] !== kind) continue;
      const other = A["nb.other"][i];
      const item = el("li");
      item.appendChild(link(featureHash(sae.name, other), `#${other}`, "nb-id"));
      item.appendChild(el("span", "nb-label", sae.label(other)));
      const value = el("span", "nb-score", fmt(chunk.float("nb.score", i)));
      value.title = score;
      item.appendChild(value);
      list.appendChild(item);
    }
    box.appendChild(list.childElementCount ? list : el("p", "muted", "None."));
    return box;
  });
}

function detectionCard(sae, chunk, f) {
  const A = chunk.arrays, box = card("Concept detection");
  const [lo, hi] = chunk.rows("det", f);
  if (lo === hi) {
    box.appendChild(el("p", "muted", sae.isKept(f) === false ? "Pruned unit: not evaluated." : "No labels."));
    return box;
  }
  const table = el("table", "grid-table");
  const head = el("tr");
  for (const h of ["label", "P", "R", "F1", "AUROC"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (let i = lo; i < hi; i++) {
    const tr = el("tr");
    tr.appendChild(el("td", null, sae.index.json.detection_labels[A["det.label"][i]]));
    for (const c of ["precision", "recall", "f1", "auroc"]) tr.appendChild(el("td", "num", fmt(chunk.float("det." + c, i))));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function examplesCards(sae, chunk, f) {
  const A = sae.index.arrays;
  const top = sae.examples(chunk, "top", f);
  const scale = Number.isFinite(A.max[f]) && A.max[f] > 0 ? A.max[f] : (top[0] ? top[0].activation : 1);
  const box = card(`Top activations (${top.length})`, "top-examples");
  box.appendChild(top.length ? exampleList(top, scale, "top") : el("p", "muted", "No examples: the feature never fires."));
  const cards = [box];
  const quantile = sae.examples(chunk, "q", f);
  if (quantile.length) {
    const q = card(`Examples across the activation range (${quantile.length})`, "quantile-examples");
    q.appendChild(bandedExamples(quantile, scale, sae.index.json.bands, A.max[f]));
    cards.push(q);
  }
  return cards;
}

// Draws feature f of `sae` into `container`; `chunk` is the decoded chunk that holds it.
function renderFeature(container, sae, chunk, f) {
  container.replaceChildren(header(sae, f));
  const row = el("div", "cards");
  row.appendChild(statsCard(sae, f));
  if (chunk.has("hist.counts")) row.appendChild(histogramCard(sae, chunk, f));
  if (chunk.has("inf.token")) row.appendChild(influenceCard(sae, chunk, f));
  container.appendChild(row);
  container.append(...examplesCards(sae, chunk, f));
  const more = el("div", "cards");
  if (chunk.has("nb.other")) more.append(...neighbourCards(sae, chunk, f));
  if (chunk.has("det.label")) more.appendChild(detectionCard(sae, chunk, f));
  if (more.childElementCount) container.appendChild(more);
}

function renderMissing(container, sae, f) {
  container.replaceChildren(el("p", "empty", `SAE ${sae.name} has no feature ${f}: ids run from 0 to ${sae.n - 1}.`));
}
