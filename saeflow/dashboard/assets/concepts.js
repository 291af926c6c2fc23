// Concepts (concept_rows.py): per SAE and corpus label, the SAE units that detect the label best
// beside the hook's best single dimensions (the dense baseline, each dimension in both signs).
// Both are ranked on the calibration split; the test split, which neither the thresholds nor the
// ranking saw, tells whether the SAE beats single neurons. The concepts view (#view=concepts)
// shows them all, a feature page the labels its feature ranks for.

const CRITERION_NAMES = {f1: "F1", auroc: "AUROC"};
const SCORE_COLUMNS = [["f1", "calibration"], ["f1", "test"], ["auroc", "calibration"], ["auroc", "test"]];
const SPLIT_SHORT = {calibration: "cal.", test: "test"};

// Precision and recall behind a score, for its title.
function precisionRecall(c, split, i) {
  return `${split}: precision ${fmt(c.score(`${split}_precision`, i))}, recall ${fmt(c.score(`${split}_recall`, i))}`;
}

function scoreCell(c, split, column, i) {
  const td = el("td", "num", fmt(c.score(`${split}_${column}`, i)));
  td.title = precisionRecall(c, split, i);
  return td;
}

function denseName(c, i) {
  return `dim ${c.value("unit", i)} ${c.value("negated", i) ? "−" : "+"}`;
}

// An SAE unit (a link to its page, with its label) or a dense dimension with its sign.
function unitCell(entry, c, i, labels) {
  const td = el("td", "concept-unit");
  td.title = `threshold ${fmt(c.score("threshold", i), 4)}`;
  if (c.name("source", i) === "dense") {
    td.textContent = denseName(c, i);
    if (c.value("negated", i)) td.title += ", on the negated dimension";
    return td;
  }
  const f = c.value("unit", i);
  td.appendChild(link(featureHash(entry.name, f), `#${f}`));
  const label = labels(f);
  if (label) td.appendChild(el("span", "muted small concept-feature-label", label));
  return td;
}

// One side's cells of a rank: unit and scores, or blanks where the side has fewer rows.
function sideCells(tr, entry, c, i, labels) {
  if (i === undefined) {
    for (let k = 0; k <= SCORE_COLUMNS.length; k++) tr.appendChild(el("td"));
    return;
  }
  tr.appendChild(unitCell(entry, c, i, labels));
  for (const [column, split] of SCORE_COLUMNS) tr.appendChild(scoreCell(c, split, column, i));
}

// "best SAE test F1 0.82 vs best dense 0.41": the rank-1 rows' test scores, and who is ahead.
function verdict(c, sae, dense) {
  const i = sae === undefined ? dense : sae, criterion = c.name("criterion", i);
  const test = j => (j === undefined ? NaN : c.ranked("test", j));
  const [s, d] = [test(sae), test(dense)];
  const box = el("span", "concept-verdict", `best SAE test ${CRITERION_NAMES[criterion]} ${fmt(s)} vs best dense ${fmt(d)}`);
  if (Number.isFinite(s) && Number.isFinite(d)) {
    const [text, kind] = s > d ? ["SAE ahead", "ok"] : s < d ? ["dense ahead", "warn"] : ["tie", ""];
    box.appendChild(el("span", `badge ${kind}`, text));
  }
  return box;
}

function tableHead() {
  const head = el("thead");
  const top = el("tr"), sub = el("tr");
  const rank = el("th", null, "rank");
  rank.rowSpan = 2;
  rank.scope = "col";
  top.appendChild(rank);
  for (const side of ["SAE units", "dense dimensions (single neurons)"]) {
    const th = el("th", "concept-side", side);
    th.colSpan = 1 + SCORE_COLUMNS.length;
    th.scope = "colgroup";
    top.appendChild(th);
    for (const name of ["unit", ...SCORE_COLUMNS.map(([m, s]) => `${CRITERION_NAMES[m]} ${SPLIT_SHORT[s]}`)]) {
      sub.appendChild(el("th", name === "unit" ? "concept-side" : null, name)).scope = "col";
    }
  }
  head.append(top, sub);
  return head;
}

