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

function tfidfTokens(sae, f) {
  if (!sae.feat.has("tfidf.token")) return [];
  const [lo, hi] = sae.feat.rows("tfidf", f), A = sae.feat.arrays;
  const out = [];
  for (let i = lo; i < hi; i++) out.push([sae.strings[A["tfidf.token"][i]], A["tfidf.score"][i]]);
  return out;
}

function chip(text, value, className) {
  const span = el("span", "chip " + (className || ""));
  span.appendChild(el("span", "chip-token", tokenText(text)));
  if (value !== undefined) span.appendChild(el("span", "chip-value", fmt(value)));
  span.title = JSON.stringify(text);
  return span;
}

function header(sae, f) {
  const A = sae.feat.arrays;
  const head = el("header", "feature-head");
  const title = el("h2", null, `Feature ${f}`);
  const badges = el("span", "badges");
  badges.appendChild(el("span", "badge", `${sae.name} · layer ${sae.entry.layer}`));
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
  const tokens = tfidfTokens(sae, f);
  if (tokens.length) {
    const line = el("div", "chips");
    line.appendChild(el("span", "muted", "TF-IDF tokens "));
    for (const [t, s] of tokens) line.appendChild(chip(t, s));
    head.appendChild(line);
  }
  return head;
}

function statsCard(sae, f) {
  const A = sae.feat.arrays, box = card("Statistics");
  const pairs = [
    ["Density", `${fmtDensity(A.density[f])} (${fmtInt(A.n_active[f])} tokens)`],
    ["Max", fmt(A.max[f], 4)],
    ["Mean", fmt(A.mean[f], 4)],
    ["Std", fmt(A.std[f], 4)],
    ["Min", fmt(A.min[f], 4)],
  ];
  for (const name of sae.feat.json.thresholds) pairs.push([`Threshold ${thresholdName(name)}`, fmt(A["thr." + name][f], 4)]);
  box.appendChild(keyValues(pairs));
  return box;
}

function histogramCard(sae, f) {
  const A = sae.feat.arrays, box = card("Activation histogram");
  const [c0, c1] = [A["hist.counts_ptr"][f], A["hist.counts_ptr"][f + 1]];
  const [e0, e1] = [A["hist.edges_ptr"][f], A["hist.edges_ptr"][f + 1]];
  const counts = A["hist.counts"].subarray(c0, c1);
  if (!counts.some(c => c > 0)) {
    box.appendChild(el("p", "muted", "Never fires."));
    return box;
  }
  const markers = sae.feat.json.thresholds
    .map(name => ({x: A["thr." + name][f], label: thresholdName(name)}))
    .filter(m => Number.isFinite(m.x));
  box.appendChild(histogramPlot(A["hist.edges"].subarray(e0, e1), counts, {xLabel: "activation", markers, title: `Activation histogram of feature ${f}`, color: "#f97316"}));
  return box;
}

function influenceCard(sae, f) {
  const A = sae.feat.arrays, box = card("Output influence");
  const [lo, hi] = sae.feat.rows("inf", f);
  const cols = el("div", "two-col");
  for (const [positive, title] of [[1, "Promotes (+)"], [0, "Suppresses (−)"]]) {
    const col = el("div", "token-col");
    col.appendChild(el("h4", null, title));
    for (let i = lo; i < hi; i++) {
      if (A["inf.positive"][i] !== positive) continue;
      col.appendChild(chip(sae.feat.json.influence_tokens[A["inf.token"][i]], A["inf.score"][i], positive ? "pos" : "neg"));
    }
    cols.appendChild(col);
  }
  box.appendChild(cols);
  return box;
}

function neighbourCards(sae, f) {
  const A = sae.feat.arrays;
  const [lo, hi] = sae.feat.rows("nb", f);
  return [[0, "Decoder-cosine neighbours", "cosine"], [1, "Co-activation neighbours", "Jaccard"]].map(([kind, title, score]) => {
    const box = card(title);
    const list = el("ol", "neighbours");
    for (let i = lo; i < hi; i++) {
      if (A["nb.kind"][i] !== kind) continue;
      const other = A["nb.other"][i];
      const item = el("li");
      item.appendChild(link(featureHash(sae.name, other), `#${other}`, "nb-id"));
      item.appendChild(el("span", "nb-label", sae.label(other)));
      const value = el("span", "nb-score", fmt(A["nb.score"][i]));
      value.title = score;
      item.appendChild(value);
      list.appendChild(item);
    }
    box.appendChild(list.childElementCount ? list : el("p", "muted", "None."));
    return box;
  });
}

function detectionCard(sae, f) {
  const A = sae.feat.arrays, box = card("Concept detection");
  const [lo, hi] = sae.feat.rows("det", f);
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
    tr.appendChild(el("td", null, sae.feat.json.detection_labels[A["det.label"][i]]));
    for (const c of ["precision", "recall", "f1", "auroc"]) tr.appendChild(el("td", "num", fmt(A["det." + c][i])));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function examplesCard(sae, f) {
  const A = sae.feat.arrays;
  const top = sae.examples("top", f);
  const scale = Number.isFinite(A.max[f]) && A.max[f] > 0 ? A.max[f] : (top[0] ? top[0].activation : 1);
  const box = card(`Top activations (${top.length})`, "top-examples");
  box.appendChild(top.length ? exampleList(top, scale, "top") : el("p", "muted", "No examples: the feature never fires."));
  const cards = [box];
  const quantile = sae.examples("q", f);
  if (quantile.length) {
    const q = card(`Examples across the activation range (${quantile.length})`, "quantile-examples");
    q.appendChild(bandedExamples(quantile, scale, sae.ex.json.bands, A.max[f]));
    cards.push(q);
  }
  return cards;
}

function renderFeature(container, sae, f) {
  container.replaceChildren();
  if (!(Number.isInteger(f) && f >= 0 && f < sae.n)) {
    container.appendChild(el("p", "empty", `SAE ${sae.name} has no feature ${f}: ids run from 0 to ${sae.n - 1}.`));
    return;
  }
  container.appendChild(header(sae, f));
  const row = el("div", "cards");
  row.appendChild(statsCard(sae, f));
  if (sae.feat.has("hist.counts")) row.appendChild(histogramCard(sae, f));
  if (sae.feat.has("inf.token")) row.appendChild(influenceCard(sae, f));
  container.appendChild(row);
  for (const c of examplesCard(sae, f)) container.appendChild(c);
  const more = el("div", "cards");
  if (sae.feat.has("nb.other")) for (const c of neighbourCards(sae, f)) more.appendChild(c);
  if (sae.feat.has("det.label")) more.appendChild(detectionCard(sae, f));
  if (more.childElementCount) container.appendChild(more);
}
