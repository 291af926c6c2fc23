// The feature page: stats, activation histogram, examples (with their ablation), influences,
// ablation logits, steering, neighbours, detection, concepts, label alignment.

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
  const llm = sae.llmLabel(f);
  if (llm) {
    const line = el("div", "label-line");
    line.appendChild(el("span", "muted", "LLM label "));
    line.appendChild(el("span", "label llm-label", llm));
    line.appendChild(el("span", "muted small", `  ${sae.index.json.llm_models.join(", ")}`));
    head.appendChild(line);
  }
  const label = el("div", "label-line");
  label.appendChild(el("span", "muted", sae.llmLabels ? "TF-IDF label " : "Label "));
  label.appendChild(el("span", "label tfidf-label", sae.label(f) || "—"));
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

// Tokens of a signed table (`<prefix>.positive`, `.token`, `.<value>`) in two columns.
function signedTokens(sae, chunk, f, prefix, value, titles) {
  const A = chunk.arrays;
  const [lo, hi] = chunk.rows(prefix, f);
  const cols = el("div", "two-col");
  for (const [positive, title] of [[1, titles[0]], [0, titles[1]]]) {
    const col = el("div", "token-col");
    col.appendChild(el("h4", null, title));
    for (let i = lo; i < hi; i++) {
      if (A[prefix + ".positive"][i] !== positive) continue;
      col.appendChild(chip(sae, sae.strings[A[prefix + ".token"][i]], chunk.float(`${prefix}.${value}`, i), positive ? "pos" : "neg"));
    }
    cols.appendChild(col);
  }
  return cols;
}

function influenceCard(sae, chunk, f) {
  const box = card("Output influence");
  box.appendChild(signedTokens(sae, chunk, f, "inf", "score", ["Promotes (+)", "Suppresses (−)"]));
  return box;
}

// Why a feature's top examples carry no loss effect (null where they do).
function ablationNote(sae, ablatedExamples) {
  const ablated = sae.index.json.ablated;
  if (ablatedExamples) return null;
  if (ablated === null) return "No ablation for this SAE.";
  return `Not ablated: the ablation covers ${fmtInt(ablated)} feature${ablated === 1 ? "" : "s"} of this SAE (ablation.max_features, and every steered feature).`;
}

// The ablation, where feature f has one: the logits it moves most, and where the top examples
// show its loss effect.
function ablationCard(sae, chunk, f, ablatedExamples) {
  const [lo, hi] = chunk.rows("ablg", f);
  if (!ablatedExamples && lo === hi) return null;
  const box = card("Ablation", "ablation");
  if (ablatedExamples) {
    box.appendChild(el("p", "muted small", `Loss effect per token on the first ${ablatedExamples} top example${ablatedExamples === 1 ? "" : "s"}: the underlined tokens below.`));
  }
  if (lo < hi) {
    box.appendChild(el("p", "muted small", "Log-prob change where the feature fires in them (clean − ablated), mean:"));
    box.appendChild(signedTokens(sae, chunk, f, "ablg", "effect", ["Raises (+)", "Lowers (−)"]));
  }
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
      item.appendChild(el("span", "nb-label", sae.shownLabel(other)));
      const value = el("span", "nb-score", fmt(chunk.float("nb.score", i)));
      value.title = score;
      item.appendChild(value);
      list.appendChild(item);
    }
    box.appendChild(list.childElementCount ? list : el("p", "muted", "None."));
    return box;
  });
}

// A corpus label with its level (document or token) marked below it.
function labelLevel(label, level) {
  const td = el("td", "label-level");
  td.append(el("span", "concept-label", label), el("span", "muted small level", level));
  return td;
}