// Per (label, level, criterion) a row group: its heading, then rank by rank the SAE's unit beside
// the dense dimension.
function conceptTable(entry, c, labels) {
  const table = el("table", "grid-table concept-table");
  table.appendChild(tableHead());
  const all = Array.from({length: c.n}, (_, i) => i);
  for (const [, rows] of runsBy(all, i => c.group(i))) {
    const sae = rows.filter(i => c.name("source", i) === "sae");
    const dense = rows.filter(i => c.name("source", i) === "dense");
    const body = el("tbody", "concept-group");
    const th = el("th", "concept-heading");
    th.colSpan = 3 + 2 * SCORE_COLUMNS.length;
    th.scope = "rowgroup";
    th.appendChild(el("span", "concept-label", c.name("label", rows[0])));
    th.appendChild(el("span", "badge", c.name("level", rows[0])));
    th.appendChild(el("span", "muted", `ranked by calibration ${CRITERION_NAMES[c.name("criterion", rows[0])]}`));
    th.appendChild(verdict(c, sae[0], dense[0]));
    body.appendChild(el("tr")).appendChild(th);
    for (let r = 0; r < Math.max(sae.length, dense.length); r++) {
      const tr = el("tr");
      const rank = el("th", "num", fmtInt(c.value("rank", sae[r] === undefined ? dense[r] : sae[r])));
      rank.scope = "row";
      tr.appendChild(rank);
      sideCells(tr, entry, c, sae[r], labels);
      sideCells(tr, entry, c, dense[r], labels);
      body.appendChild(tr);
    }
    table.appendChild(body);
  }
  return table;
}

// "F1 in 4 of 6, AUROC in 3 of 6": (label, level) pairs where the SAE's best unit beats the best
// single dimension on test (manifest summary).
function aheadText(summary) {
  return Object.entries(CRITERION_NAMES).map(([m, name]) => `${name} in ${summary.ahead[m][0]} of ${summary.ahead[m][1]}`).join(", ");
}

function conceptsSaeCard(entry, c, labels) {
  const box = card(entry.name, "concepts-sae");
  box.firstChild.className = "exp-name";
  const badges = el("div", "badges");
  badges.appendChild(link(`#sae=${encodeURIComponent(entry.name)}`, `${entry.name} · ${entry.hook}`, "badge"));
  badges.appendChild(el("span", "badge", `${fmtInt(entry.concepts.labels)} labels · ${entry.concepts.levels.join(", ")}`));
  box.appendChild(badges);
  box.appendChild(el("p", null, `(Label, level) pairs where the best SAE unit beats the best dense dimension on test: ${aheadText(entry.concepts)}.`));
  box.appendChild(c.n ? conceptTable(entry, c, labels) : el("p", "muted", "No label has ranked units."));
  return box;
}

// `stale()` says a later route has replaced this one.
async function renderConcepts(container, manifest, stale) {
  const saes = manifest.saes.filter(s => s.concepts);
  const title = el("h2", null, "Concepts");
  if (!saes.length) {
    container.replaceChildren(title, el("p", "empty", "No concept ranking in this run: it needs a corpus with labels."));
    return;
  }
  const cards = [];
  for (const entry of saes) {
    const [c, index] = await Promise.all([loadConcepts(entry), loadBlob(entry.index)]);
    if (stale()) return;
    cards.push(conceptsSaeCard(entry, c, shownLabels(index)));
  }
  container.replaceChildren(title, el("p", "muted", "Per corpus label and level: the SAE units that detect it best, beside the hook's raw dimensions taken one at a time as detectors (+ as is, − negated). Both are ranked on the calibration split, by F1 and by AUROC; \"best\" is rank 1 there, and its score on the held-out test split is the fair comparison. Hover a score for its precision and recall, a unit for its threshold."), ...cards);
}

// The feature page's card: the labels feature f ranks among the SAE's best units for, each with
// its rank, the ranking's score on both splits, and the best dense dimension's test score.
function conceptsCard(sae, c, f) {
  const box = card("Concepts", "concepts-card");
  const rows = c.rowsOf(f);
  const more = link("#view=concepts", "all concepts");
  if (!rows.length) {
    const p = el("p", "muted", "Not among this SAE's best units for any label; ");
    p.appendChild(more);
    box.appendChild(p);
    return box;
  }
  const table = el("table", "grid-table");
  const head = el("tr");
  for (const h of ["label", "rank", "cal.", "test", "dense"]) head.appendChild(el("th", null, h)).scope = "col";
  head.lastChild.title = "test score of the dense dimension ranked first for the label, level and measure";
  table.appendChild(head);
  for (const i of rows) {
    const tr = el("tr");
    const criterion = c.name("criterion", i);
    tr.appendChild(labelLevel(c.name("label", i), c.name("level", i)));
    tr.appendChild(el("td", "num nowrap", `#${c.value("rank", i)} ${CRITERION_NAMES[criterion]}`));
    for (const split of ["calibration", "test"]) tr.appendChild(scoreCell(c, split, criterion, i));
    const dense = c.leader(i, "dense");
    const td = tr.appendChild(el("td", "num", dense === undefined ? "–" : fmt(c.ranked("test", dense))));
    if (dense !== undefined) td.title = denseName(c, dense);
    table.appendChild(tr);
  }
  box.appendChild(el("p", "muted small", "Ranked among this SAE's units on the calibration split; scores by the ranking's measure."));
  box.appendChild(table);
  box.appendChild(more);
  return box;
}