function detectionCard(sae, chunk, f) {
  const A = chunk.arrays, box = card("Concept detection", "detection");
  const [lo, hi] = chunk.rows("det", f);
  if (lo === hi) {
    box.appendChild(el("p", "muted", sae.isKept(f) === false ? "Pruned unit: not evaluated." : "No labels."));
    return box;
  }
  box.appendChild(el("p", "muted small", "On the test split, at the unit's threshold calibrated on the other split; best test F1 first. Hover a row for the threshold."));
  const table = el("table", "grid-table");
  const head = el("tr");
  for (const h of ["label", "P", "R", "F1", "AUROC"]) head.appendChild(el("th", null, h)).scope = "col";
  table.appendChild(head);
  for (let i = lo; i < hi; i++) {
    const tr = el("tr");
    tr.title = `threshold ${fmt(chunk.float("det.threshold", i), 4)}`;
    tr.appendChild(labelLevel(sae.index.json.detection_labels[A["det.label"][i]], sae.index.json.detection_levels[A["det.level"][i]]));
    for (const c of ["precision", "recall", "f1", "auroc"]) tr.appendChild(el("td", "num", fmt(chunk.float("det." + c, i))));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function alignmentCard(sae, chunk, f) {
  const A = chunk.arrays, box = card("Label-vector alignment", "alignment");
  const [lo, hi] = chunk.rows("align", f);
  if (lo === hi) {
    box.appendChild(el("p", "muted", "No labels."));
    return box;
  }
  box.appendChild(el("p", "muted small", "Cosine of the decoder row with each corpus label's vector (documents with the label minus without); rank among this SAE's features for that label."));
  const table = el("table", "grid-table");
  const head = el("tr");
  for (const h of ["label", "cosine", "rank"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (let i = lo; i < hi; i++) {
    const tr = el("tr");
    tr.appendChild(el("td")).appendChild(el("span", "alignment-label", sae.index.json.alignment_labels[A["align.label"][i]]));
    tr.appendChild(el("td", "num", fmt(chunk.float("align.cosine", i))));
    tr.appendChild(el("td", "num", `#${A["align.rank"][i] + 1}`));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function examplesCards(sae, chunk, f, top) {
  const A = sae.index.arrays;
  const scale = Number.isFinite(A.max[f]) && A.max[f] > 0 ? A.max[f] : (top[0] ? top[0].activation : 1);
  const box = card(`Top activations (${top.length})`, "top-examples");
  const ablated = top.filter(ex => ex.effect).length, span = largestEffect(top);
  const note = ablationNote(sae, ablated);
  if (note && top.length) box.appendChild(el("p", "muted small ablation-note", note));
  if (ablated) box.appendChild(effectLegend(span, ablated));
  box.appendChild(top.length ? exampleList(top, scale, "top", span) : el("p", "muted", "No examples: the feature never fires."));
  const cards = [box];
  const quantile = sae.examples(chunk, "q", f);
  if (quantile.length) {
    const q = card(`Examples across the activation range (${quantile.length})`, "quantile-examples");
    q.appendChild(bandedExamples(quantile, scale, sae.index.json.bands, A.max[f]));
    cards.push(q);
  }
  return cards;
}

// Draws feature f of `sae` into `container`; `chunk` is the decoded chunk that holds it, `steering`
// and `concepts` the SAE's steering rows and concept ranking (null where it has none).
function renderFeature(container, sae, chunk, f, steering, concepts) {
  container.replaceChildren(header(sae, f));
  const top = sae.examples(chunk, "top", f);
  const row = el("div", "cards");
  row.appendChild(statsCard(sae, f));
  if (chunk.has("hist.counts")) row.appendChild(histogramCard(sae, chunk, f));
  if (chunk.has("inf.token")) row.appendChild(influenceCard(sae, chunk, f));
  const ablation = ablationCard(sae, chunk, f, top.filter(ex => ex.effect).length);
  if (ablation) row.appendChild(ablation);
  container.appendChild(row);
  container.append(...examplesCards(sae, chunk, f, top));
  container.appendChild(steeringCard(sae, steering, f));
  const more = el("div", "cards");
  if (chunk.has("nb.other")) more.append(...neighbourCards(sae, chunk, f));
  if (chunk.has("det.label")) more.appendChild(detectionCard(sae, chunk, f));
  if (concepts) more.appendChild(conceptsCard(sae, concepts, f));
  if (chunk.has("align.label")) more.appendChild(alignmentCard(sae, chunk, f));
  if (more.childElementCount) container.appendChild(more);
}

function renderMissing(container, sae, f) {
  container.replaceChildren(el("p", "empty", `SAE ${sae.name} has no feature ${f}: ids run from 0 to ${sae.n - 1}.`));
}
